//! Range planning: cutting a collection's id space into more half-open ranges than cursors.
//!
//! A few cheap id-only probes find where ids actually live (the smallest and largest integer id,
//! the smallest and largest UUID); cut points are spread evenly over those spans, integers
//! numerically and UUIDs on their 128-bit value. The ranges still tile the *whole* order —
//! `[0, …)` up to `[…, +∞)`, with a cut at the first UUID — so no point can fall between them,
//! whatever the probes saw. Skew the even cut misses is handled at run time by splitting heavy
//! ranges (see `cursor`).

use serde::{Deserialize, Serialize};

use crate::config::qdrant::ReadTuning;
use crate::point_id::{KeyRange, PointKey};
use crate::source::error::SourceError;

/// A range of one collection waiting for a cursor.
#[derive(Clone, Copy, Debug)]
pub struct Work {
    pub collection: usize,
    pub range: KeyRange,
}

/// Where a collection's ids lie: inclusive bounds per kind, `None` when there are none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdSpan {
    pub ints: Option<(u64, u64)>,
    pub uuids: Option<(u128, u128)>,
}

impl IdSpan {
    /// Finds the span with at most ~64 + 128 id-only probes; `probe(k)` is the first id `>= k`.
    pub fn probe(
        mut probe: impl FnMut(PointKey) -> Result<Option<PointKey>, SourceError>,
    ) -> Result<IdSpan, SourceError> {
        let mut span = IdSpan::default();
        if let Some(PointKey::Num(min)) = probe(PointKey::MIN)? {
            // Largest integer id: binary search for the last x with an integer id >= x.
            let (mut lo, mut hi) = (min, u64::MAX);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match probe(PointKey::Num(mid))? {
                    Some(PointKey::Num(found)) => lo = found,
                    _ => hi = mid - 1,
                }
            }
            span.ints = Some((min, lo));
        }
        if let Some(PointKey::Uuid(min)) = probe(PointKey::FIRST_UUID)? {
            let (mut lo, mut hi) = (min, u128::MAX);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                match probe(PointKey::Uuid(mid))? {
                    Some(PointKey::Uuid(found)) => lo = found,
                    _ => hi = mid - 1,
                }
            }
            span.uuids = Some((min, lo));
        }
        Ok(span)
    }

    /// The end of the ids known in `key`'s kind (one past the largest), for midpoints.
    pub fn end_of_kind(&self, key: PointKey) -> Option<PointKey> {
        match key {
            PointKey::Num(_) => self
                .ints
                .and_then(|(_, max)| PointKey::Num(max).successor()),
            PointKey::Uuid(_) => self
                .uuids
                .and_then(|(_, max)| max.checked_add(1))
                .map(PointKey::Uuid),
        }
    }

    /// `pieces` ranges tiling the whole id order, cut evenly over where the ids lie.
    pub fn plan(&self, pieces: usize) -> Vec<KeyRange> {
        let pieces = pieces.max(1);
        let (int_pieces, uuid_pieces) = match (self.ints.is_some(), self.uuids.is_some()) {
            (true, true) => (pieces.div_ceil(2), pieces / 2),
            (true, false) => (pieces, 0),
            (false, true) => (0, pieces),
            (false, false) => (1, 0),
        };
        let mut cuts: Vec<PointKey> = Vec::new();
        if let Some((min, max)) = self.ints {
            cuts.extend(
                even_cuts(min as u128, max as u128 + 1, int_pieces)
                    .map(|c| PointKey::Num(c as u64)),
            );
        }
        cuts.push(PointKey::FIRST_UUID);
        if let Some((min, max)) = self.uuids {
            let end = max.saturating_add(1);
            cuts.extend(even_cuts(min, end, uuid_pieces.max(1)).map(PointKey::Uuid));
        }
        cuts.sort();
        cuts.dedup();
        let mut ranges = Vec::with_capacity(cuts.len() + 1);
        let mut lo = PointKey::MIN;
        for cut in cuts {
            if cut > lo {
                ranges.push(KeyRange::new(lo, Some(cut)));
                lo = cut;
            }
        }
        ranges.push(KeyRange::new(lo, None));
        ranges
    }
}

