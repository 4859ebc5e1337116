//! Each side's `(bucket, id, digest)`, written to the scratch disk while a pass reads, so that
//! the ids of the buckets that turn out to differ can be listed afterwards without reading
//! either side again and without holding a map of the whole collection in memory.
//!
//! Records go into one file per side and partition — a partition is 256 consecutive buckets —
//! through buffered writers, each behind its own lock (the encoder threads that fold rows spread
//! over 256 of them, so they rarely meet). After the read, a partition that holds a differing
//! bucket is read back whole, keeping only the records of differing buckets: memory holds one
//! partition's worth at a time, about 1/256 of the collection's ids when everything differs, and
//! the scratch disk 35 bytes per point and side. The files go with the [`Spill`].

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::point_id::PointKey;
use crate::verify::digest::BUCKETS;

/// Buckets per partition file: 256 partitions per side keep the open files few (512) and a
/// partition at 1/256 of the collection.
const BUCKETS_PER_PARTITION: usize = 256;
const PARTITIONS: usize = BUCKETS / BUCKETS_PER_PARTITION;
/// bucket (2) + id kind (1) + id (16) + digest (16).
const RECORD: usize = 35;

/// Which side a record was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Qdrant,
    Table,
}

/// A pass's records, both sides, on the scratch disk.
pub struct Spill {
    dir: tempfile::TempDir,
    files: [Vec<Mutex<BufWriter<File>>>; 2],
    /// The first write that failed; later writes are dropped and [`finish`](Spill::finish)
    /// returns it (the fold that writes here cannot fail).
    failed: Mutex<Option<io::Error>>,
}

impl Spill {
    /// Opens the files in a new directory under `scratch`.
    pub fn create(scratch: &Path) -> io::Result<Spill> {
        std::fs::create_dir_all(scratch)?;
        let dir = tempfile::Builder::new()
            .prefix(".qdrant2pg-sync-")
            .tempdir_in(scratch)?;
        let open = |side: &str| -> io::Result<Vec<Mutex<BufWriter<File>>>> {
            (0..PARTITIONS)
                .map(|p| {
                    File::create(dir.path().join(format!("{side}-{p:03}")))
                        .map(|f| Mutex::new(BufWriter::new(f)))
                })
                .collect()
        };
        let files = [open("qdrant")?, open("table")?];
        Ok(Spill {
            dir,
            files,
            failed: Mutex::new(None),
        })
    }

    /// Where the records are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, side: Side, partition: usize) -> PathBuf {
        let name = match side {
            Side::Qdrant => "qdrant",
            Side::Table => "table",
        };
        self.dir.path().join(format!("{name}-{partition:03}"))
    }

    /// Records one row of `side`.
    pub fn write(&self, side: Side, bucket: usize, key: PointKey, digest: u128) {
        let mut record = [0u8; RECORD];
        record[..2].copy_from_slice(&(bucket as u16).to_le_bytes());
        let (kind, id) = match key {
            PointKey::Num(n) => (0, u128::from(n)),
            PointKey::Uuid(u) => (1, u),
        };
        record[2] = kind;
        record[3..19].copy_from_slice(&id.to_le_bytes());
        record[19..].copy_from_slice(&digest.to_le_bytes());
        let file = &self.files[side as usize][Spill::partition_of(bucket)];
        let written = file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&record);
        if let Err(e) = written {
            self.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        }
    }

    /// Flushes every file; the first error of any write.
    pub fn finish(&self) -> io::Result<()> {
        if let Some(e) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        for side in &self.files {
            for file in side {
                file.lock().unwrap_or_else(|e| e.into_inner()).flush()?;
            }
        }
        Ok(())
    }

    /// The partition a bucket's records are in.
    pub fn partition_of(bucket: usize) -> usize {
        bucket / BUCKETS_PER_PARTITION
    }

    /// The partitions that hold a `wanted` bucket, in order.
    pub fn partitions(wanted: &[bool]) -> Vec<usize> {
        (0..PARTITIONS)
            .filter(|p| {
                wanted[p * BUCKETS_PER_PARTITION..(p + 1) * BUCKETS_PER_PARTITION]
                    .iter()
                    .any(|w| *w)
            })
            .collect()
    }

    /// The `(id, digest)` records of `side` in `partition` whose bucket is `wanted`.
    pub fn read(
        &self,
        side: Side,
        partition: usize,
        wanted: &[bool],
    ) -> io::Result<Vec<(PointKey, u128)>> {
        let mut reader = BufReader::new(File::open(self.path(side, partition))?);
        let mut out = Vec::new();
        let mut record = [0u8; RECORD];
        loop {
            match reader.read_exact(&mut record) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(out),
                Err(e) => return Err(e),
            }
            let bucket = usize::from(u16::from_le_bytes([record[0], record[1]]));
            if !wanted[bucket] {
                continue;
            }
            let id = u128::from_le_bytes(record[3..19].try_into().unwrap_or_default());
            let key = match record[2] {
                0 => PointKey::Num(id as u64),
                _ => PointKey::Uuid(id),
            };
            let digest = u128::from_le_bytes(record[19..].try_into().unwrap_or_default());
            out.push((key, digest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_by_side_partition_and_wanted_bucket() {
        let scratch = tempfile::tempdir().unwrap();
        let spill = Spill::create(scratch.path()).unwrap();
        let uuid = PointKey::Uuid(u128::MAX - 7);
        spill.write(Side::Qdrant, 3, PointKey::Num(u64::MAX), 11);
        spill.write(Side::Qdrant, 300, uuid, u128::MAX);
        spill.write(Side::Table, 3, PointKey::Num(u64::MAX), 12);
        spill.write(Side::Table, 4, PointKey::Num(5), 13);
        spill.finish().unwrap();
        let mut wanted = vec![false; BUCKETS];
        wanted[3] = true;
        wanted[300] = true;
        assert_eq!(Spill::partitions(&wanted), vec![0, 1]);
        assert_eq!(
            spill.read(Side::Qdrant, 0, &wanted).unwrap(),
            vec![(PointKey::Num(u64::MAX), 11)]
        );
        assert_eq!(
            spill.read(Side::Qdrant, 1, &wanted).unwrap(),
            vec![(uuid, u128::MAX)]
        );
        // Bucket 4 is not wanted: its record stays on disk.
        assert_eq!(
            spill.read(Side::Table, 0, &wanted).unwrap(),
            vec![(PointKey::Num(u64::MAX), 12)]
        );
        let dir = spill.dir().to_owned();
        drop(spill);
        assert!(!dir.exists(), "the files go with the spill");
    }
}
