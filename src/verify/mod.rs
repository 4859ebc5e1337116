//! Verification: both ends read and compared — every row against every point in canonical
//! form, and the table's searches against Qdrant's.
//!
//! It sits above `postgres` and `source` because it is made of both: [`compare`] reduces a
//! point and a table row to the same canonical bytes (vectors bit for bit, payloads as JSON
//! values), [`digest`] folds them into order-free buckets, [`table`] matches a table to its
//! collection, [`sample`] compares points read by id, [`full`] reads both sides whole and drills
//! differing buckets down to ids, and [`search`] compares nearest-neighbour answers.

pub mod compare;
pub mod digest;
pub mod findings;
pub mod full;
pub mod sample;
pub mod search;
pub mod table;
