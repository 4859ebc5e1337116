//! The source side: the guide's `qdrant2csv.yaml` and the flags that override it.
//!
//! qdrant2pg speaks gRPC. The guide's sample sets `port: 6333` (Qdrant's REST port) and
//! `grpc_port: 6434` (a typo for the default 6334); we use `grpc_port`, and a failed connection
//! says which address was tried, where it came from and what the usual ports are. The REST
//! address, resolved beside it, serves only the payloads gRPC cannot carry exactly
//! (`source::rest`): `--rest-url`, else `port` (with `host`), else the gRPC host on 6333.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// Qdrant's default gRPC port.
pub const DEFAULT_GRPC_PORT: u16 = 6334;
/// Qdrant's default REST port, which a gRPC client cannot use.
pub const REST_PORT: u16 = 6333;

/// A secret (API key, password): kept out of `Debug` output, logs and reports.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Option<Secret> {
        (!value.is_empty()).then_some(Secret(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Flags that say where Qdrant is.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct QdrantArgs {
    /// Qdrant gRPC URL, e.g. http://localhost:6334 (https:// for TLS). Overrides the YAML.
    #[arg(long, env = "QDRANT_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Qdrant REST URL, e.g. http://localhost:6333: read only for payloads gRPC cannot carry
    /// exactly (integers above 2^63−1). Default: the YAML's `port`, else the gRPC host on 6333.
    #[arg(long, env = "QDRANT_REST_URL", value_name = "URL")]
    pub rest_url: Option<String>,
    /// Qdrant API key. Overrides the YAML.
    #[arg(
        long,
        env = "QDRANT_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Seconds one gRPC request may take before it is retried.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// Attempts for a request failing with a transient error (unavailable, resource
    /// exhausted, deadline exceeded), with exponential backoff between them.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    /// Where Qdrant's REST API cannot be read, write a payload number between 2^63 and 2^64 as
    /// the nearest double gRPC sends (with a warning) instead of failing its collection.
    #[arg(long)]
    pub allow_rounded_integers: bool,
}

/// How hard to read: cursors, page size, encoders. Shared by every command that scrolls.
#[derive(Clone, Debug, clap::Args)]
pub struct ReadTuning {
    /// Concurrent scroll cursors (each its own gRPC connection), shared by all collections.
    /// Default: half the CPUs, at least 1.
    #[arg(long, default_value_t = default_cursors(), value_name = "N")]
    pub cursors: usize,
    /// Points per scroll request.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub page_size: u32,
    /// Threads encoding pages; default: the number of CPUs.
    #[arg(long, value_name = "N")]
    pub encoders: Option<usize>,
}

impl ReadTuning {
    pub fn encoders(&self) -> usize {
        self.encoders.unwrap_or_else(cpus).max(1)
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Half the CPUs: on 2 cores shared with the server, 1 cursor exported 1.08–1.32× faster than 4
/// in two `scripts/bench.sh` runs (the encoders, not the scroll, are the limit there, and more
/// streams only add contention), while the scroll-only ceiling grows with cursors; scaling with
/// the CPUs keeps a host with many encoders fed. Only the 2-core end is measured.
fn default_cursors() -> usize {
    (cpus() / 2).max(1)
}

/// The `qdrant:` section of `qdrant2csv.yaml`, exactly the guide's keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(
    default,
    expecting = "a mapping of the guide's qdrant keys (host, port, grpc_port, …)"
)]
pub struct QdrantSection {
    pub host: Option<String>,
    /// The REST port: never used for gRPC; the REST reads (`source::rest`) use it.
    pub port: Option<u16>,
    pub grpc_port: Option<u16>,
    pub api_key: Option<String>,
    pub url: Option<String>,
    pub location: Option<String>,
    /// The Python client's `https` flag: use TLS with `host`.
    pub https: Option<bool>,
}

/// The `export:` section of `qdrant2csv.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(
    default,
    expecting = "a mapping of the guide's export keys (collections, max_line_in_file, output_path)"
)]
pub struct ExportSection {
    pub collections: Option<Vec<String>>,
    pub max_line_in_file: Option<u64>,
    pub output_path: Option<PathBuf>,
}

