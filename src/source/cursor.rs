//! Cursors: threads that each own one half-open id range at a time and scroll it page by page.
//!
//! The [`Scheduler`] hands out ranges from one of two supplies:
//! - **planned** (export, verify): one queue shared by every collection. When it runs dry, an
//!   idle cursor splits the active range with the most estimated work left: the victim's
//!   unread remainder `[pos, hi)` is cut at its midpoint, the victim's `hi` shrinks to the
//!   midpoint and the thief takes `[mid, hi)`. The victim applies its current `hi` to every
//!   page under the same lock that advances `pos`, so a point is never read by both, even when
//!   the cut lands inside a page already in flight. Splits happen only above `pos`: nothing
//!   already read is ever handed out again.
//! - **shared** (migrate): units of a shared run, claimed or split in the target database by
//!   every process of the run ([`SharedUnits`], implemented by `run::ranges`). Each range
//!   then carries its unit's [`Lease`], and its pages commit in order ([`ActiveRange::wait_turn`]):
//!   the database only knows how far a unit got, so page `n + 1` may start its transaction only
//!   once page `n` has committed. Pages of different units load in parallel, so a process keeps
//!   its connections busy with at least as many cursors as connections. A split made by another process reaches the owner through its next commit, which
//!   [`ActiveRange::shrink`]s the range so the cursor reads no further than the new end.
//!
//! Each page leaves as a [`PageBatch`] that says which ids it accounts for (`covered`), so the
//! sink can record exactly which id ranges its files (or ledger rows) hold.
//!
//! A failure belongs to one collection ([`Scheduler::fail`]): that collection's queued ranges
//! are dropped and its active ones abandoned, so its cursors stop at their next page, while
//! every other collection is read to its end. In a shared run the failed unit is marked so in
//! the run (by the sink, or here through [`SharedUnits::fail`] for a read), and no process
//! claims that table's units any more. The commands then finish what is whole and name what
//! failed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::Sender;
use qdrant_client::qdrant::RetrievedPoint;

use crate::payload::{ExactPayloads, PointRef};
use crate::point_id::{KeyRange, PointKey};
use crate::source::error::SourceError;
use crate::source::page::{Fetch, PageReader, ScrollPage};
use crate::source::plan::{IdSpan, Work, midpoint};

/// How long an idle cursor of a shared run waits before asking for a unit again when every
/// open unit is held by a worker and too small to split. One cursor per process waits on the
/// unit likeliest to finish first (and wakes the moment its holder lets go of it: finished, or
/// dead), the others on that one: so the end of a run is seen at once, any unit a dead worker
/// held is taken over within about this, and a waiting process costs two small queries a poll.
const CLAIM_POLL: Duration = Duration::from_millis(500);

/// A unit held by this process: its number, and the claim count that proves it is still ours
/// (another worker's claim changes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub unit: i32,
    pub token: i32,
}

/// Units of a shared run, as cursor work: what an idle cursor gets instead of the next planned
/// range.
pub trait SharedUnits: Sync {
    /// Claims a unit to read, or cuts one off a claimed unit.
    fn next(&self) -> Result<Claim, ClaimError>;

    /// Blocks until whoever holds `unit` lets go of it (it finished, lost or died), or
    /// `at_most` has passed.
    fn wait(&self, unit: i32, at_most: Duration) -> Result<(), ClaimError>;

    /// Marks the unit `lease` holds failed in the run (it could not be read), with `note`.
    fn fail(&self, lease: Lease, note: &str) -> Result<(), ClaimError>;
}

/// A claim failed (a database error, from the layer that owns the run).
pub type ClaimError = Box<dyn std::error::Error + Send + Sync>;

