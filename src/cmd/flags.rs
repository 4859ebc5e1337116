//! Flag groups several commands share, and the command-line names of the library's choices.
//!
//! The library below `cmd` takes checked settings and knows nothing of clap: this module turns
//! the flags into those settings ([`SourceArgs::open`], [`GpfdistArgs::settings`]), and gives
//! clap the names (and help) of the library's enums through [`value_enum!`], so `--dialect
//! pgvector` parses into `postgres::ddl::Dialect` without that type deriving anything of clap's.

use std::path::PathBuf;

use clap::ValueEnum;
use clap::builder::PossibleValue;
use serde_json::Value;

use crate::config::qdrant::{QdrantArgs, ReadTuning, SourceFile};
use crate::layout::Halfvec;
use crate::layout::PayloadType;
use crate::postgres::ddl::{DdlOptions, Dialect, VectorStorage};
use crate::postgres::table::IfExists;
use crate::run::store::Settings;
use crate::sink::copy::Commits;
use crate::sink::gpfdist::{GpfdistError, GpfdistSettings};
use crate::source::Source;
use crate::source::snapshot::SnapshotFiles;
use crate::verify::full::FullRead;

/// How `verify --full` and `sync` read both sides whole: Qdrant's cursors, and the table's
/// connections and parts.
#[derive(Clone, Debug, clap::Args)]
pub struct FullReadArgs {
    #[command(flatten)]
    pub tuning: ReadTuning,
    /// PostgreSQL connections reading the table (for `verify --search`, also the clients that
    /// search each engine at once for the throughput measurement).
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// Parts (ctid ranges) the table is cut into when read whole; 1 reads it in one plain scan.
    /// Default: 4 per connection where the server has TID range scans (PostgreSQL 14 and
    /// later) and the table has 8 MB per part, else 1.
    #[arg(long, value_name = "N")]
    pub table_parts: Option<u32>,
}

impl FullReadArgs {
    pub fn settings(&self) -> FullRead {
        FullRead {
            tuning: self.tuning.clone(),
            connections: self.connections,
            table_parts: self.table_parts,
        }
    }
}

/// Where the points come from besides a server's address: snapshot files instead of a server,
/// and which collections.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SourceArgs {
    /// Read a Qdrant collection snapshot (NAME.snapshot, or gzipped NAME.snapshot.gz) instead of
    /// a server: repeatable, or a folder of snapshots. Replaces --url. The collection's name is
    /// the file name up to Qdrant's `-<peer id>-<date>.snapshot` suffix, else up to `.snapshot`;
    /// with one snapshot, `--collection NAME` names it.
    #[arg(long = "snapshot", value_name = "FILE|DIR")]
    pub snapshots: Vec<PathBuf>,
    /// Where snapshots are unpacked, in a subdirectory removed afterwards. It needs about the
    /// snapshots' unpacked size free. Default: the system temp dir (TMPDIR).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// A collection to work on (repeatable). Default: the YAML's `export.collections`, else
    /// every collection.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
}

impl SourceArgs {
    /// The snapshots, or the server `qdrant` and the YAML `file` (read from `config`) point at,
    /// and the names of the collections to work on, each once, in the order given.
    pub fn open(
        &self,
        qdrant: &QdrantArgs,
        file: &SourceFile,
        config: Option<&std::path::Path>,
    ) -> anyhow::Result<(Source, Vec<String>)> {
        let wanted = file.export.wanted(&self.collections);
        let snapshots = SnapshotFiles {
            paths: self.snapshots.clone(),
            scratch: self.scratch.clone(),
        };
        let source = Source::open(qdrant, &file.qdrant, config, &snapshots, &wanted)?;
        let mut names = source.collections(&wanted)?;
        let mut seen = std::collections::HashSet::new();
        names.retain(|name| seen.insert(name.clone()));
        Ok((source, names))
    }
}

/// Flags every command that joins a shared run takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Names the run. Identical commands with the same name share one run, on any number of
    /// hosts; once it has finished, running it again does nothing unless the name changes.
    #[arg(long = "run", value_name = "NAME", default_value = "")]
    pub name: String,
}

/// How the loading connections commit (import, migrate, sync).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct CommitArgs {
    /// Make each commit (a unit's, a sync repair batch's) wait for its WAL flush, as the
    /// server's synchronous_commit says. By default they commit without waiting and the command
    /// makes one durable commit after the last, before it reports done (sync: at the end of each pass): the same guarantee, and faster on a server that
    /// flushes (Greenplum-based servers always wait for each).
    #[arg(long)]
    pub durable_each_commit: bool,
    /// What the default does now (units commit without waiting), kept for older scripts; the
    /// command still makes one durable commit before it reports done.
    #[arg(long, hide = true, conflicts_with = "durable_each_commit")]
    pub synchronous_commit_off: bool,
}

impl CommitArgs {
    /// The commit mode for loading into `dialect`.
    pub fn commits(&self, dialect: Dialect) -> Commits {
        if self.durable_each_commit || dialect == Dialect::Adbpg {
            Commits::EachDurable
        } else {
            Commits::Deferred
        }
    }
}

/// The tables a load creates, and what happens to one that is already there (import,
/// migrate).
#[derive(Clone, Debug, clap::Args)]
pub struct TableArgs {
    /// The target's SQL dialect: the tables' DDL and how vectors are spelled (migrate sends
    /// COPY BINARY to every dialect but Greenplum before 6).
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    /// pgvector: when dense vectors become halfvec instead of vector.
    #[arg(long, value_enum, default_value_t)]
    pub halfvec: Halfvec,
    /// The storage of float array columns in the tables it creates.
    #[arg(long, value_enum, default_value_t)]
    pub vector_storage: VectorStorage,
    /// What to do with a table that already exists.
    #[arg(long, value_enum, default_value_t)]
    pub if_exists: IfExists,
}

