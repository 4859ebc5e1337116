//! Configuration: the guide's two YAML files, read unchanged, with flags and environment
//! variables on top, turned into checked settings before any work starts.
//!
//! Precedence is always flag > environment > YAML > default. Unknown YAML keys are reported as
//! warnings (a typo must not silently fall back to a default); wrong types are errors naming
//! the file and the key.

#[cfg(test)]
mod fuzz;
pub mod postgres;
pub mod qdrant;

use std::path::{Path, PathBuf};

use self::postgres::{PostgresArgs, Target, TargetFile};
use self::qdrant::{QdrantArgs, SourceFile};

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("{0}")]
    Setting(String),
}

/// Both ends, as the commands that touch Qdrant and PostgreSQL at once (migrate, verify, index)
/// take them: the guide's two YAML files, each overridden by its flags.
#[derive(Debug, clap::Args)]
pub struct EndpointArgs {
    /// The guide's qdrant2csv.yaml (its `qdrant:` section and `export.collections`).
    #[arg(long, value_name = "FILE")]
    pub source_config: Option<PathBuf>,
    /// The guide's csv2adbpg.yaml (its `database:` section).
    #[arg(long, value_name = "FILE")]
    pub target_config: Option<PathBuf>,
    #[command(flatten)]
    pub qdrant: QdrantArgs,
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

impl EndpointArgs {
    /// Reads both YAML files (warning about unknown keys) and resolves the PostgreSQL target:
    /// flags over environment over YAML.
    pub fn load(&self, warn: &dyn Fn(&str)) -> Result<(SourceFile, Target), ConfigError> {
        let source: SourceFile = read_or_default(self.source_config.as_deref(), warn)?;
        let target_file: TargetFile = read_or_default(self.target_config.as_deref(), warn)?;
        let target = Target::resolve(&self.postgres, &target_file.database, &|k| {
            std::env::var(k).ok()
        })?;
        Ok((source, target))
    }
}

/// Reads the YAML file if one is given (warning about unknown keys), else the defaults.
pub fn read_or_default<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
    warn: &dyn Fn(&str),
) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let (value, unknown) = read_yaml(path)?;
    for key in unknown {
        warn(&format!("{}: unknown key `{key}` ignored", path.display()));
    }
    Ok(value)
}

/// Reads a YAML file into `T`, collecting the dotted paths of keys `T` does not know.
pub fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(T, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_yaml(path, &text)
}

fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<(T, Vec<String>), ConfigError> {
    let mut unknown = Vec::new();
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let value = serde_ignored::deserialize(deserializer, |key| unknown.push(key.to_string()))
        .map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            detail: yaml_detail(&e),
        })?;
    Ok((value, unknown))
}

/// The YAML error, plus the hint a copy of the guide's sample needs: its `export:` block is
/// printed with `collections:` indented deeper than its sibling keys, which no YAML parser
/// (PyYAML included) accepts.
fn yaml_detail(err: &serde_yaml::Error) -> String {
    let mut detail = err.to_string();
    if detail.contains("did not find expected key") || detail.contains("expected <block end>") {
        detail.push_str(
            " (hint: keys of one mapping must be indented alike — in the guide's sample, \
             `collections:` must line up with `max_line_in_file:` and `output_path:`)",
        );
    }
    detail
}

/// An environment of fixed variables, for the tests of what reads the environment.
#[cfg(test)]
pub(crate) fn env_of(
    vars: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |key| {
        vars.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn unknown_keys_are_collected_and_bad_types_name_the_file() {
        let (_, unknown): (Sample, _) = parse_yaml(Path::new("x.yaml"), "a: 1\nb: 2\n").unwrap();
        assert_eq!(unknown, ["b"]);
        let err = parse_yaml::<Sample>(Path::new("x.yaml"), "a: one\n").unwrap_err();
        assert!(err.to_string().contains("x.yaml"), "{err}");
    }
}
