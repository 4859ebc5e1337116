//! Verification's sink: rows folded into buckets by id, so that two sides read in any order and
//! in parallel compare with memory that does not grow with the collection.
//!
//! Each row's canonical form (`verify::compare`) hashes to a 128-bit digest (xxh3); the row
//! lands in the bucket its id hashes to, adding one to the bucket's count and its digest to the
//! bucket's sum (two 64-bit lanes, each modulo 2^64). Addition ignores order, so pages from any
//! cursor and rows from any ctid range fold into the same totals, lock-free. Equal buckets hold
//! equal rows — unless digests collide, about one chance in 2^64 per differing bucket. Unequal
//! buckets say which ids to look at: those whose canonical id falls into them ([`bucket_of`]).

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::point_id::PointKey;
use crate::verify::compare::write_id;

/// Buckets per side: 1.5 MiB of counters each. A single differing row sends the drill-down to
/// about `rows / BUCKETS` rows (1,500 of 100 million), and the fixed size is what keeps memory
/// independent of the collection.
pub const BUCKETS: usize = 1 << 16;

/// The bucket a row with this canonical id falls into.
pub fn bucket_of(id: &[u8]) -> usize {
    (xxh3_64(id) >> (64 - BUCKETS.trailing_zeros())) as usize
}

/// The bucket of a point id: its canonical form's ([`crate::verify::compare::write_id`]).
pub fn bucket_of_key(key: PointKey) -> usize {
    let mut id = Vec::with_capacity(17);
    write_id(&mut id, key);
    bucket_of(&id)
}

/// The digest of a row's canonical form.
pub fn digest(row: &[u8]) -> u128 {
    xxh3_128(row)
}

/// One side's rows, folded.
pub struct Buckets {
    /// Per bucket: rows, and the digest sum's low and high lanes.
    cells: Box<[[AtomicU64; 3]]>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            cells: (0..BUCKETS).map(|_| Default::default()).collect(),
        }
    }
}

/// A bucket whose two sides differ, and the most rows either side has in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Differing {
    pub bucket: usize,
    pub rows: u64,
}

impl Buckets {
    /// Folds in one row: its canonical id and its whole canonical form.
    pub fn add(&self, id: &[u8], row: &[u8]) {
        self.add_digest(bucket_of(id), digest(row));
    }

    /// Folds in one row whose bucket and digest the caller has already computed (and keeps).
    pub fn add_digest(&self, bucket: usize, digest: u128) {
        let cell = &self.cells[bucket];
        cell[0].fetch_add(1, Ordering::Relaxed);
        cell[1].fetch_add(digest as u64, Ordering::Relaxed);
        cell[2].fetch_add((digest >> 64) as u64, Ordering::Relaxed);
    }

    /// Takes one row out again (its bucket and digest as [`add_digest`](Self::add_digest) took
    /// them): what a row that was replaced or deleted no longer adds.
    pub fn remove_digest(&self, bucket: usize, digest: u128) {
        let cell = &self.cells[bucket];
        cell[0].fetch_sub(1, Ordering::Relaxed);
        cell[1].fetch_sub(digest as u64, Ordering::Relaxed);
        cell[2].fetch_sub((digest >> 64) as u64, Ordering::Relaxed);
    }

    /// The rows in `bucket`.
    pub fn rows(&self, bucket: usize) -> u64 {
        self.cells[bucket][0].load(Ordering::Relaxed)
    }

    /// Every cell, little-endian: what a pass keeps of a table's side for the next one.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BUCKETS * 24);
        for cell in self.cells.iter() {
            for lane in cell {
                out.extend_from_slice(&lane.load(Ordering::Relaxed).to_le_bytes());
            }
        }
        out
    }

    /// The buckets [`to_bytes`](Self::to_bytes) wrote; `None` for bytes of another length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Buckets> {
        if bytes.len() != BUCKETS * 24 {
            return None;
        }
        let lanes = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        let buckets = Buckets::default();
        for (i, lane) in lanes.enumerate() {
            buckets.cells[i / 3][i % 3].store(lane, Ordering::Relaxed);
        }
        Some(buckets)
    }

    /// The buckets where `self` and `other` differ.
    pub fn differing(&self, other: &Buckets) -> Vec<Differing> {
        let load = |cell: &[AtomicU64; 3]| cell.each_ref().map(|a| a.load(Ordering::Relaxed));
        self.cells
            .iter()
            .zip(other.cells.iter())
            .enumerate()
            .filter_map(|(bucket, (a, b))| {
                let (a, b) = (load(a), load(b));
                (a != b).then(|| Differing {
                    bucket,
                    rows: a[0].max(b[0]),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_and_any_change_shows_in_its_bucket() {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = (0u64..5000)
            .map(|i| {
                (
                    i.to_le_bytes().to_vec(),
                    [i.to_le_bytes(), (i * 7).to_le_bytes()].concat(),
                )
            })
            .collect();
        let (forward, backward) = (Buckets::default(), Buckets::default());
        for (id, row) in &rows {
            forward.add(id, row);
        }
        for (id, row) in rows.iter().rev() {
            backward.add(id, row);
        }
        assert!(forward.differing(&backward).is_empty());

        // One row changed, one missing, one twice: three buckets, each naming its rows.
        let changed = Buckets::default();
        for (i, (id, row)) in rows.iter().enumerate() {
            match i {
                10 => changed.add(id, b"other"),
                20 => {}
                30 => {
                    changed.add(id, row);
                    changed.add(id, row);
                }
                _ => changed.add(id, row),
            }
        }
        let differing = forward.differing(&changed);
        let expected: Vec<usize> = [10, 20, 30]
            .iter()
            .map(|&i| bucket_of(&rows[i].0))
            .collect();
        assert_eq!(differing.len(), 3, "{differing:?}");
        assert!(
            differing
                .iter()
                .all(|d| expected.contains(&d.bucket) && d.rows >= 1)
        );

        // Taking the odd rows out again and putting the right ones in mends the buckets, and
        // they survive a round trip through bytes.
        let mended = Buckets::from_bytes(&changed.to_bytes()).unwrap();
        let cell = |id: &[u8], row: &[u8]| (bucket_of(id), digest(row));
        let (b, d) = cell(&rows[10].0, b"other");
        mended.remove_digest(b, d);
        let (b, d) = cell(&rows[10].0, &rows[10].1);
        mended.add_digest(b, d);
        let (b, d) = cell(&rows[20].0, &rows[20].1);
        mended.add_digest(b, d);
        let (b, d) = cell(&rows[30].0, &rows[30].1);
        mended.remove_digest(b, d);
        assert!(mended.differing(&forward).is_empty());
        assert_eq!(mended.rows(b), forward.rows(b));
        assert!(Buckets::from_bytes(&[0; 24]).is_none());
    }
}
