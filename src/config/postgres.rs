//! The target side: the guide's `csv2adbpg.yaml`, libpq's environment, `~/.pgpass` and the
//! flags that override them, resolved into one checked way to reach PostgreSQL.
//!
//! Precedence per setting is flag (`--dsn` and its parts) > libpq environment (`PGHOST`,
//! `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`) > YAML
//! (`database.{host,port,name,user,password,schema}`) > libpq's defaults; a password still
//! missing is looked up in `~/.pgpass` (or `PGPASSFILE`) as libpq does.
//!
//! TLS follows libpq's `sslmode`: `disable`, `prefer` (the default: TLS if the server offers it,
//! unverified), `require` (TLS, unverified), `verify-ca` (the chain must lead to a trusted root)
//! and `verify-full` (and the name must match the host). Roots come from `sslrootcert`, else
//! `~/.postgresql/root.crt`, else the system store. rust-postgres knows only the first three
//! modes, so the verify modes are taken out of the DSN here and enforced by the rustls verifier.
//!
//! The password is a [`Secret`]: it never appears in `Debug`, messages or reports; connection
//! errors name `user@host:port/dbname` only (the guide prints its whole config, password
//! included).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::ConfigError;
use super::qdrant::Secret;

/// PostgreSQL's default port.
pub const DEFAULT_PORT: u16 = 5432;
/// The schema used when none is named, as in the guide's sample.
pub const DEFAULT_SCHEMA: &str = "public";
/// What every session sets first, so that what the server reads and writes as text means what
/// this tool means:
/// - `extra_float_digits = 3`: PostgreSQL before 12 — and so Greenplum 6 and AnalyticDB for
///   PostgreSQL 6, which are 9.4 underneath — prints `real` with 6 and `double precision` with 15
///   significant digits unless it is set. From 12 on, any value above 0 means the shortest exact
///   text, so it changes nothing there.
/// - `standard_conforming_strings = on`: the SQL this tool writes spells `\` in literals as the
///   standard does (on by default since 9.1, but a server may be configured otherwise).
///
/// A `SET`, not the startup packet's `options` (which would spare the round trip): Greenplum
/// applies startup options on the coordinator only, and passes a `SET` on to the segments for
/// simple queries only — an extended-protocol query's casts, run on the segments, still print
/// `real` rounded (observed on 6.24.3). So nothing here reads floats as server text: verify
/// reads every table row in PostgreSQL's binary form (`verify::compare::fields`).
const EXACT_SESSION: &str = "SET extra_float_digits = 3; SET standard_conforming_strings = on";
/// Seconds to wait for a connection when the DSN does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags that say where PostgreSQL is.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PostgresArgs {
    /// Connection string, as libpq takes it: `postgresql://user@host:5432/db?sslmode=require`
    /// or `host=… port=… dbname=… user=…`. Parts it sets override the environment and the
    /// YAML; parts it leaves out come from them.
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,
    /// Target schema, created if missing [default: the YAML's database.schema, else public].
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// TLS mode, as libpq's sslmode [default: the DSN's, else PGSSLMODE, else prefer].
    #[arg(long, value_enum, value_name = "MODE")]
    pub sslmode: Option<SslMode>,
    /// CA certificates (PEM) that verify-ca / verify-full trust [default:
    /// ~/.postgresql/root.crt if present, else the system store].
    #[arg(long, value_name = "FILE")]
    pub sslrootcert: Option<PathBuf>,
}

/// libpq's TLS modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <SslMode as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            format!("sslmode {s:?} is not one of disable, prefer, require, verify-ca, verify-full")
        })
    }
}

/// The `database:` section of `csv2adbpg.yaml`, exactly the guide's keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(
    default,
    expecting = "a mapping of the guide's database keys (host, port, name, …)"
)]
pub struct DatabaseSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub schema: Option<String>,
}

/// The whole `csv2adbpg.yaml`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(
    default,
    expecting = "a mapping with the section database: and the key data_path"
)]
pub struct TargetFile {
    pub database: DatabaseSection,
    pub data_path: Option<PathBuf>,
}

