//! Which PostgreSQL errors a fresh connection may cure: the one judgement every retry of a
//! loading session, a scan or the shared run's coordination session makes, by SQLSTATE (or the
//! absence of one when the socket itself failed), never by message text.

/// Whether a fresh connection may succeed where this error happened: decided by SQLSTATE, or
/// by the absence of one when the socket itself failed.
pub fn is_transient(err: &postgres::Error) -> bool {
    match err.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || matches!(
                    code,
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
                )
        }
        None => err.is_closed() || has_io_source(err),
    }
}

fn has_io_source(err: &postgres::Error) -> bool {
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        if e.is::<std::io::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}
