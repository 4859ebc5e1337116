//! The `qdrant2pg` binary: parse, dispatch, report the error chain once, set the exit code.

use std::process::ExitCode;

use clap::Parser;
use qdrant2pg::cli::{Cli, Command};
use qdrant2pg::cmd;

// mimalloc: export and migrate allocate and free page buffers, protobuf messages and strings on
// many threads at once; glibc malloc's per-thread arenas fragment and contend under that load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Export(args) => cmd::export::run(args, &cli.output),
        Command::Import(args) => cmd::import::run(args, &cli.output),
        Command::Migrate(args) => cmd::migrate::run(args, &cli.output),
        Command::Plan(args) => cmd::plan::run(args, &cli.output),
        Command::Verify(args) => cmd::verify::run(args, &cli.output),
        Command::Index(args) => cmd::index::run(args, &cli.output),
        Command::Status(args) => cmd::status::run(args, &cli.output),
        Command::Sync(args) => cmd::sync::run(args, &cli.output),
        Command::Generate(args) => cmd::generate::run(args, &cli.output),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A reader that stops reading our output (`| head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
