//! `sync`: bringing a table up to its collection while the collection keeps changing.
//!
//! Qdrant has no change feed and no per-point version through its API, so the only complete way
//! to know what changed is to read it. A pass ([`pass`]) is `verify --full`'s digest buckets
//! followed by a repair: the delta is every id whose digest differs or that one side lacks;
//! changed and new points are read from Qdrant by id and written with migrate's encoders, ids
//! Qdrant no longer has are deleted ([`target`]). Each repair batch is one transaction, so a
//! crash leaves the table consistent and the next pass converges; a read that fails ends the
//! pass, deleting nothing it has not proven gone.
//!
//! A pass reads as little as it can: Qdrant's side whole, every time; the table's side whole
//! only when someone other than `sync` may have written it since the last pass ([`cache`]).
//!
//! Memory stays bounded whatever the delta: the ids of the differing buckets come back from the
//! scratch disk ([`spill`]) a partition at a time, not from a map of the collection.
//!
//! Under steady writes each pass's delta is what changed during the previous one, so passes
//! shrink to the writes of one pass; a cutover pauses the writers for one final pass.

pub mod cache;
pub mod pass;
pub mod spill;
pub mod target;
