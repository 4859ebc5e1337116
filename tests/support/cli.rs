//! Running the built `qdrant2pg` binary as a user would, with a clean environment.

use std::process::{Command, Output};

/// Runs `qdrant2pg args…` with no Qdrant or libpq variables inherited from the caller.
pub fn qdrant2pg(args: &[&str]) -> Output {
    qdrant2pg_with_env(args, &[])
}

/// [`qdrant2pg`] with these environment variables set.
pub fn qdrant2pg_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qdrant2pg"))
        .args(args)
        .env_remove("QDRANT_URL")
        .env_remove("QDRANT_API_KEY")
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env_remove("PGSSLMODE")
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
