//! Qdrant's REST API, for the payloads its gRPC API cannot carry exactly.
//!
//! gRPC's payload `Value` has no unsigned integer, so Qdrant sends a payload integer above
//! `i64::MAX` as the nearest double. When a page holds a double where such integers land
//! (`payload::holds_wide_double`), the source reads those points' payloads again here —
//! `POST /collections/{name}/points` with their ids, payload only — and keeps the answer as
//! [`ExactJson`]: the integer whole, a genuine float (`1e19`) a float, every other number as
//! the text Qdrant wrote. Pages without such doubles never come here.
//!
//! Blocking HTTP (ureq) on the calling cursor thread, like its gRPC calls. Transient failures
//! (no connection, 5xx, 429) are retried with the crate's one backoff; once the API has
//! failed for good, [`RestState`] remembers why and later pages no longer try: a page that needs
//! it then fails its collection, or, with `--allow-rounded-integers`, keeps gRPC's doubles and
//! the commands warn that the affected values may be inexact.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::config::qdrant::{Connection, Secret};
use crate::payload::{ExactJson, JsonKind, MAX_PAYLOAD_DEPTH};
use crate::point_id::PointKey;
use crate::progress::error_chain;
use crate::retry::{Verdict, retry};
use crate::source::wire::PayloadTooDeep;

/// A REST read failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error(
        "Qdrant's REST API at {url} (from {origin}; set it with --rest-url) could not be reached"
    )]
    Unreachable {
        url: String,
        origin: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "Qdrant's REST API at {url} (from {origin}) answered {status} for collection \
         {collection:?}: {body}"
    )]
    Refused {
        url: String,
        origin: String,
        collection: String,
        status: u16,
        body: String,
    },
    #[error(
        "collection {collection:?}: Qdrant's REST API at {url} answered with something other \
         than points: {detail}"
    )]
    Answer {
        url: String,
        collection: String,
        detail: String,
    },
    #[error("collection {collection:?}: {source}")]
    TooDeep {
        collection: String,
        #[source]
        source: PayloadTooDeep,
    },
}

/// Whether the REST API has failed for good, shared by every reader of a run.
#[derive(Debug, Default)]
pub struct RestState {
    failed: OnceLock<String>,
}

impl RestState {
    /// Why the REST API could not be used, if it could not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }
}

/// A blocking client for Qdrant's REST API.
pub struct RestReader {
    agent: ureq::Agent,
    url: String,
    origin: String,
    api_key: Option<Secret>,
    retries: u32,
    state: Arc<RestState>,
}