/// What an idle cursor gets from a shared run.
#[derive(Debug)]
pub enum Claim {
    /// A unit to read: `work.range` is its unread part. `split_from` is the unit it was just
    /// cut from, when this process cut it (its range here shrinks at once).
    Unit {
        work: Work,
        lease: Lease,
        split_from: Option<i32>,
    },
    /// Every open unit is held and too small to split: ask again later, or once the unit
    /// named (the likeliest to finish first) is let go.
    Wait(Option<i32>),
    /// Nothing is left to claim: this cursor is done.
    Done,
}

/// One page on its way to the encoders.
#[derive(Debug)]
pub struct PageBatch {
    pub collection: usize,
    /// Unique per range handed out; pages of one range carry consecutive `seq` from 0.
    pub range_id: u64,
    pub seq: u64,
    /// Points in id order, all inside `covered`.
    pub points: Vec<RetrievedPoint>,
    /// The payloads of `points` that gRPC could not carry exactly, read again.
    pub exact: ExactPayloads,
    /// The ids this batch accounts for: every point of the collection in it is in `points`.
    pub covered: KeyRange,
    /// The last batch of its range.
    pub last: bool,
    /// The range it was read from (its lease and commit order, for a shared run).
    pub range: Arc<ActiveRange>,
}

impl PageBatch {
    /// The points, each with the payload to write or compare for it.
    pub fn point_refs(&self) -> impl Iterator<Item = PointRef<'_>> {
        self.exact.points(&self.points)
    }
}

/// A cursor stopped.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("reading collection {collection:?}, ids {range}")]
    Read {
        collection: String,
        range: KeyRange,
        #[source]
        source: SourceError,
    },
    #[error("claiming work from the shared run")]
    Claim(#[source] ClaimError),
}

/// Where one active range stands.
#[derive(Debug)]
struct Progress {
    /// The next id to read.
    pos: PointKey,
    hi: Option<PointKey>,
    rows: u64,
    done: bool,
}

/// Which page of a range may commit next (shared runs commit a unit's pages in order).
#[derive(Debug, Default)]
struct Turn {
    next: u64,
    /// The unit went to another worker, or a page of it failed: nothing more commits.
    abandoned: bool,
}

/// A range a cursor is reading.
#[derive(Debug)]
pub struct ActiveRange {
    id: u64,
    collection: usize,
    lo: PointKey,
    lease: Option<Lease>,
    progress: Mutex<Progress>,
    turn: Mutex<Turn>,
    turned: Condvar,
}

impl ActiveRange {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn turn(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared run's unit this range is, if any.
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }

    /// Blocks until every page before `seq` has committed or been dropped; `false` when the
    /// range was abandoned meanwhile, so page `seq` must not commit. Call it outside any
    /// transaction: a transaction waiting here would hold locks the page before may need.
    pub fn wait_turn(&self, seq: u64) -> bool {
        let mut turn = self.turn();
        while !turn.abandoned && turn.next < seq {
            turn = self.turned.wait(turn).unwrap_or_else(|e| e.into_inner());
        }
        !turn.abandoned
    }

    /// Page `seq` is committed (or needs no commit): the next one may go.
    pub fn pass(&self, seq: u64) {
        let mut turn = self.turn();
        turn.next = turn.next.max(seq + 1);
        drop(turn);
        self.turned.notify_all();
    }

    /// Reads and commits nothing more of this range: its unit went to another worker, or one
    /// of its pages failed (a later page must not commit over the gap).
    pub fn abandon(&self) {
        self.turn().abandoned = true;
        self.turned.notify_all();
        self.progress().done = true;
    }

    pub fn abandoned(&self) -> bool {
        self.turn().abandoned
    }

    /// The range now ends at `hi` (its unit was split): the cursor reads no further.
    pub fn shrink(&self, hi: PointKey) {
        let mut p = self.progress();
        if p.hi.is_none_or(|h| hi < h) {
            p.hi = Some(hi);
        }
    }
}

struct State {
    pending: VecDeque<Work>,
    active: Vec<Arc<ActiveRange>>,
    next_id: u64,
    stopped: bool,
    /// A cursor of this process is waiting on a unit of the shared run; the others wait on it.
    waiting: bool,
    /// By collection: the first error, and how many more followed it.
    failed: BTreeMap<usize, (anyhow::Error, usize)>,
}

