//! Running the built `qdrant2pg` binary as a user would, with a clean environment.

use std::process::{Command, Output};

/// Runs `qdrant2pg args…` with no Qdrant or libpq variables inherited from the caller.
pub fn qdrant2pg(args: &[&str]) -> Output {
    command(args).output().expect("run qdrant2pg")
}

/// `qdrant2pg args…` ready to run, with no Qdrant or libpq variables inherited from the
/// caller: for a test that sets its own environment or working directory.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qdrant2pg"));
    command.args(args);
    for var in [
        "QDRANT_URL",
        "QDRANT_API_KEY",
        "PGPASSWORD",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGPASSFILE",
    ] {
        command.env_remove(var);
    }
    command
}

/// [`qdrant2pg`] with these environment variables set.
pub fn qdrant2pg_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args)
        .envs(env.iter().copied())
        .output()
        .expect("run qdrant2pg")
}

/// Status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", describe(out));
}
