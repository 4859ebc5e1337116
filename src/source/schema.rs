//! Schema discovery: a collection's gRPC description → its [`Layout`].
//!
//! Qdrant's config says which vectors exist, their shapes, dimensions, datatypes, distances and
//! HNSW settings; the payload schema says which payload indexes exist. Both come from the same
//! `CollectionInfo` message whether it was sent by a live server or rebuilt from a snapshot.

use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{self as pb, CollectionInfo};

use crate::layout::{Datatype, Distance, Hnsw, Layout, PayloadType, VectorShape, VectorSpec};

/// What we know of a collection before reading it.
#[derive(Clone, Debug)]
pub struct CollectionSchema {
    pub name: String,
    pub layout: Layout,
    /// The collection info as the server (or snapshot) described it; `index` reads HNSW and
    /// payload-index settings from it.
    pub info: CollectionInfo,
}

/// The config cannot be mapped to columns.
#[derive(Debug, thiserror::Error)]
#[error("collection {collection:?}: {detail}")]
pub struct SchemaError {
    pub collection: String,
    pub detail: String,
}

impl CollectionSchema {
    pub fn from_info(
        name: &str,
        info: CollectionInfo,
        payload: PayloadType,
    ) -> Result<Self, SchemaError> {
        let error = |detail: String| SchemaError {
            collection: name.to_owned(),
            detail,
        };
        let config = info
            .config
            .as_ref()
            .ok_or_else(|| error("no config in collection info".into()))?;
        let params = config
            .params
            .as_ref()
            .ok_or_else(|| error("no params in collection config".into()))?;
        let collection_hnsw = config.hnsw_config.as_ref();
        let mut vectors = Vec::new();
        match params
            .vectors_config
            .as_ref()
            .and_then(|v| v.config.as_ref())
        {
            Some(VectorsConfigKind::Params(p)) => vectors.push(dense_spec("", p, collection_hnsw)),
            Some(VectorsConfigKind::ParamsMap(map)) => vectors.extend(
                map.map
                    .iter()
                    .map(|(n, p)| dense_spec(n, p, collection_hnsw)),
            ),
            None => {}
        }
        if let Some(sparse) = &params.sparse_vectors_config {
            vectors.extend(sparse.map.keys().map(|n| VectorSpec {
                name: n.clone(),
                shape: VectorShape::Sparse,
                dim: None,
                datatype: Datatype::Float32,
                distance: None,
                hnsw: None,
            }));
        }
        // No PostgreSQL identifier (and no header line of a COPY file) can hold a NUL.
        if name.contains('\0') {
            return Err(error(
                "the name holds a NUL character, which no PostgreSQL table name can".into(),
            ));
        }
        if let Some(v) = vectors.iter().find(|v| v.name.contains('\0')) {
            return Err(error(format!(
                "vector {:?} holds a NUL character in its name, which no PostgreSQL column \
                 name can",
                v.name
            )));
        }
        let layout = Layout::new(vectors, payload);
        if let Some(column) = layout.duplicate_column() {
            return Err(error(format!(
                "two columns would both be named {column:?} (a vector name clashes with `id`, \
                 `payload` or a sparse vector's `_indices`/`_values` column)"
            )));
        }
        Ok(CollectionSchema {
            name: name.to_owned(),
            layout,
            info,
        })
    }

    /// The collection's approximate point count, as its info reports it.
    pub fn approximate_points(&self) -> Option<u64> {
        self.info.points_count
    }
}

fn dense_spec(
    name: &str,
    p: &pb::VectorParams,
    collection_hnsw: Option<&pb::HnswConfigDiff>,
) -> VectorSpec {
    let distance = match pb::Distance::try_from(p.distance) {
        Ok(pb::Distance::Cosine) => Some(Distance::Cosine),
        Ok(pb::Distance::Euclid) => Some(Distance::Euclid),
        Ok(pb::Distance::Dot) => Some(Distance::Dot),
        Ok(pb::Distance::Manhattan) => Some(Distance::Manhattan),
        _ => None,
    };
    let datatype = match p.datatype.map(pb::Datatype::try_from) {
        Some(Ok(pb::Datatype::Float16)) => Datatype::Float16,
        Some(Ok(pb::Datatype::Uint8)) => Datatype::Uint8,
        _ => Datatype::Float32,
    };
    // A vector's own HNSW settings override the collection's, field by field.
    let own = p.hnsw_config.as_ref();
    let m = own.and_then(|h| h.m).or(collection_hnsw.and_then(|h| h.m));
    let ef = own
        .and_then(|h| h.ef_construct)
        .or(collection_hnsw.and_then(|h| h.ef_construct));
    VectorSpec {
        name: name.to_owned(),
        shape: if p.multivector_config.is_some() {
            VectorShape::Multi
        } else {
            VectorShape::Dense
        },
        dim: Some(p.size),
        datatype,
        distance,
        hnsw: m.zip(ef).map(|(m, ef_construct)| Hnsw { m, ef_construct }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_with_vector(vector: &str) -> CollectionInfo {
        let params = pb::VectorParams {
            size: 4,
            ..Default::default()
        };
        CollectionInfo {
            config: Some(pb::CollectionConfig {
                params: Some(pb::CollectionParams {
                    vectors_config: Some(pb::VectorsConfig {
                        config: Some(VectorsConfigKind::ParamsMap(pb::VectorParamsMap {
                            map: [(vector.to_owned(), params)].into(),
                        })),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_with_nul_are_refused_naming_the_collection() {
        let ok = CollectionSchema::from_info("c", info_with_vector("a b\"c"), PayloadType::Json);
        assert!(ok.is_ok());
        let vector = CollectionSchema::from_info("c", info_with_vector("a\0b"), PayloadType::Json)
            .expect_err("NUL in a vector name");
        assert!(
            vector
                .to_string()
                .contains("collection \"c\": vector \"a\\0b\""),
            "{vector}"
        );
        let table = CollectionSchema::from_info("c\0d", info_with_vector("v"), PayloadType::Json)
            .expect_err("NUL in a collection name");
        assert!(table.to_string().contains("NUL"), "{table}");
    }
}
