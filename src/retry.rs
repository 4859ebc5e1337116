//! One retry policy for every call that a restart, an overload or a lost connection may fail
//! for a moment: Qdrant's gRPC and REST calls, PostgreSQL's loading sessions and the shared
//! run's coordination session.
//!
//! [`retry`] runs an operation until it succeeds, until the caller's judgement of a failure
//! says it will not pass ([`Verdict::GiveUp`]), or until it has been tried `attempts` times.
//! Between attempts it sleeps the [`Backoff`]: [`FIRST_WAIT`], doubled each time up to
//! [`MAX_WAIT`], unless the failure itself says how long to wait (Qdrant's rate limiter sends a
//! `retry-after`), which is also capped. Which failures are transient is the caller's to say,
//! by error kind (a gRPC status code, a SQLSTATE, an HTTP status), never by message text.

use std::time::Duration;

/// The first wait between attempts.
pub const FIRST_WAIT: Duration = Duration::from_millis(200);
/// The longest wait between attempts: long enough to ride out a server restart, short enough
/// to notice one that ended. With the default 8 attempts the waits add up to about 22 s.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// Waits between attempts: [`FIRST_WAIT`], doubled each time up to [`MAX_WAIT`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST_WAIT }
    }
}

impl Backoff {
    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_WAIT);
        wait
    }
}

/// What the caller makes of one failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: try again after the backoff.
    Retry,
    /// Transient, and the failure says how long to wait (capped at [`MAX_WAIT`]).
    RetryAfter(Duration),
    /// It will fail the same way again.
    GiveUp,
}

/// A failure that ended the retries: the last error and the attempts made.
#[derive(Debug)]
pub struct Exhausted<E> {
    pub error: E,
    pub attempts: u32,
}

/// Runs `op` (given the attempt number, from 1) until it succeeds, `judge` gives up on its
/// failure, or `attempts` attempts (at least one) have failed. `judge` sees each failure, its
/// attempt number and the wait that would follow it, so it can also report the retry.
pub fn retry<T, E>(
    attempts: u32,
    mut op: impl FnMut(u32) -> Result<T, E>,
    mut judge: impl FnMut(&E, u32, Duration) -> Verdict,
) -> Result<T, Exhausted<E>> {
    let mut backoff = Backoff::default();
    let mut attempt = 1;
    loop {
        let error = match op(attempt) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let wait = backoff.next_wait();
        let verdict = if attempt < attempts {
            judge(&error, attempt, wait)
        } else {
            Verdict::GiveUp
        };
        match verdict {
            Verdict::GiveUp => {
                return Err(Exhausted {
                    error,
                    attempts: attempt,
                });
            }
            Verdict::Retry => std::thread::sleep(wait),
            Verdict::RetryAfter(asked) => std::thread::sleep(asked.min(MAX_WAIT)),
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..9).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits[0], FIRST_WAIT);
        assert_eq!(waits[1], FIRST_WAIT * 2);
        assert_eq!(waits[5], FIRST_WAIT * 32);
        assert_eq!(waits[6], MAX_WAIT);
        assert_eq!(waits[8], MAX_WAIT);
    }

    #[test]
    fn retries_until_success_a_verdict_to_give_up_or_the_attempts_run_out() {
        // Succeeds on the third attempt; the judge hears of the two failures.
        let mut heard = Vec::new();
        let done = retry(
            5,
            |attempt| if attempt < 3 { Err(attempt) } else { Ok("ok") },
            |e, attempt, _| {
                heard.push((*e, attempt));
                Verdict::RetryAfter(Duration::ZERO)
            },
        );
        assert_eq!(done.unwrap(), "ok");
        assert_eq!(heard, vec![(1, 1), (2, 2)]);
        // A failure judged permanent is not tried again.
        let mut tries = 0;
        let failed = retry(
            5,
            |_| -> Result<(), &str> {
                tries += 1;
                Err("bad data")
            },
            |_, _, _| Verdict::GiveUp,
        )
        .unwrap_err();
        assert_eq!((tries, failed.attempts, failed.error), (1, 1, "bad data"));
        // Transient failures stop after the attempts; the last one is not judged.
        let mut judged = 0;
        let failed = retry(
            3,
            |attempt| -> Result<(), u32> { Err(attempt) },
            |_, _, _| {
                judged += 1;
                Verdict::RetryAfter(Duration::ZERO)
            },
        )
        .unwrap_err();
        assert_eq!((failed.error, failed.attempts, judged), (3, 3, 2));
    }
}
