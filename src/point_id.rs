//! Point ids in Qdrant's own order, and half-open ranges over that order.
//!
//! Qdrant orders ids as `(kind, value)`: every integer id comes before every UUID, integers
//! compare numerically and UUIDs by their 128 bits (byte order). A scroll with `offset = x`
//! returns ids `>= x`, so a range `[lo, hi)` over this order is exactly what one cursor reads.
//! Ranges never overlap, which is what makes "every point exactly once" hold however the
//! planner cuts the id space.

use std::fmt;

use qdrant_client::qdrant::PointId;
use qdrant_client::qdrant::point_id::PointIdOptions;
use serde::{Deserialize, Serialize};

/// A point id, ordered as Qdrant orders it (the derived order: `Num` before `Uuid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointKey {
    Num(u64),
    #[serde(with = "uuid_text")]
    Uuid(u128),
}

/// Why a proto `PointId` or a text could not become a [`PointKey`].
#[derive(Debug, thiserror::Error)]
pub enum PointIdError {
    #[error("point without an id")]
    Missing,
    #[error("point id {0:?} is not a UUID")]
    BadUuid(String),
    #[error("{0:?} is neither an unsigned integer nor a UUID")]
    BadText(String),
}

impl PointKey {
    /// The first id of the whole order.
    pub const MIN: PointKey = PointKey::Num(0);
    /// The first UUID, i.e. the end of the integer part of the order.
    pub const FIRST_UUID: PointKey = PointKey::Uuid(0);

    pub fn from_proto(id: Option<&PointId>) -> Result<Self, PointIdError> {
        match id.and_then(|id| id.point_id_options.as_ref()) {
            Some(PointIdOptions::Num(n)) => Ok(PointKey::Num(*n)),
            Some(PointIdOptions::Uuid(text)) => uuid::Uuid::parse_str(text)
                .map(|u| PointKey::Uuid(u.as_u128()))
                .map_err(|_| PointIdError::BadUuid(text.clone())),
            None => Err(PointIdError::Missing),
        }
    }

    pub fn to_proto(self) -> PointId {
        let options = match self {
            PointKey::Num(n) => PointIdOptions::Num(n),
            PointKey::Uuid(u) => PointIdOptions::Uuid(uuid::Uuid::from_u128(u).to_string()),
        };
        PointId {
            point_id_options: Some(options),
        }
    }

    /// The next key in the order, or `None` past the last UUID.
    pub fn successor(self) -> Option<PointKey> {
        match self {
            PointKey::Num(u64::MAX) => Some(PointKey::FIRST_UUID),
            PointKey::Num(n) => Some(PointKey::Num(n + 1)),
            PointKey::Uuid(u) => u.checked_add(1).map(PointKey::Uuid),
        }
    }
}

impl fmt::Display for PointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointKey::Num(n) => write!(f, "{n}"),
            PointKey::Uuid(u) => write!(f, "{}", uuid::Uuid::from_u128(*u).hyphenated()),
        }
    }
}

/// Reads what [`fmt::Display`] writes: decimal digits are an integer id, anything else must be
/// a UUID (migrate's ledger stores range bounds this way).
impl std::str::FromStr for PointKey {
    type Err = PointIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(PointKey::Num)
                .map_err(|_| PointIdError::BadText(text.to_owned()));
        }
        uuid::Uuid::parse_str(text)
            .map(|u| PointKey::Uuid(u.as_u128()))
            .map_err(|_| PointIdError::BadText(text.to_owned()))
    }
}

/// A half-open range `[lo, hi)` in Qdrant's id order; `hi = None` is +∞.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRange {
    pub lo: PointKey,
    pub hi: Option<PointKey>,
}

impl KeyRange {
    /// Every possible id.
    pub const ALL: KeyRange = KeyRange {
        lo: PointKey::MIN,
        hi: None,
    };

    pub fn new(lo: PointKey, hi: Option<PointKey>) -> Self {
        KeyRange { lo, hi }
    }

    pub fn contains(&self, key: PointKey) -> bool {
        key >= self.lo && self.hi.is_none_or(|hi| key < hi)
    }