impl ExportSection {
    /// `--collection` flags when given, else the YAML's `export.collections`; empty means all.
    pub fn wanted(&self, flags: &[String]) -> Vec<String> {
        if flags.is_empty() {
            self.collections.clone().unwrap_or_default()
        } else {
            flags.to_vec()
        }
    }
}

/// The whole `qdrant2csv.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, expecting = "a mapping with the sections qdrant: and export:")]
pub struct SourceFile {
    pub qdrant: QdrantSection,
    pub export: ExportSection,
}

/// The trimmed value, unless it is absent or blank (the guide writes `''` for "not set").
fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A checked way to reach Qdrant.
#[derive(Clone, Debug)]
pub struct Connection {
    pub url: String,
    /// Where the URL came from, for error messages (`--url`, `qdrant.grpc_port in FILE`, …).
    pub origin: String,
    /// The REST API's base URL, and where it came from.
    pub rest_url: String,
    pub rest_origin: String,
    pub api_key: Option<Secret>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
    /// A page whose exact payloads REST cannot give is written as gRPC sent it (`true`), or
    /// fails its collection (`false`, the default).
    pub allow_rounded_integers: bool,
}

impl Connection {
    /// Resolves flags over the YAML section: `--url` > `url` > `location` > `host` +
    /// `grpc_port` > `localhost:6334`.
    pub fn resolve(
        args: &QdrantArgs,
        section: &QdrantSection,
        file: Option<&Path>,
    ) -> Result<Connection, ConfigError> {
        let in_file = |key: &str| match file {
            Some(path) => format!("qdrant.{key} in {}", path.display()),
            None => format!("qdrant.{key}"),
        };
        let (url, origin) = if let Some(url) = nonempty(&args.url) {
            (url.to_owned(), "--url / QDRANT_URL".to_owned())
        } else if let Some(url) = nonempty(&section.url) {
            (url.to_owned(), in_file("url"))
        } else if let Some(location) = nonempty(&section.location) {
            if location == ":memory:" || location.eq_ignore_ascii_case("memory") {
                return Err(ConfigError::Setting(format!(
                    "{}: `location: {location}` is the Python client's in-process mode and is not \
                     supported: point qdrant2pg at a running Qdrant with `url` or `host` + `grpc_port`, \
                     or read a snapshot file with --snapshot",
                    in_file("location")
                )));
            }
            (location.to_owned(), in_file("location"))
        } else {
            let host = nonempty(&section.host).unwrap_or("localhost");
            let port = section.grpc_port.unwrap_or(DEFAULT_GRPC_PORT);
            let scheme = if section.https == Some(true) {
                "https"
            } else {
                "http"
            };
            let origin = if section.grpc_port.is_some() {
                in_file("host/grpc_port")
            } else {
                "default gRPC port".to_owned()
            };
            (format!("{scheme}://{host}:{port}"), origin)
        };
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        let (rest_url, rest_origin) = rest_address(args, section, &url, &in_file);
        let api_key = match nonempty(&args.api_key) {
            Some(key) => Some(key.to_owned()),
            None => nonempty(&section.api_key).map(str::to_owned),
        };
        Ok(Connection {
            url,
            origin,
            rest_url,
            rest_origin,
            api_key: api_key.and_then(Secret::new),
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
            retries: args.retries.max(1),
            allow_rounded_integers: args.allow_rounded_integers,
        })
    }

    /// A hint for a failed connection: what was tried and the usual ports.
    pub fn hint(&self) -> String {
        let rest = format!(":{REST_PORT}");
        let mut hint = format!(
            "tried {} (from {}); Qdrant listens for gRPC on {DEFAULT_GRPC_PORT} by default \
             ({REST_PORT} is its REST port, which qdrant2pg does not use)",
            self.url, self.origin
        );
        if self.url.ends_with(&rest) || self.url.contains(&format!("{rest}/")) {
            hint.push_str(&format!(
                ": port {REST_PORT} is almost certainly wrong here"
            ));
        }
        hint
    }
}