/// A collection that could not be read (or whose pages could not be handled) to its end.
#[derive(Debug)]
pub struct CollectionFailure {
    pub collection: usize,
    /// The first error, with a note of how many followed.
    pub error: anyhow::Error,
}

/// Hands out ranges: planned ones (splitting heavy ones once the queue is empty), or units
/// claimed from a shared run.
pub struct Scheduler<'a> {
    state: Mutex<State>,
    changed: Condvar,
    /// Units of a shared run, instead of `pending` and in-memory splits.
    shared: Option<&'a dyn SharedUnits>,
    /// Per collection, where ids lie (midpoints are taken inside it).
    spans: Vec<IdSpan>,
    /// A range is split only if it has at least this many rows left by estimate: below it the
    /// split costs more (a probe, a new file) than it saves.
    min_split_rows: u64,
}

impl State {
    fn new(pending: VecDeque<Work>) -> Mutex<State> {
        Mutex::new(State {
            pending,
            active: Vec::new(),
            next_id: 0,
            stopped: false,
            waiting: false,
            failed: BTreeMap::new(),
        })
    }
}

impl Scheduler<'static> {
    /// `work` in the order it should be handed out.
    pub fn new(work: Vec<Work>, spans: Vec<IdSpan>, min_split_rows: u64) -> Self {
        Scheduler {
            state: State::new(work.into()),
            changed: Condvar::new(),
            shared: None,
            spans,
            min_split_rows,
        }
    }
}