impl TableArgs {
    pub fn ddl_options(&self) -> DdlOptions {
        DdlOptions {
            dialect: self.dialect,
            halfvec: self.halfvec,
            storage: self.vector_storage,
        }
    }
}

/// What makes a shared run this run: `command`, the names it loads, `--run`, the table flags
/// and the command's own `flags`, each keyed by its flag (tuning flags are not settings, so
/// each host may pick its own).
pub fn run_settings(
    command: &str,
    names: &[String],
    run: &RunArgs,
    table: &TableArgs,
    flags: impl IntoIterator<Item = (&'static str, Value)>,
) -> Settings {
    [
        ("command", Value::from(command)),
        ("--collection", Value::from(names)),
        ("--run", Value::from(run.name.as_str())),
        ("--dialect", setting(&table.dialect)),
        ("--halfvec", setting(&table.halfvec)),
        ("--vector-storage", setting(&table.vector_storage)),
        ("--if-exists", setting(&table.if_exists)),
    ]
    .into_iter()
    .chain(flags)
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// How import's rows reach the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// COPY through the coordinator, over `--connections` sessions.
    #[default]
    Copy,
    /// Greenplum / AnalyticDB: the segments pull each whole file from a gpfdist this run
    /// starts, through an external table.
    Gpfdist,
}

/// `import` flags for the gpfdist path.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GpfdistArgs {
    /// How rows reach the target: `copy` through the coordinator, or `gpfdist` (Greenplum and
    /// AnalyticDB only: the segments pull the files in parallel).
    #[arg(long, value_enum, default_value_t)]
    pub via: Via,
    /// The gpfdist program [default: gpfdist on PATH, else $GPHOME/bin/gpfdist].
    #[arg(long, value_name = "PATH")]
    pub gpfdist: Option<PathBuf>,
    /// The address the segments reach this host at [default: this host's address on its route
    /// to the coordinator].
    #[arg(long, value_name = "HOST")]
    pub gpfdist_address: Option<String>,
    /// The port of the first connection's gpfdist; connection i serves on PORT + i [default:
    /// free ports].
    #[arg(long, value_name = "PORT")]
    pub gpfdist_port: Option<u16>,
}

impl GpfdistArgs {
    /// The gpfdist settings of `--via gpfdist`; `coordinator` is the target's first TCP host
    /// and port, for the default address.
    pub fn settings(
        &self,
        coordinator: Option<(String, u16)>,
    ) -> Result<GpfdistSettings, GpfdistError> {
        GpfdistSettings::resolve(
            self.gpfdist.as_deref(),
            self.gpfdist_address.as_deref(),
            self.gpfdist_port,
            coordinator,
        )
    }
}

/// A flag's value as a shared run's setting: its name on the command line.
pub fn setting<V: ValueEnum>(value: &V) -> Value {
    value
        .to_possible_value()
        .map_or(Value::Null, |v| Value::from(v.get_name()))
}

/// Implements [`ValueEnum`] for a library enum: each variant's name on the command line, its
/// aliases, and the help `--help` shows for it.
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal $(| $alias:literal)*: $help:literal,)+ }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($ty::$variant => PossibleValue::new($name)$(.alias($alias))*.help($help),)+
                })
            }
        }
    };
}

value_enum!(Dialect {
    Postgres => "postgres": "PostgreSQL with arrays (`real[]`); no extension needed",
    Pgvector => "pgvector": "PostgreSQL with the pgvector extension (`vector`, `halfvec`, `sparsevec`)",
    Adbpg => "adbpg" | "greenplum": "AnalyticDB for PostgreSQL / Greenplum: arrays, distributed by id",
});

value_enum!(Halfvec {
    Never => "never": "Always `vector(dim)`: exact for every Qdrant datatype",
    Float16 => "float16": "`halfvec(dim)` for vectors Qdrant stores as float16 (exact: the values are float16 already), `vector(dim)` for the rest",
    Always => "always": "`halfvec(dim)` for every dense vector: half the space, but float32 values are rounded",
});

value_enum!(VectorStorage {
    External => "external": "`EXTERNAL`: out of line and never compressed (floats do not compress; PostgreSQL's default tries on every vector over about 2 KB)",
    Default => "default": "PostgreSQL's default for the type (`EXTENDED` for arrays)",
});

value_enum!(PayloadType {
    Json => "json": "`json`: the payload's text byte for byte",
    Jsonb => "jsonb": "`jsonb`: parsed, numbers as `numeric`; cannot hold \\u0000",
});

value_enum!(IfExists {
    Skip => "skip": "Leave it alone, as the guide does",
    Append => "append": "Load into it (the ledger still never loads a unit twice)",
    Truncate => "truncate": "Empty it, then load",
    Replace => "replace": "Drop it, create it anew, load",
    Fail => "fail": "Stop with an error",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_enums_parse_by_their_names_and_aliases() {
        assert_eq!(Dialect::from_str("pgvector", true), Ok(Dialect::Pgvector));
        assert_eq!(Dialect::from_str("greenplum", true), Ok(Dialect::Adbpg));
        assert_eq!(setting(&Dialect::Adbpg), Value::from("adbpg"));
        assert_eq!(setting(&IfExists::Replace), Value::from("replace"));
        assert_eq!(Halfvec::from_str("float16", true), Ok(Halfvec::Float16));
        assert!(VectorStorage::from_str("plain", true).is_err());
        assert_eq!(PayloadType::value_variants().len(), 2);
    }
}