/// Connecting to the target failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("cannot set up the session on {target} ({EXACT_SESSION})")]
    Session {
        target: String,
        #[source]
        source: postgres::Error,
    },
    #[error("cannot read the TLS root certificates {path}: {detail}")]
    RootCert { path: PathBuf, detail: String },
}

/// A checked way to reach the target database.
#[derive(Clone)]
pub struct Target {
    /// Host, port, user, database; no password (it is kept in `password`).
    config: postgres::Config,
    password: Option<Secret>,
    sslmode: SslMode,
    root_cert: Option<PathBuf>,
    /// The schema tables and the ledger go into.
    pub schema: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("target", &self.describe())
            .field("password", &self.password)
            .field("sslmode", &self.sslmode)
            .field("schema", &self.schema)
            .finish()
    }
}

impl Target {
    /// Resolves flags, environment (`env` looks a variable up) and YAML into one target.
    pub fn resolve(
        args: &PostgresArgs,
        section: &DatabaseSection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Target, ConfigError> {
        let env = |key: &str| env(key).filter(|v| !v.is_empty());
        let yaml = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        let (dsn, dsn_sslmode, dsn_root_cert) = match args.dsn.as_deref() {
            Some(dsn) => take_tls_params(dsn),
            None => (String::new(), None, None),
        };
        let mut config = postgres::Config::from_str(&dsn).map_err(|e| {
            ConfigError::Setting(format!("--dsn is not a valid connection string: {e}"))
        })?;
        if config.get_hosts().is_empty() {
            let host = env("PGHOST").or_else(|| yaml(&section.host));
            for host in host.as_deref().unwrap_or("localhost").split(',') {
                config.host(host.trim());
            }
        }
        if config.get_ports().is_empty() {
            let port = match env("PGPORT") {
                Some(port) => port
                    .parse()
                    .map_err(|_| ConfigError::Setting(format!("PGPORT={port:?} is not a port")))?,
                None => section.port.unwrap_or(DEFAULT_PORT),
            };
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| yaml(&section.user))
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".to_owned());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            let dbname = env("PGDATABASE")
                .or_else(|| yaml(&section.name))
                .unwrap_or(user);
            config.dbname(&dbname);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        config.application_name("qdrant2pg");
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .or_else(|| env("PGPASSWORD"))
            .or_else(|| section.password.clone().filter(|p| !p.is_empty()));
        let sslmode = match (args.sslmode, dsn_sslmode.or_else(|| env("PGSSLMODE"))) {
            (Some(mode), _) => mode,
            (None, Some(text)) => text.parse().map_err(ConfigError::Setting)?,
            (None, None) => SslMode::Prefer,
        };
        let root_cert = args
            .sslrootcert
            .clone()
            .or(dsn_root_cert.map(PathBuf::from))
            .or_else(|| env("PGSSLROOTCERT").map(PathBuf::from));
        let schema = args
            .schema
            .clone()
            .or_else(|| yaml(&section.schema))
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
        let mut target = Target {
            config,
            password: password.and_then(Secret::new),
            sslmode,
            root_cert,
            schema,
        };
        if target.password.is_none() {
            let file = env("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")));
            target.password = file.and_then(|f| target.pgpass(&f)).and_then(Secret::new);
        }
        Ok(target)
    }

    /// The first TCP host and its port: where the coordinator is, for a server that must
    /// reach back to this host. `None` for a unix socket (the server is local).
    pub fn coordinator(&self) -> Option<(String, u16)> {
        let port = self
            .config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT);
        match self.config.get_hosts().first()? {
            postgres::config::Host::Tcp(host) => Some((host.clone(), port)),
            postgres::config::Host::Unix(_) => None,
        }
    }

    /// `user@host:port/dbname`, for messages: never the password.
    pub fn describe(&self) -> String {
        let hosts = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let ports = self
            .config
            .get_ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut out = String::new();
        let _ = write!(
            out,
            "{}@{hosts}:{ports}/{}",
            self.config.get_user().unwrap_or_default(),
            self.config.get_dbname().unwrap_or_default()
        );
        out
    }

    /// A new session with TLS as `sslmode` says, set up to read and write exactly
    /// ([`EXACT_SESSION`]).
    pub fn connect(&self) -> Result<postgres::Client, ConnectError> {
        let mut config = self.config.clone();
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config.ssl_mode(match self.sslmode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        let tls = self.tls()?;
        let mut client = config
            .connect(tls)
            .map_err(|source| ConnectError::Connect {
                target: self.describe(),
                source,
            })?;
        client
            .batch_execute(EXACT_SESSION)
            .map_err(|source| ConnectError::Session {
                target: self.describe(),
                source,
            })?;
        Ok(client)
    }

    fn tls(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError::RootCert {
                path: PathBuf::new(),
                detail: e.to_string(),
            })?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.sslmode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(Unverified {
                provider: Arc::clone(&provider),
            }),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| ConnectError::RootCert {
                        path: self.root_cert.clone().unwrap_or_default(),
                        detail: e.to_string(),
                    })?;
                Arc::new(Verified {
                    webpki,
                    check_name: self.sslmode == SslMode::VerifyFull,
                })
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The trusted roots: `sslrootcert`, else `~/.postgresql/root.crt`, else the system's.
    fn roots(&self) -> Result<RootCertStore, ConnectError> {
        let default = std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".postgresql/root.crt"))
            .filter(|p| p.exists());
        let mut store = RootCertStore::empty();
        match self.root_cert.clone().or(default) {
            Some(path) => {
                let error = |detail: String| ConnectError::RootCert {
                    path: path.clone(),
                    detail,
                };
                let certs = CertificateDer::pem_file_iter(&path)
                    .map_err(|e| error(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| error(e.to_string()))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(error("no usable certificate in the file".to_owned()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
            }
        }
        Ok(store)
    }

    /// The password `~/.pgpass` holds for this host, port, database and user, as libpq reads
    /// it: `host:port:db:user:password` lines, `*` matching anything, `\` escaping `:` and `\`,
    /// and the file ignored unless only its owner can read it.
    fn pgpass(&self, file: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(file).ok()?;
        if meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
        let text = std::fs::read_to_string(file).ok()?;
        let host = match self.config.get_hosts().first()? {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(_) => "localhost".to_owned(),
        };
        let port = self
            .config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let wanted = [
            host.as_str(),
            port.as_str(),
            self.config.get_dbname().unwrap_or_default(),
            self.config.get_user().unwrap_or_default(),
        ];
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let fields = split_pgpass_line(line);
                let matches = fields.len() == 5
                    && fields
                        .iter()
                        .zip(wanted)
                        .all(|(field, want)| field == "*" || field == want);
                matches.then(|| fields[4].clone())
            })
    }
}