    pub fn is_empty(&self) -> bool {
        self.hi.is_some_and(|hi| hi <= self.lo)
    }

    /// The ids in both ranges, `None` when there are none.
    pub fn intersect(&self, other: &KeyRange) -> Option<KeyRange> {
        let hi = match (self.hi, other.hi) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let range = KeyRange::new(self.lo.max(other.lo), hi);
        (!range.is_empty()).then_some(range)
    }
}

impl Default for KeyRange {
    fn default() -> Self {
        KeyRange::ALL
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hi {
            Some(hi) => write!(f, "[{}, {})", self.lo, hi),
            None => write!(f, "[{}, ∞)", self.lo),
        }
    }
}

mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&uuid::Uuid::from_u128(*value).hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        uuid::Uuid::parse_str(&text)
            .map(|u| u.as_u128())
            .map_err(serde::de::Error::custom)
    }
}

/// `n` UUID keys from a linear congruential sequence started at `seed`: spread over the whole
/// UUID space, the same on every run (the unit tests' random ids).
#[cfg(test)]
pub(crate) fn pseudo_random_uuids(seed: u128, n: usize) -> Vec<PointKey> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(1);
            PointKey::Uuid(x)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_come_before_uuids_and_uuids_compare_by_bytes() {
        let mut keys = vec![
            PointKey::Uuid(0xff00_0000_0000_0000_0000_0000_0000_0000),
            PointKey::Num(u64::MAX),
            PointKey::Uuid(1),
            PointKey::Num(0),
            PointKey::Num(7),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                PointKey::Num(0),
                PointKey::Num(7),
                PointKey::Num(u64::MAX),
                PointKey::Uuid(1),
                PointKey::Uuid(0xff00_0000_0000_0000_0000_0000_0000_0000),
            ]
        );
    }

    #[test]
    fn proto_round_trip_and_text() {
        let uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
        let key = PointKey::from_proto(Some(&PointKey::Uuid(0).to_proto())).unwrap();
        assert_eq!(key, PointKey::Uuid(0));
        let parsed = uuid::Uuid::parse_str(uuid).unwrap().as_u128();
        assert_eq!(PointKey::Uuid(parsed).to_string(), uuid);
        assert_eq!(
            PointKey::from_proto(Some(&PointKey::Num(u64::MAX).to_proto())).unwrap(),
            PointKey::Num(u64::MAX)
        );
        assert!(PointKey::from_proto(None).is_err());
    }

    #[test]
    fn ranges_are_half_open() {
        let r = KeyRange::new(PointKey::Num(10), Some(PointKey::Num(20)));
        assert!(r.contains(PointKey::Num(10)));
        assert!(!r.contains(PointKey::Num(20)));
        assert!(!r.contains(PointKey::Uuid(0)));
        assert!(KeyRange::ALL.contains(PointKey::Uuid(u128::MAX)));
        assert_eq!(
            PointKey::Num(u64::MAX).successor(),
            Some(PointKey::FIRST_UUID)
        );
        assert_eq!(PointKey::Uuid(u128::MAX).successor(), None);
    }

    #[test]
    fn text_parses_back_to_the_same_key() {
        for key in [
            PointKey::Num(0),
            PointKey::Num(u64::MAX),
            PointKey::Uuid(0),
            PointKey::Uuid(u128::MAX),
            PointKey::Uuid(0x5c56_c793_69f3_4fbf_87e6_c4bf_54c2_8c26),
        ] {
            assert_eq!(key.to_string().parse::<PointKey>().unwrap(), key);
        }
        for bad in ["", "-1", "18446744073709551616", "1.5", "5c56c793", " 7"] {
            assert!(bad.parse::<PointKey>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_keeps_kind() {
        let json = serde_json::to_string(&[PointKey::Num(u64::MAX), PointKey::Uuid(1)]).unwrap();
        assert_eq!(
            json,
            r#"[18446744073709551615,"00000000-0000-0000-0000-000000000001"]"#
        );
        let back: Vec<PointKey> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![PointKey::Num(u64::MAX), PointKey::Uuid(1)]);
    }
}