/// The REST address: `--rest-url` > the YAML's `port` (with its `host`, else the gRPC host) >
/// the gRPC host on Qdrant's default REST port. The scheme follows the gRPC URL's (or
/// `https: true`).
fn rest_address(
    args: &QdrantArgs,
    section: &QdrantSection,
    grpc_url: &str,
    in_file: &dyn Fn(&str) -> String,
) -> (String, String) {
    if let Some(url) = nonempty(&args.rest_url) {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        return (url, "--rest-url / QDRANT_REST_URL".to_owned());
    }
    let (scheme, rest) = grpc_url.split_once("://").unwrap_or(("http", grpc_url));
    let scheme = if section.https == Some(true) {
        "https"
    } else {
        scheme
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let grpc_host = match authority.strip_prefix('[') {
        // An IPv6 literal keeps its brackets.
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => authority
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(authority, |(host, _)| host)
            .to_owned(),
    };
    match section.port {
        Some(port) => {
            let host = nonempty(&section.host).map_or(grpc_host, str::to_owned);
            (format!("{scheme}://{host}:{port}"), in_file("port"))
        }
        None => (
            format!("{scheme}://{grpc_host}:{REST_PORT}"),
            format!("the gRPC host on Qdrant's default REST port {REST_PORT}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(yaml: &str) -> QdrantSection {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn guide_sample_uses_grpc_port() {
        let s = section(
            "host: 'localhost'\nport: 6333\ngrpc_port: 6434\napi_key: ''\nurl: ''\nlocation: ''\n",
        );
        let c = Connection::resolve(&QdrantArgs::default(), &s, Some(Path::new("q.yaml"))).unwrap();
        assert_eq!(c.url, "http://localhost:6434");
        assert_eq!(c.rest_url, "http://localhost:6333");
        assert!(
            c.rest_origin.contains("qdrant.port in q.yaml"),
            "{}",
            c.rest_origin
        );
        assert!(c.api_key.is_none());
        assert!(c.hint().contains("6334"), "{}", c.hint());
        assert!(c.hint().contains("q.yaml"), "{}", c.hint());
    }

    #[test]
    fn flags_beat_the_file_and_memory_is_refused() {
        let s = section("url: 'http://a:1'\napi_key: 'k1'\n");
        let args = QdrantArgs {
            url: Some("https://b:2".into()),
            api_key: Some("k2".into()),
            ..Default::default()
        };
        let c = Connection::resolve(&args, &s, None).unwrap();
        assert_eq!(c.url, "https://b:2");
        assert_eq!(c.rest_url, "https://b:6333");
        assert_eq!(c.api_key.as_ref().map(Secret::expose), Some("k2"));
        assert!(!format!("{c:?}").contains("k2"));
        let err = Connection::resolve(&QdrantArgs::default(), &section("location: memory"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn defaults_to_local_grpc_and_warns_about_rest_port() {
        let c =
            Connection::resolve(&QdrantArgs::default(), &QdrantSection::default(), None).unwrap();
        assert_eq!(c.url, "http://localhost:6334");
        assert_eq!(c.rest_url, "http://localhost:6333");
        let s = section("url: 'localhost:6333'");
        let c = Connection::resolve(&QdrantArgs::default(), &s, None).unwrap();
        assert_eq!(c.url, "http://localhost:6333");
        assert!(c.hint().contains("almost certainly wrong"), "{}", c.hint());
    }

    #[test]
    fn the_rest_address_comes_from_the_flag_the_port_or_the_grpc_host() {
        let rest = |args: QdrantArgs, yaml: &str| {
            let c = Connection::resolve(&args, &section(yaml), None).unwrap();
            (c.rest_url, c.rest_origin)
        };
        let flag = QdrantArgs {
            rest_url: Some("qdrant.internal:7000".into()),
            ..Default::default()
        };
        assert_eq!(rest(flag, "port: 6333").0, "http://qdrant.internal:7000");
        assert_eq!(
            rest(QdrantArgs::default(), "host: db\nport: 16333\nhttps: true").0,
            "https://db:16333"
        );
        let grpc = QdrantArgs {
            url: Some("https://[::1]:6334/".into()),
            ..Default::default()
        };
        let (url, origin) = rest(grpc, "grpc_port: 1");
        assert_eq!(url, "https://[::1]:6333");
        assert!(origin.contains("default REST port"), "{origin}");
        assert_eq!(
            rest(QdrantArgs::default(), "url: 'http://q.example.com'").0,
            "http://q.example.com:6333"
        );
    }
}