impl<'a> Scheduler<'a> {
    /// Ranges are the units of a shared run, claimed (and split) through `units`.
    pub fn shared(units: &'a dyn SharedUnits) -> Self {
        Scheduler {
            state: State::new(VecDeque::new()),
            changed: Condvar::new(),
            shared: Some(units),
            spans: Vec::new(),
            min_split_rows: 0,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops handing out work (after a failure that concerns every collection).
    pub fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
    }

    fn start(&self, state: &mut State, work: Work, lease: Option<Lease>) -> Arc<ActiveRange> {
        let range = Arc::new(ActiveRange {
            id: state.next_id,
            collection: work.collection,
            lo: work.range.lo,
            lease,
            progress: Mutex::new(Progress {
                pos: work.range.lo,
                hi: work.range.hi,
                rows: 0,
                done: false,
            }),
            turn: Mutex::new(Turn::default()),
            turned: Condvar::new(),
        });
        state.next_id += 1;
        state.active.push(Arc::clone(&range));
        range
    }

    /// Gives up on one collection: records `error` (the first one; later ones are counted),
    /// drops its queued ranges and abandons its active ones, so its cursors stop at their
    /// next page and no later page of theirs commits. Other collections go on.
    pub fn fail(&self, collection: usize, error: anyhow::Error) {
        let mut state = self.state();
        if let Some((_, more)) = state.failed.get_mut(&collection) {
            *more += 1;
            return;
        }
        state.failed.insert(collection, (error, 0));
        state.pending.retain(|w| w.collection != collection);
        for range in state.active.iter().filter(|r| r.collection == collection) {
            range.abandon();
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Whether `collection` is given up on ([`fail`](Self::fail)), or the whole run is
    /// ([`stop`](Self::stop)).
    pub fn gave_up(&self, collection: usize) -> bool {
        let state = self.state();
        state.stopped || state.failed.contains_key(&collection)
    }

    /// The collections given up on, in index order.
    pub fn failures(&self) -> Vec<CollectionFailure> {
        std::mem::take(&mut self.state().failed)
            .into_iter()
            .map(|(collection, (error, more))| CollectionFailure {
                collection,
                error: match more {
                    0 => error,
                    more => error.context(format!("{more} more error(s) after this one")),
                },
            })
            .collect()
    }

    /// The next range to read: `(range, its full extent, whether it was split off another)`.
    /// `None` once everything is read or the scheduler is stopped.
    fn next(&self) -> Result<Option<(Arc<ActiveRange>, KeyRange, bool)>, ClaimError> {
        if let Some(units) = self.shared {
            return self.claim(units);
        }
        let mut state = self.state();
        loop {
            if state.stopped {
                return Ok(None);
            }
            let (work, stolen) = match state.pending.pop_front() {
                Some(work) => (Some(work), false),
                None => (self.split_heaviest(&state.active), true),
            };
            if let Some(work) = work {
                let range = self.start(&mut state, work, None);
                return Ok(Some((range, work.range, stolen)));
            }
            if state.active.is_empty() {
                return Ok(None);
            }
            // Nothing to split yet: wait for a range to finish or to read further.
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next unit of a shared run, waiting while every open unit is held by a worker.
    fn claim(
        &self,
        units: &dyn SharedUnits,
    ) -> Result<Option<(Arc<ActiveRange>, KeyRange, bool)>, ClaimError> {
        loop {
            if self.state().stopped {
                return Ok(None);
            }
            match units.next()? {
                Claim::Unit {
                    work,
                    lease,
                    split_from,
                } => {
                    let mut state = self.state();
                    if let Some(victim) = split_from {
                        for range in &state.active {
                            if range.lease.is_some_and(|l| l.unit == victim) {
                                range.shrink(work.range.lo);
                            }
                        }
                    }
                    let range = self.start(&mut state, work, Some(lease));
                    return Ok(Some((range, work.range, split_from.is_some())));
                }
                Claim::Done => return Ok(None),
                Claim::Wait(unit) => {
                    let mut state = self.state();
                    if state.stopped {
                        return Ok(None);
                    }
                    match unit.filter(|_| !state.waiting) {
                        Some(unit) => {
                            state.waiting = true;
                            drop(state);
                            let waited = units.wait(unit, CLAIM_POLL);
                            self.state().waiting = false;
                            self.changed.notify_all();
                            waited?;
                        }
                        None => drop(
                            self.changed
                                .wait_timeout(state, CLAIM_POLL)
                                .unwrap_or_else(|e| e.into_inner()),
                        ),
                    }
                }
            }
        }
    }

    /// Cuts the active range with the most estimated rows left; returns the upper half.
    fn split_heaviest(&self, active: &[Arc<ActiveRange>]) -> Option<Work> {
        let mut best: Option<(f64, &Arc<ActiveRange>, PointKey)> = None;
        for range in active {
            let p = range.progress();
            if p.done {
                continue;
            }
            let span = &self.spans[range.collection];
            let Some((estimate, mid)) =
                split_point(range.lo, p.pos, p.hi, p.rows, span, self.min_split_rows)
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(e, _, _)| estimate > *e) {
                best = Some((estimate, range, mid));
            }
        }
        let (_, victim, mid) = best?;
        let mut p = victim.progress();
        // Re-check under the victim's lock: it may have read past `mid` meanwhile.
        if p.done || mid <= p.pos || p.hi.is_some_and(|hi| mid >= hi) {
            return None;
        }
        let upper = KeyRange::new(mid, p.hi);
        p.hi = Some(mid);
        Some(Work {
            collection: victim.collection,
            range: upper,
        })
    }

    fn finish(&self, range: &Arc<ActiveRange>) {
        let mut state = self.state();
        state.active.retain(|r| r.id != range.id);
        drop(state);
        self.changed.notify_all();
    }

    /// Runs one cursor until there is no work left: scroll, cut pages at the range's current
    /// end, send them on. Blocks on `out` when the encoders are behind (that is the bound). A
    /// range that fails fails its collection ([`fail`](Self::fail)) and the cursor goes on with
    /// the next range, unless the failure concerns every collection (Qdrant unreachable, the
    /// key refused): then the run stops and the error is returned.
    pub fn run_cursor(
        &self,
        reader: &dyn PageReader,
        collections: &[String],
        page_size: u32,
        out: &Sender<PageBatch>,
    ) -> Result<(), Box<CursorError>> {
        loop {
            let (range, extent, stolen) = match self.next() {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.stop();
                    return Err(Box::new(CursorError::Claim(e)));
                }
            };
            let collection = &collections[range.collection];
            let result =
                self.read_range(reader, collection, &range, extent, stolen, page_size, out);
            self.finish(&range);
            let source = match result {
                Ok(true) => continue,
                Ok(false) => return Ok(()),
                Err(source) => source,
            };
            let global = source.concerns_every_collection();
            let error = CursorError::Read {
                collection: collection.clone(),
                range: extent,
                source,
            };
            if global {
                self.stop();
                return Err(Box::new(error));
            }
            let error = anyhow::Error::from(error);
            if let (Some(units), Some(lease)) = (self.shared, range.lease)
                && let Err(e) = units.fail(lease, &format!("{error:#}"))
            {
                self.stop();
                return Err(Box::new(CursorError::Claim(e)));
            }
            self.fail(range.collection, error);
        }
    }

    /// Reads one range to its end; `Ok(false)` when the consumer has gone away.
    #[allow(clippy::too_many_arguments)]
    fn read_range(
        &self,
        reader: &dyn PageReader,
        collection: &str,
        range: &Arc<ActiveRange>,
        extent: KeyRange,
        stolen: bool,
        page_size: u32,
        out: &Sender<PageBatch>,
    ) -> Result<bool, SourceError> {
        let mut offset = extent.lo;
        let batch = |seq, points, exact, covered, last| PageBatch {
            collection: range.collection,
            range_id: range.id,
            seq,
            points,
            exact,
            covered,
            last,
            range: Arc::clone(range),
        };
        if stolen {
            // A split-off range may well be empty (ids cluster); an id-only probe says so
            // without fetching a page of vectors, and skips any empty prefix.
            match reader.first_at_or_after(collection, offset)? {
                Some(first) if extent.hi.is_none_or(|hi| first < hi) => offset = first,
                _ => {
                    // Another idle cursor may have split this range meanwhile: it now ends
                    // at the current `hi`, which is what this empty batch accounts for.
                    let hi = {
                        let mut p = range.progress();
                        p.done = true;
                        p.hi
                    };
                    let covered = KeyRange::new(extent.lo, hi);
                    let empty = batch(0, Vec::new(), ExactPayloads::default(), covered, true);
                    return Ok(out.send(empty).is_ok());
                }
            }
        }
        let mut covered_lo = extent.lo;
        for seq in 0.. {
            if range.abandoned() || self.gave_up(range.collection) {
                break;
            }
            let limit = page_limit(offset, range.progress().hi, page_size);
            let page = reader.scroll(collection, offset, limit, Fetch::Everything)?;
            let (points, exact, end, last) = accept_page(range, collection, offset, page)?;
            // A range shrunk below where it was read to accounts for nothing more.
            let end = end.map(|e| e.max(covered_lo));
            let page = batch(seq, points, exact, KeyRange::new(covered_lo, end), last);
            if out.send(page).is_err() {
                return Ok(false);
            }
            self.changed.notify_all();
            match (last, end) {
                (false, Some(next)) => {
                    covered_lo = next;
                    offset = next;
                }
                _ => break,
            }
        }
        Ok(true)
    }
}

/// Points to ask for from `offset`: `page_size`, but never more than the integer ids in
/// `[offset, hi)` (distinct integers, so no more points than that can be there). Without the
/// bound every range's last page read up to a page of the next range's points — vectors sent
/// by Qdrant, decoded by us, then dropped: a 1024-point page past each 8192-point unit of
/// migrate, 6 % more scrolling (docs/benchmarks.md), and more with every split that more
/// cursors make. UUID ranges have no such bound; a range they end keeps its last page whole.
fn page_limit(offset: PointKey, hi: Option<PointKey>, page_size: u32) -> u32 {
    match (offset, hi) {
        (PointKey::Num(lo), Some(PointKey::Num(hi))) if hi > lo => {
            u32::try_from(hi - lo).map_or(page_size, |ids| ids.min(page_size))
        }
        _ => page_size,
    }
}

/// The points of a page kept for its range, their exact payloads, where the page's coverage
/// ends, and whether the range is finished.
type Accepted = (Vec<RetrievedPoint>, ExactPayloads, Option<PointKey>, bool);

/// Applies the range's current end to a page and advances the range, atomically.
fn accept_page(
    range: &ActiveRange,
    collection: &str,
    offset: PointKey,
    page: ScrollPage,
) -> Result<Accepted, SourceError> {
    let bad_id = |source| SourceError::BadId {
        collection: collection.to_owned(),
        source,
    };
    let mut p = range.progress();
    let mut points = page.points;
    let mut exact = page.exact;
    if let Some(hi) = p.hi {
        let mut keep = points.len();
        for (i, point) in points.iter().enumerate() {
            if PointKey::from_proto(point.id.as_ref()).map_err(bad_id)? >= hi {
                keep = i;
                break;
            }
        }
        points.truncate(keep);
        exact.truncate(keep);
    }
    if let Some(next) = page.next
        && next <= offset
    {
        return Err(SourceError::Protocol {
            collection: collection.to_owned(),
            detail: format!("scroll from {offset} returned next_page_offset {next}, not past it"),
        });
    }
    let last = match (page.next, p.hi) {
        (None, _) => true,
        (Some(next), Some(hi)) => next >= hi,
        (Some(_), None) => false,
    };
    let end = if last { p.hi } else { page.next };
    p.rows += points.len() as u64;
    if last {
        p.done = true;
    } else if let Some(next) = page.next {
        p.pos = next;
    }
    Ok((points, exact, end, last))
}

/// Where to cut a range `[lo, hi)` of which `[lo, pos)` is read, holding `rows` points: the
/// rows estimated left and the midpoint of the unread part. `None` when that part cannot be
/// cut, or holds fewer than `min_rows` by estimate (below that a split costs more than it
/// saves).
pub fn split_point(
    lo: PointKey,
    pos: PointKey,
    hi: Option<PointKey>,
    rows: u64,
    span: &IdSpan,
    min_rows: u64,
) -> Option<(f64, PointKey)> {
    let (mid, end) = cut_point(pos, hi, span)?;
    let estimate = estimate_rows_left(lo, pos, end, rows);
    (estimate >= min_rows as f64).then_some((estimate, mid))
}

/// The midpoint of the unread part `[pos, hi)` of a range and the end it was taken against
/// (a +∞ end is taken as the end of the ids known in `pos`'s kind); `None` when it cannot be cut.
pub fn cut_point(
    pos: PointKey,
    hi: Option<PointKey>,
    span: &IdSpan,
) -> Option<(PointKey, PointKey)> {
    let known_end = span.end_of_kind(pos);
    let end = match (hi, known_end) {
        (Some(hi), Some(known)) => hi.min(known),
        (hi, known) => hi.or(known)?,
    };
    let mid = midpoint(pos, end)?;
    if hi.is_some_and(|hi| mid >= hi) || mid <= pos {
        return None;
    }
    Some((mid, end))
}

/// Rows left in `[pos, end)` at the density read so far over `[lo, pos)`; unknown (nothing
/// read yet) counts as plenty.
pub fn estimate_rows_left(lo: PointKey, pos: PointKey, end: PointKey, rows: u64) -> f64 {
    let read = id_width(lo, pos);
    if rows == 0 || read <= 0.0 {
        return f64::INFINITY;
    }
    rows as f64 * id_width(pos, end) / read
}

/// Rows in `[pos, end)` if the collection's `points` were spread evenly over the ids of that
/// kind in `span`: the estimate for a range nothing has been read of yet, which shrinks with
/// the range instead of counting as plenty.
pub fn prior_rows(pos: PointKey, end: PointKey, span: &IdSpan, points: u64) -> f64 {
    let kind = match pos {
        PointKey::Num(_) => span
            .ints
            .map(|(a, b)| id_width(PointKey::Num(a), PointKey::Num(b))),
        PointKey::Uuid(_) => span
            .uuids
            .map(|(a, b)| id_width(PointKey::Uuid(a), PointKey::Uuid(b))),
    };
    match kind {
        Some(width) => points as f64 * id_width(pos, end) / (width + 1.0),
        None => 0.0,
    }
}

/// How many ids `[a, b)` spans, as a float (exact enough to compare densities).
fn id_width(a: PointKey, b: PointKey) -> f64 {
    match (a, b) {
        (PointKey::Num(a), PointKey::Num(b)) => b.saturating_sub(a) as f64,
        (PointKey::Uuid(a), PointKey::Uuid(b)) => b.saturating_sub(a) as f64,
        (PointKey::Num(a), PointKey::Uuid(_)) => (u64::MAX - a) as f64,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use qdrant_client::qdrant::RetrievedPoint;

    use super::*;
    use crate::point_id::pseudo_random_uuids;

    /// Qdrant's scroll semantics over a set of ids: `offset` inclusive, `next` = first id of
    /// the next page. Counts the points it returned.
    struct SetReader(BTreeSet<PointKey>, std::sync::atomic::AtomicUsize);

    impl PageReader for SetReader {
        fn scroll(
            &self,
            _: &str,
            offset: PointKey,
            limit: u32,
            _: Fetch,
        ) -> Result<ScrollPage, SourceError> {
            let mut ids = self.0.range(offset..);
            let points = ids
                .by_ref()
                .take(limit as usize)
                .map(|k| RetrievedPoint {
                    id: Some(k.to_proto()),
                    ..Default::default()
                })
                .collect::<Vec<_>>();
            self.1
                .fetch_add(points.len(), std::sync::atomic::Ordering::Relaxed);
            Ok(ScrollPage {
                points,
                next: ids.next().copied(),
                ..Default::default()
            })
        }

        fn first_at_or_after(
            &self,
            _: &str,
            key: PointKey,
        ) -> Result<Option<PointKey>, SourceError> {
            Ok(self.0.range(key..).next().copied())
        }
    }

    /// Runs `cursors` threads over `ids` and returns every id read, the batches' coverage and
    /// how many points the reader returned.
    fn read_all(
        ids: BTreeSet<PointKey>,
        cursors: usize,
        pieces: usize,
    ) -> (Vec<PointKey>, Vec<KeyRange>, usize) {
        let reader = SetReader(ids, Default::default());
        let span = IdSpan::probe(|k| reader.first_at_or_after("c", k)).unwrap();
        let work = span
            .plan(pieces)
            .into_iter()
            .map(|range| Work {
                collection: 0,
                range,
            })
            .collect();
        let scheduler = Scheduler::new(work, vec![span], 4);
        let (tx, rx) = crossbeam_channel::bounded(4);
        let names = vec!["c".to_owned()];
        let (read, covered) = std::thread::scope(|s| {
            for _ in 0..cursors {
                let tx = tx.clone();
                let (scheduler, reader, names) = (&scheduler, &reader, &names);
                s.spawn(move || scheduler.run_cursor(reader, names, 3, &tx).unwrap());
            }
            drop(tx);
            let mut read = Vec::new();
            let mut covered = Vec::new();
            for batch in rx {
                for p in &batch.points {
                    let key = PointKey::from_proto(p.id.as_ref()).unwrap();
                    assert!(
                        batch.covered.contains(key),
                        "{key} outside {}",
                        batch.covered
                    );
                    read.push(key);
                }
                covered.push(batch.covered);
            }
            (read, covered)
        });
        (read, covered, reader.1.into_inner())
    }

    fn assert_exactly_once(ids: BTreeSet<PointKey>, cursors: usize, pieces: usize) {
        let (mut read, mut covered, _) = read_all(ids.clone(), cursors, pieces);
        read.sort();
        let expected: Vec<PointKey> = ids.into_iter().collect();
        assert_eq!(read, expected, "every id exactly once");
        // Coverage tiles the whole order: no gaps, no overlaps.
        covered.retain(|r| !r.is_empty());
        covered.sort_by_key(|r| r.lo);
        assert_eq!(covered.first().map(|r| r.lo), Some(PointKey::MIN));
        for pair in covered.windows(2) {
            assert_eq!(pair[0].hi, Some(pair[1].lo), "coverage {covered:?}");
        }
        assert_eq!(covered.last().map(|r| r.hi), Some(None));
    }

    #[test]
    fn a_prior_estimate_shrinks_with_the_range_and_is_zero_where_no_ids_are() {
        let span = IdSpan {
            ints: Some((0, 999)),
            uuids: None,
        };
        let n = PointKey::Num;
        assert_eq!(prior_rows(n(0), n(500), &span, 1000), 500.0);
        assert_eq!(prior_rows(n(0), n(10), &span, 1000), 10.0);
        assert_eq!(
            prior_rows(PointKey::Uuid(0), PointKey::Uuid(1 << 100), &span, 1000),
            0.0
        );
        // Read ranges use what was read; nothing read counts as plenty.
        assert_eq!(estimate_rows_left(n(0), n(100), n(300), 50), 100.0);
        assert!(estimate_rows_left(n(0), n(0), n(300), 0).is_infinite());
        assert_eq!(cut_point(n(0), Some(n(100)), &span), Some((n(50), n(100))));
        assert_eq!(cut_point(n(998), None, &span), Some((n(999), n(1000))));
        assert_eq!(cut_point(n(999), None, &span), None);
    }

    #[test]
    fn integer_ranges_read_no_point_past_their_end() {
        let n = PointKey::Num;
        assert_eq!(page_limit(n(10), Some(n(12)), 3), 2);
        assert_eq!(page_limit(n(10), Some(n(100)), 3), 3);
        assert_eq!(page_limit(n(10), None, 3), 3);
        assert_eq!(page_limit(n(10), Some(PointKey::Uuid(0)), 3), 3);
        assert_eq!(page_limit(n(0), Some(n(u64::MAX)), 3), 3);
        // Dense ids, many ranges, pages of 3 that would overrun most range ends: every point
        // the reader returns is one kept.
        let (read, _, returned) = read_all((0..500).map(PointKey::Num).collect(), 4, 16);
        assert_eq!(read.len(), 500);
        assert_eq!(returned, 500);
    }

    #[test]
    fn sequential_ids_with_few_ranges_get_split() {
        assert_exactly_once((0..500).map(PointKey::Num).collect(), 4, 1);
    }

    #[test]
    fn dense_blocks_far_apart() {
        let ids = (0..200)
            .chain(1 << 50..(1 << 50) + 300)
            .chain(u64::MAX - 50..=u64::MAX);
        assert_exactly_once(ids.map(PointKey::Num).collect(), 4, 8);
    }

    #[test]
    fn random_uuids_and_mixed_ids() {
        let uuids = pseudo_random_uuids(0x1234_5678_9abc_def0_0fed_cba9_8765_4321, 400);
        assert_exactly_once(uuids.iter().copied().collect(), 3, 6);
        let mixed = uuids
            .into_iter()
            .chain((10..300).step_by(7).map(PointKey::Num));
        assert_exactly_once(mixed.collect(), 4, 5);
    }

    #[test]
    fn empty_and_single_point_collections() {
        assert_exactly_once(BTreeSet::new(), 2, 4);
        assert_exactly_once([PointKey::Num(u64::MAX)].into(), 3, 4);
    }
}