impl RestReader {
    /// A reader for `connection`'s REST address; no request is made yet.
    pub fn new(connection: &Connection, state: Arc<RestState>) -> RestReader {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(connection.request_timeout))
            .timeout_connect(Some(connection.connect_timeout));
        if connection.rest_url.starts_with("https://") {
            let native = rustls_native_certs::load_native_certs();
            let roots: Vec<Certificate<'static>> = native
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            config = config.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::Rustls)
                    .root_certs(RootCerts::new_with_certs(&roots))
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            );
        }
        RestReader {
            agent: config.build().into(),
            url: connection.rest_url.trim_end_matches('/').to_owned(),
            origin: connection.rest_origin.clone(),
            api_key: connection.api_key.clone(),
            retries: connection.retries,
            state,
        }
    }

    /// Why the REST API could not be used, once it could not (shared by every reader).
    pub fn failure(&self) -> Option<&str> {
        self.state.failure()
    }

    /// The payloads of `ids` as Qdrant holds them; ids it does not have are left out. `None`
    /// once the API has failed for good (this call's failure is then recorded in the state).
    pub fn payloads(
        &self,
        collection: &str,
        ids: &[PointKey],
    ) -> Result<Option<HashMap<PointKey, ExactJson>>, RestError> {
        if self.state.failure().is_some() {
            return Ok(None);
        }
        match self.fetch(collection, ids) {
            Ok(found) => Ok(Some(found)),
            Err(e @ (RestError::Unreachable { .. } | RestError::Refused { .. })) => {
                let _ = self.state.failed.set(error_chain(&e));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn fetch(
        &self,
        collection: &str,
        ids: &[PointKey],
    ) -> Result<HashMap<PointKey, ExactJson>, RestError> {
        let url = format!(
            "{}/collections/{}/points",
            self.url,
            path_segment(collection)
        );
        let body = request_body(ids);
        let text = self.post(collection, &url, &body)?;
        let answer = |detail: String| RestError::Answer {
            url: self.url.clone(),
            collection: collection.to_owned(),
            detail,
        };
        // The answer nests each payload three levels down: {"result": [{"payload": …}]}.
        let doc = ExactJson::parse(&text, MAX_PAYLOAD_DEPTH + 3).map_err(|e| match e {
            crate::payload::exact_json::JsonError::TooDeep { .. } => RestError::TooDeep {
                collection: collection.to_owned(),
                source: PayloadTooDeep {
                    point: (ids.len() == 1).then(|| ids[0]),
                },
            },
            other => answer(other.to_string()),
        })?;
        let JsonKind::Array(points) = doc
            .root()
            .get("result")
            .map(|r| r.kind())
            .ok_or_else(|| answer("no `result`".to_owned()))?
        else {
            return Err(answer("`result` is not a list".to_owned()));
        };
        let mut found = HashMap::with_capacity(ids.len());
        for (_, point) in points {
            let key = match point.get("id").map(|id| id.kind()) {
                Some(JsonKind::Number(n)) => n.parse().ok().map(PointKey::Num),
                Some(JsonKind::String(s)) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| answer("a point without a valid id".to_owned()))?;
            let payload = match point.get("payload") {
                Some(p) if matches!(p.kind(), JsonKind::Object(_)) => ExactJson::copy_of(p),
                // A point without payload: an empty object, as gRPC gives it.
                Some(p) if matches!(p.kind(), JsonKind::Null) => {
                    ExactJson::parse("{}", 1).map_err(|e| answer(e.to_string()))?
                }
                None => ExactJson::parse("{}", 1).map_err(|e| answer(e.to_string()))?,
                Some(_) => return Err(answer(format!("point {key}'s payload is not an object"))),
            };
            found.insert(key, payload);
        }
        Ok(found)
    }

    /// Posts `body`, retrying what may pass; the answer's text on success.
    fn post(&self, collection: &str, url: &str, body: &str) -> Result<String, RestError> {
        let send = |_| {
            let mut request = self
                .agent
                .post(url)
                .header("content-type", "application/json");
            if let Some(key) = &self.api_key {
                request = request.header("api-key", key.expose());
            }
            let (status, text) = request.send(body.as_bytes()).and_then(|mut response| {
                let status = response.status().as_u16();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(u64::MAX)
                    .read_to_string()?;
                Ok((status, text))
            })?;
            match status {
                200 => Ok(text),
                _ => Err(Failure::Status(status, text)),
            }
        };
        let judge = |failure: &Failure, _: u32, _: Duration| match failure {
            Failure::Status(status, _) if *status != 429 && *status < 500 => Verdict::GiveUp,
            _ => Verdict::Retry,
        };
        retry(self.retries, send, judge).map_err(|failed| match failed.error {
            Failure::Status(status, text) => RestError::Refused {
                url: self.url.clone(),
                origin: self.origin.clone(),
                collection: collection.to_owned(),
                status,
                body: text.chars().take(300).collect(),
            },
            Failure::Transport(source) => RestError::Unreachable {
                url: self.url.clone(),
                origin: self.origin.clone(),
                source: Box::new(source),
            },
        })
    }
}

/// One failed POST: no answer, or an answer other than 200.
enum Failure {
    Transport(ureq::Error),
    Status(u16, String),
}

impl From<ureq::Error> for Failure {
    fn from(error: ureq::Error) -> Self {
        Failure::Transport(error)
    }
}

/// `{"ids": [...], "with_payload": true, "with_vector": false}`.
fn request_body(ids: &[PointKey]) -> String {
    let mut body = String::from(r#"{"ids":["#);
    for (i, key) in ids.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match key {
            PointKey::Num(n) => body.push_str(&n.to_string()),
            PointKey::Uuid(_) => {
                body.push('"');
                body.push_str(&key.to_string());
                body.push('"');
            }
        }
    }
    body.push_str(r#"],"with_payload":true,"with_vector":false}"#);
    body
}

/// A collection name as one URL path segment.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_ids_of_both_kinds_and_asks_for_payloads_only() {
        let uuid: PointKey = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26".parse().unwrap();
        assert_eq!(
            request_body(&[PointKey::Num(u64::MAX), uuid]),
            r#"{"ids":[18446744073709551615,"5c56c793-69f3-4fbf-87e6-c4bf54c28c26"],"with_payload":true,"with_vector":false}"#
        );
        assert_eq!(path_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
