//! The shared run: one `migrate` or `import` divided among any number of processes, on any
//! number of hosts, with the target database as the only coordinator.
//!
//! Three tables beside the ledger, in the target schema:
//! - `qdrant2pg_run` — one row: the command and its settings, the plan (per table, as the
//!   command describes it), its generation (each new plan is the next one), when it started
//!   and finished;
//! - `qdrant2pg_units` — the units of work: an id range `[lo, hi)` of a collection (migrate) or
//!   a file (import); how far each got (`done_to`), its rows, how often it was claimed, and
//!   whether it is open (`todo`), `done` or `failed`;
//! - `qdrant2pg_workers` — every process that joined the generation.
//!
//! **Planning.** Every process starts with a transaction-scoped advisory lock on the schema's
//! run, so of any number of identical commands started at once exactly one finds no plan and
//! writes it — tables readied as `--if-exists` says, units inserted — in that one transaction;
//! the others wait on the lock, then read the plan. A run with other [`Settings`] (another
//! collection set, dialect, export…) is refused while a worker of it lives; once it is
//! finished, or no worker of it lives, a new plan replaces it. A finished run with the same
//! settings is not repeated: the process says so and exits (`--run NAME` starts another; a run
//! whose tables were dropped since is planned anew).
//!
//! **Claiming.** A worker claims a unit with a session-level advisory lock on `(class, unit)`,
//! held on its coordination connection for as long as it works on the unit, and bumps the
//! unit's `claims`: the new count is its token ([`Lease`]). A worker that dies — kill -9, host
//! lost — loses its connection and with it its locks, so its units are claimable again, and the
//! next claim changes their tokens. Each worker also holds a lock on its own number, which is
//! how any process tells live workers from gone ones. A worker with nothing to claim waits on a
//! held unit's lock ([`Member::wait_for`]), which PostgreSQL grants the moment its holder lets
//! go — finished, or dead.
//!
//! **Fencing.** The ledger, committed with each COPY, stays the only truth of what the tables
//! hold; the units only divide the work. Every COPY transaction locks its unit's row and checks
//! the token before it commits ([`SharedRun::lock_unit`], [`SharedRun::count_batch`]), so a
//! worker that lost a unit (its connection dropped and another worker claimed the unit) can
//! never commit into it again, whatever it still has in flight. The rules for what a page may
//! commit are migrate's ([`ranges`]); import's are per file ([`files`]).
//!
//! **Splitting.** A worker that finds nothing to claim cuts an open unit ([`Member::split`]):
//! under the unit's row lock its `hi` moves down to a point the caller chose above `done_to`,
//! and a new unit takes `[mid, old hi)`.
//!
//! Everything here is SQL that PostgreSQL 9.4 and Greenplum 6 run too: advisory locks,
//! `SELECT … FOR UPDATE`, `UPDATE … RETURNING`; no `SKIP LOCKED`, no `ON CONFLICT`, no query
//! that joins `pg_locks` with a distributed table.
//!
//! The files, by role: [`store`] holds the tables and the reads every role shares, [`plan`]
//! plans and joins, [`member`] is a worker's seat (claims, waits, splits), [`fence`] is the
//! check every commit passes, [`status`] reports; [`ranges`] and [`files`] are the units of
//! migrate and import.

pub mod fence;
pub mod files;
pub mod member;
pub mod plan;
pub mod ranges;
pub mod status;
pub mod store;