impl IdSpan {
    /// Exactly `parts` ranges tiling the whole id order, cut evenly over where the ids lie —
    /// a deterministic division: the same span always gives the same parts. Integers and UUIDs,
    /// when both exist, get half the parts each (integers the odd one); a part may be empty
    /// when there are more parts than ids.
    pub fn partition(&self, parts: u32) -> Vec<KeyRange> {
        let parts = parts.max(1) as u128;
        let (int_parts, uuid_parts) = match (self.ints.is_some(), self.uuids.is_some()) {
            (true, true) => (parts.div_ceil(2), parts / 2),
            (false, true) => (0, parts),
            _ => (parts, 0),
        };
        let mut bounds = Vec::new();
        let (min, max) = self.ints.unwrap_or((0, 0));
        let step = (u128::from(max) - u128::from(min) + 1) / int_parts.max(1);
        bounds.extend((1..int_parts).map(|i| PointKey::Num((u128::from(min) + step * i) as u64)));
        if int_parts > 0 && uuid_parts > 0 {
            bounds.push(PointKey::FIRST_UUID);
        }
        if let Some((min, max)) = self.uuids {
            let step = (max - min).saturating_add(1) / uuid_parts.max(1);
            bounds.extend((1..uuid_parts).map(|i| PointKey::Uuid(min + step * i)));
        }
        let mut ranges = Vec::with_capacity(parts as usize);
        let mut lo = PointKey::MIN;
        for bound in bounds {
            ranges.push(KeyRange::new(lo, Some(bound)));
            lo = bound;
        }
        ranges.push(KeyRange::new(lo, None));
        ranges
    }
}

/// `ranges` cut down to the ids inside `within`.
pub fn clip(ranges: &[KeyRange], within: &KeyRange) -> Vec<KeyRange> {
    ranges.iter().filter_map(|r| r.intersect(within)).collect()
}

/// The `pieces - 1` interior cut points of `[lo, hi)`, evenly spaced.
fn even_cuts(lo: u128, hi: u128, pieces: usize) -> impl Iterator<Item = u128> {
    let step = (hi - lo) / pieces as u128;
    (1..pieces)
        .map(move |i| lo + step * i as u128)
        .filter(move |&c| step > 0 && c > lo)
}

/// The midpoint of `[lo, end)` when both are of one kind and far enough apart to split.
pub fn midpoint(lo: PointKey, end: PointKey) -> Option<PointKey> {
    match (lo, end) {
        (PointKey::Num(a), PointKey::Num(b)) if b > a + 1 => Some(PointKey::Num(a + (b - a) / 2)),
        (PointKey::Uuid(a), PointKey::Uuid(b)) if b > a + 1 => {
            Some(PointKey::Uuid(a + (b - a) / 2))
        }
        (PointKey::Num(a), PointKey::Uuid(_)) if a < u64::MAX - 1 => {
            Some(PointKey::Num(a + (u64::MAX - a) / 2))
        }
        _ => None,
    }
}

/// `ranges` minus everything in `covered` (which need not be sorted or merged).
pub fn subtract(ranges: &[KeyRange], covered: &[KeyRange]) -> Vec<KeyRange> {
    let mut covered: Vec<KeyRange> = covered.iter().copied().filter(|r| !r.is_empty()).collect();
    covered.sort_by_key(|r| r.lo);
    let mut out = Vec::new();
    for range in ranges {
        let mut lo = range.lo;
        let mut open = true;
        for c in &covered {
            if !open || range.hi.is_some_and(|hi| c.lo >= hi) {
                break;
            }
            if c.hi.is_some_and(|chi| chi <= lo) {
                continue;
            }
            if c.lo > lo {
                out.push(KeyRange::new(lo, Some(c.lo)));
            }
            match c.hi {
                Some(chi) => lo = lo.max(chi),
                None => open = false,
            }
        }
        if open && range.hi.is_none_or(|hi| lo < hi) {
            out.push(KeyRange::new(lo, range.hi));
        }
    }
    out
}

