//! The rule for the tiers of tests that need a genuine server installed by
//! `scripts/install-test-deps.sh` (Qdrant, Greenplum): where the install is missing, the tier is
//! skipped after one line saying so and why, except under `CI=true`, where a missing install
//! fails the test: CI must exercise the real thing.

use std::sync::Once;

/// `found`, or `None` after one line (once per process, through `said`) saying that the
/// `server` tier is skipped, why, and `meanwhile` what the tests do instead; a panic naming the
/// missing install under `CI=true`.
pub fn installed_or_skipped<T>(
    said: &'static Once,
    server: &str,
    found: Result<T, &str>,
    meanwhile: &str,
) -> Option<T> {
    match found {
        Ok(found) => Some(found),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true needs the {server}: {why}")
        }
        Err(why) => {
            said.call_once(|| eprintln!("{server} tier skipped: {why}; {meanwhile}"));
            None
        }
    }
}