/// One `.pgpass` line split on unescaped `:`, with `\:` and `\\` unescaped.
fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

/// Takes `sslmode` and `sslrootcert` out of a DSN (URL query or `key=value` form), since
/// rust-postgres rejects the verify modes and does not know `sslrootcert`.
fn take_tls_params(dsn: &str) -> (String, Option<String>, Option<String>) {
    let mut sslmode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            root_cert = Some(value);
            true
        }
        _ => false,
    };
    let rest = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        match dsn.split_once('?') {
            Some((base, query)) => {
                let kept = query
                    .split('&')
                    .filter(|param| {
                        let (key, value) = param.split_once('=').unwrap_or((param, ""));
                        !take(key, value.to_owned())
                    })
                    .collect::<Vec<_>>();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => dsn.to_owned(),
        }
    } else {
        let mut rest = String::new();
        for (span, key, value) in key_value_pairs(dsn) {
            if !take(key, value) {
                rest.push_str(&dsn[span.0..span.1]);
                rest.push(' ');
            }
        }
        rest
    };
    (rest, sslmode, root_cert)
}

/// The `key = value` pairs of a libpq keyword/value string, each with its byte span; values
/// may be single-quoted, with `\` escaping.
fn key_value_pairs(dsn: &str) -> Vec<((usize, usize), &str, String)> {
    let bytes = dsn.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_space(i);
        if i >= bytes.len() {
            return pairs;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &dsn[start..i];
        i = skip_space(i);
        if bytes.get(i) != Some(&b'=') {
            // Not a pair: keep it as it is and let rust-postgres report it.
            pairs.push(((start, i), key, String::new()));
            continue;
        }
        i = skip_space(i + 1);
        let mut value = String::new();
        let quoted = bytes.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        while i < bytes.len() {
            let b = bytes[i];
            if (quoted && b == b'\'') || (!quoted && b.is_ascii_whitespace()) {
                break;
            }
            if b == b'\\' && i + 1 < bytes.len() {
                i += 1;
            }
            let len = utf8_len(bytes[i]);
            value.push_str(&dsn[i..(i + len).min(bytes.len())]);
            i += len;
        }
        if quoted && i < bytes.len() {
            i += 1;
        }
        pairs.push(((start, i), key, value));
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// `require` (and `prefer`): encrypt, trust any certificate, as libpq does without a root
/// certificate. Handshake signatures are still checked, so the session key is the server's.
#[derive(Debug)]
struct Unverified {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca` and `verify-full`: the chain must lead to a trusted root; `verify-full` also
/// checks the host name against the certificate.
#[derive(Debug)]
struct Verified {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env_of;

    fn guide_section() -> DatabaseSection {
        serde_yaml::from_str(
            "host: \"192.16.0.1\"\nport: 5433\nname: \"vector_database\"\nuser: \"username\"\n\
             password: \"s3cret\"\nschema: \"vec\"\n",
        )
        .unwrap()
    }

    #[test]
    fn yaml_alone_gives_the_guide_target_and_hides_the_password() {
        let t = Target::resolve(&PostgresArgs::default(), &guide_section(), &env_of(&[])).unwrap();
        assert_eq!(t.describe(), "username@192.16.0.1:5433/vector_database");
        assert_eq!(t.schema, "vec");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(!format!("{t:?}").contains("s3cret"), "{t:?}");
        assert_eq!(t.sslmode, SslMode::Prefer);
    }

    #[test]
    fn environment_beats_yaml_and_dsn_beats_both() {
        let env = env_of(&[
            ("PGHOST", "envhost"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
        ]);
        let t = Target::resolve(&PostgresArgs::default(), &guide_section(), &env).unwrap();
        assert_eq!(t.describe(), "envuser@envhost:5433/vector_database");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("envpw"));
        let args = PostgresArgs {
            dsn: Some("postgresql://me:pw@dsnhost:6000/db?sslmode=verify-full".into()),
            schema: Some("Other".into()),
            ..Default::default()
        };
        let t = Target::resolve(&args, &guide_section(), &env).unwrap();
        assert_eq!(t.describe(), "me@dsnhost:6000/db");
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.schema, "Other");
    }

    #[test]
    fn key_value_dsn_with_verify_modes_and_quotes() {
        let (rest, mode, root) = take_tls_params(
            "host=h sslmode = verify-ca  password='a b\\'c' sslrootcert=/x/ca.pem dbname=d",
        );
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/x/ca.pem"));
        let config = postgres::Config::from_str(&rest).unwrap();
        assert_eq!(config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(config.get_dbname(), Some("d"));
        let (rest, mode, _) = take_tls_params("postgres://h/d?sslmode=require&connect_timeout=3");
        assert_eq!(
            (rest.as_str(), mode.as_deref()),
            ("postgres://h/d?connect_timeout=3", Some("require"))
        );
        let err = Target::resolve(
            &PostgresArgs {
                dsn: Some("host=h sslmode=sometimes".into()),
                ..Default::default()
            },
            &DatabaseSection::default(),
            &env_of(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn pgpass_is_read_like_libpq() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:*:*:*:no\nh:5432:*:u:p\\:w\\\\d\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let args = PostgresArgs {
            dsn: Some("host=h user=u dbname=x".into()),
            ..Default::default()
        };
        let env = move |key: &str| (key == "PGPASSFILE").then(|| file.display().to_string());
        let t = Target::resolve(&args, &DatabaseSection::default(), &env).unwrap();
        assert_eq!(t.password.as_ref().map(Secret::expose), Some("p:w\\d"));
        std::fs::set_permissions(
            dir.path().join("pgpass"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let t = Target::resolve(&args, &DatabaseSection::default(), &env).unwrap();
        assert!(
            t.password.is_none(),
            "a world-readable pgpass must be ignored"
        );
    }
}