/// Ranges planned per cursor: more ranges than cursors lets a fast cursor take more of them, so
/// skew evens out before any split is needed (etl plans 4 partitions per copy worker).
const RANGES_PER_CURSOR: usize = 4;

/// How many ranges to plan for a collection: more than cursors, so skew evens out, but no more
/// than it takes to give each about a file's worth of rows or a few pages.
pub fn range_count(points: u64, max_lines: u64, tuning: &ReadTuning) -> usize {
    let rows_per_range = max_lines.min(u64::from(tuning.page_size) * 4).max(1);
    (points.div_ceil(rows_per_range) as usize).clamp(1, tuning.cursors.max(1) * RANGES_PER_CURSOR)
}

/// Round-robin over collections, keeping each collection's own order.
pub fn interleave(work: Vec<Work>, collections: usize) -> Vec<Work> {
    let mut per: Vec<Vec<Work>> = vec![Vec::new(); collections];
    let mut order = Vec::new();
    for w in work {
        if per[w.collection].is_empty() {
            order.push(w.collection);
        }
        per[w.collection].push(w);
    }
    let mut out = Vec::new();
    let mut queues: Vec<std::vec::IntoIter<Work>> = order
        .iter()
        .map(|&c| std::mem::take(&mut per[c]).into_iter())
        .collect();
    while !queues.is_empty() {
        queues.retain_mut(|q| match q.next() {
            Some(w) => {
                out.push(w);
                true
            }
            None => false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point_id::pseudo_random_uuids;
    use std::collections::BTreeSet;

    fn probe_over(
        ids: &BTreeSet<PointKey>,
    ) -> impl FnMut(PointKey) -> Result<Option<PointKey>, SourceError> + '_ {
        move |k| Ok(ids.range(k..).next().copied())
    }

    /// Every id lands in exactly one planned range.
    fn assert_tiles(ranges: &[KeyRange], ids: &BTreeSet<PointKey>) {
        assert_eq!(ranges.first().map(|r| r.lo), Some(PointKey::MIN));
        assert_eq!(ranges.last().map(|r| r.hi), Some(None));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].hi, Some(pair[1].lo), "gap or overlap in {ranges:?}");
        }
        for id in ids {
            assert_eq!(ranges.iter().filter(|r| r.contains(*id)).count(), 1, "{id}");
        }
    }

    #[test]
    fn probes_find_the_span_of_each_kind() {
        let ids: BTreeSet<_> = [5, 9, 1 << 40, u64::MAX]
            .into_iter()
            .map(PointKey::Num)
            .chain([3u128, 1 << 100].into_iter().map(PointKey::Uuid))
            .collect();
        let span = IdSpan::probe(probe_over(&ids)).unwrap();
        assert_eq!(span.ints, Some((5, u64::MAX)));
        assert_eq!(span.uuids, Some((3, 1 << 100)));
        assert_tiles(&span.plan(16), &ids);
        let empty = IdSpan::probe(probe_over(&BTreeSet::new())).unwrap();
        assert_eq!(empty, IdSpan::default());
        assert_eq!(
            empty.plan(8),
            vec![
                KeyRange::new(PointKey::MIN, Some(PointKey::FIRST_UUID)),
                KeyRange::new(PointKey::FIRST_UUID, None)
            ]
        );
    }

    #[test]
    fn plans_cut_evenly_over_the_ints_seen() {
        let ids: BTreeSet<_> = (1000..2000).map(PointKey::Num).collect();
        let span = IdSpan::probe(probe_over(&ids)).unwrap();
        let ranges = span.plan(4);
        assert_tiles(&ranges, &ids);
        let counts: Vec<usize> = ranges
            .iter()
            .map(|r| ids.iter().filter(|i| r.contains(**i)).count())
            .collect();
        assert_eq!(counts, vec![250, 250, 250, 250, 0]);
    }

    #[test]
    fn uuid_only_and_single_point_plans_tile() {
        let ids: BTreeSet<_> = (0..50u128)
            .map(|i| PointKey::Uuid(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)))
            .collect();
        let span = IdSpan::probe(probe_over(&ids)).unwrap();
        assert_tiles(&span.plan(7), &ids);
        let one: BTreeSet<_> = [PointKey::Num(42)].into();
        assert_tiles(&IdSpan::probe(probe_over(&one)).unwrap().plan(7), &one);
    }

    #[test]
    fn subtract_leaves_exactly_the_uncovered_parts() {
        let r = |lo: u64, hi: Option<u64>| KeyRange::new(PointKey::Num(lo), hi.map(PointKey::Num));
        let all = [r(0, None)];
        assert_eq!(
            subtract(&all, &[r(10, Some(20)), r(0, Some(5))]),
            vec![r(5, Some(10)), r(20, None)]
        );
        assert_eq!(subtract(&all, &[r(0, None)]), vec![]);
        assert_eq!(
            subtract(&[r(0, Some(10)), r(10, Some(30))], &[r(5, Some(15))]),
            vec![r(0, Some(5)), r(15, Some(30))]
        );
        assert_eq!(subtract(&all, &[]), all.to_vec());
    }

    #[test]
    fn partitions_are_exactly_n_ranges_tiling_the_order() {
        let uuids: BTreeSet<PointKey> =
            pseudo_random_uuids(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210, 300)
                .into_iter()
                .collect();
        let ints: BTreeSet<PointKey> = (0..500).map(|i| PointKey::Num(i * 7 + 3)).collect();
        let mixed: BTreeSet<PointKey> = ints.union(&uuids).copied().collect();
        let one: BTreeSet<PointKey> = [PointKey::Num(u64::MAX)].into();
        for ids in [&ints, &uuids, &mixed, &one, &BTreeSet::new()] {
            let span = IdSpan::probe(probe_over(ids)).unwrap();
            for n in [1, 2, 3, 7, 16] {
                let parts = span.partition(n);
                assert_eq!(parts.len(), n as usize);
                assert_tiles(&parts, ids);
                assert_eq!(parts, span.partition(n), "deterministic");
            }
        }
        // Even over the ints seen: 500 ids in 5 parts of 100.
        let dense: BTreeSet<PointKey> = (1000..1500).map(PointKey::Num).collect();
        let span = IdSpan::probe(probe_over(&dense)).unwrap();
        let counts: Vec<usize> = span
            .partition(5)
            .iter()
            .map(|r| dense.iter().filter(|i| r.contains(**i)).count())
            .collect();
        assert_eq!(counts, [100, 100, 100, 100, 100]);
    }

    #[test]
    fn clipping_keeps_only_the_ids_inside() {
        let r = |lo: u64, hi: Option<u64>| KeyRange::new(PointKey::Num(lo), hi.map(PointKey::Num));
        assert_eq!(
            clip(
                &[r(0, Some(10)), r(10, Some(20)), r(20, None)],
                &r(5, Some(15))
            ),
            [r(5, Some(10)), r(10, Some(15))]
        );
        assert_eq!(clip(&[r(0, None)], &r(7, None)), [r(7, None)]);
        assert!(clip(&[r(0, Some(5))], &r(5, None)).is_empty());
    }

    #[test]
    fn spans_round_trip_through_json_with_128_bit_uuids() {
        let span = IdSpan {
            ints: Some((1, u64::MAX)),
            uuids: Some((u128::MAX - 5, u128::MAX)),
        };
        let text = serde_json::to_string(&span).unwrap();
        assert_eq!(serde_json::from_str::<IdSpan>(&text).unwrap(), span);
    }

    #[test]
    fn midpoints_stay_inside() {
        assert_eq!(
            midpoint(PointKey::Num(10), PointKey::Num(20)),
            Some(PointKey::Num(15))
        );
        assert_eq!(midpoint(PointKey::Num(10), PointKey::Num(11)), None);
        assert_eq!(
            midpoint(PointKey::Uuid(0), PointKey::Uuid(u128::MAX)),
            Some(PointKey::Uuid(u128::MAX / 2))
        );
    }
}
