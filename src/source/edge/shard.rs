//! Scrolling and counting a collection made of engine shards, as the server's collection layer
//! does: the `limit` smallest ids over all shards from an inclusive offset, and the next id.

use qdrant_edge::{
    CountRequest, EdgeShard, Record, ScrollRequest, WithPayloadInterface, WithVector,
};

use crate::point_id::PointKey;

use super::{EdgeError, key_from_edge, key_to_edge};

/// One page of a scroll in id order.
#[derive(Debug)]
pub struct ShardPage {
    pub records: Vec<Record>,
    /// The first id of the next page, `None` on the last page.
    pub next_offset: Option<PointKey>,
}

/// Scroll a collection made of `shards` as the server's collection layer does.
pub fn scroll_shards(
    shards: &[EdgeShard],
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<ShardPage, EdgeError> {
    let ids_only = matches!(with_payload, WithPayloadInterface::Bool(false))
        && matches!(with_vector, WithVector::Bool(false));
    if shards.len() == 1 || ids_only {
        return merged_page(shards, offset, limit, with_payload, with_vector);
    }
    // Which shard's points make the page, from ids alone; then each shard reads its share,
    // which is exactly its first points from `offset`.
    let fetch = limit.saturating_add(1);
    let no_payload = WithPayloadInterface::Bool(false);
    let mut ids = Vec::new();
    for (shard_id, shard) in shards.iter().enumerate() {
        let page = scroll_shard(
            shard_id,
            shard,
            offset,
            fetch,
            &no_payload,
            &WithVector::Bool(false),
        )?;
        ids.extend(page.into_iter().map(|r| (r.id, shard_id)));
    }
    ids.sort_unstable();
    ids.dedup_by_key(|(id, _)| *id);
    ids.truncate(fetch);
    let next_offset = if ids.len() > limit {
        ids.pop().map(|(id, _)| key_from_edge(id))
    } else {
        None
    };
    let mut records = Vec::with_capacity(ids.len());
    for (shard_id, shard) in shards.iter().enumerate() {
        let share = ids.iter().filter(|(_, s)| *s == shard_id).count();
        if share > 0 {
            records.extend(scroll_shard(
                shard_id,
                shard,
                offset,
                share,
                with_payload,
                with_vector,
            )?);
        }
    }
    records.sort_unstable_by_key(|r| r.id);
    Ok(ShardPage {
        records,
        next_offset,
    })
}

/// One shard's first `limit` points from `offset`, in id order.
fn scroll_shard(
    shard_id: usize,
    shard: &EdgeShard,
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<Vec<Record>, EdgeError> {
    let request = ScrollRequest {
        offset: offset.map(key_to_edge),
        limit: Some(limit),
        filter: None,
        with_payload: Some(with_payload.clone()),
        with_vector: with_vector.clone(),
        order_by: None,
    };
    let (page, _) = shard.scroll(request).map_err(|source| EdgeError::Engine {
        action: format!("scroll shard {shard_id} from {offset:?}"),
        source,
    })?;
    Ok(page)
}

/// The shards' first `limit + 1` points from `offset`, merged by id.
fn merged_page(
    shards: &[EdgeShard],
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<ShardPage, EdgeError> {
    let fetch = limit.saturating_add(1);
    let mut records = Vec::new();
    for (shard_id, shard) in shards.iter().enumerate() {
        records.extend(scroll_shard(
            shard_id,
            shard,
            offset,
            fetch,
            with_payload,
            with_vector,
        )?);
    }
    records.sort_unstable_by_key(|r| r.id);
    records.dedup_by_key(|r| r.id);
    records.truncate(fetch);
    let next_offset = if records.len() > limit {
        records.pop().map(|r| key_from_edge(r.id))
    } else {
        None
    };
    Ok(ShardPage {
        records,
        next_offset,
    })
}

/// Exact number of points over all shards.
pub fn count_shards(shards: &[EdgeShard]) -> Result<u64, EdgeError> {
    shards
        .iter()
        .enumerate()
        .try_fold(0u64, |total, (shard_id, shard)| {
            let request = CountRequest {
                filter: None,
                exact: true,
            };
            let n = shard.count(request).map_err(|source| EdgeError::Engine {
                action: format!("count shard {shard_id}"),
                source,
            })?;
            Ok(total + n as u64)
        })
}
