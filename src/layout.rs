//! The column layout of one collection: which PostgreSQL columns a Qdrant collection becomes.
//!
//! The layout is the contract between every stage: the encoder writes fields in this order, the
//! DDL declares these columns, the manifest records it so that import needs nothing else, and
//! verify reads columns back by it. Vectors are ordered by kind (dense and multi first, then
//! sparse) and by name within a kind, so the same collection always gives the same columns.
//!
//! Two facts are only known once the data has been read — whether ids are integers, UUIDs or
//! both, and how wide sparse indices get — so they live in [`DataFacts`], which every encoded
//! row contributes to and which the DDL consults at the end.

use serde::{Deserialize, Serialize};

use crate::point_id::PointKey;

/// pgvector's `VECTOR_MAX_DIM` and `HALFVEC_MAX_DIM` (pgvector 0.7 and later).
pub const VECTOR_MAX_DIM: usize = 16_000;
/// pgvector's `SPARSEVEC_MAX_DIM`: the sparsevec dimension when the layout gives none.
pub const SPARSEVEC_MAX_DIM: u32 = 1_000_000_000;
/// pgvector's `SPARSEVEC_MAX_NNZ`.
pub const SPARSEVEC_MAX_NNZ: usize = 16_000;

/// How a Qdrant vector is stored, as the collection config declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorShape {
    /// One `dim`-long vector per point.
    Dense,
    /// A list of `dim`-long vectors per point (ColBERT-style).
    Multi,
    /// Indices and values; no fixed dimension.
    Sparse,
}

/// The element type Qdrant stores; every one of them is exactly representable as `real`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Datatype {
    #[default]
    Float32,
    Float16,
    Uint8,
}

/// Qdrant's distance functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    Cosine,
    Euclid,
    Dot,
    Manhattan,
}

impl std::fmt::Display for VectorShape {
    /// As Qdrant's API speaks of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VectorShape::Dense => "dense",
            VectorShape::Multi => "multivector",
            VectorShape::Sparse => "sparse",
        })
    }
}

impl std::fmt::Display for Datatype {
    /// Qdrant's `datatype` values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Datatype::Float32 => "float32",
            Datatype::Float16 => "float16",
            Datatype::Uint8 => "uint8",
        })
    }
}

impl std::fmt::Display for Distance {
    /// Qdrant's `distance` values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Distance::Cosine => "Cosine",
            Distance::Euclid => "Euclid",
            Distance::Dot => "Dot",
            Distance::Manhattan => "Manhattan",
        })
    }
}

/// HNSW parameters, as the collection (or one vector's override) sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hnsw {
    pub m: u64,
    pub ef_construct: u64,
}

/// One Qdrant vector and how it maps to columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpec {
    /// Qdrant's name; empty for the single unnamed vector.
    pub name: String,
    pub shape: VectorShape,
    /// Dense and multi vectors: the length of each vector.
    pub dim: Option<u64>,
    #[serde(default)]
    pub datatype: Datatype,
    pub distance: Option<Distance>,
    pub hnsw: Option<Hnsw>,
}

impl VectorSpec {
    /// The sparsevec dimension of a sparse vector: the layout's `dim` when the caller set one (at
    /// most pgvector's maximum), else that maximum.
    pub fn sparsevec_dim(&self) -> u32 {
        self.dim.map_or(SPARSEVEC_MAX_DIM, |d| {
            d.min(u64::from(SPARSEVEC_MAX_DIM)) as u32
        })
    }

    /// The base column name: `vector` for the unnamed vector, else Qdrant's name.
    pub fn column(&self) -> &str {
        if self.name.is_empty() {
            "vector"
        } else {
            &self.name
        }
    }
}

/// What the payload column is declared as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PayloadType {
    #[default]
    Json,
    Jsonb,
}

/// How vector values are spelled in the data files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VectorSyntax {
    /// PostgreSQL arrays: `{1,2}`, `{{1,2},{3,4}}`; sparse as two arrays.
    #[default]
    Array,
    /// pgvector's text forms: `[1,2]` for vector/halfvec, `{1:0.5}/dim` for sparsevec.
    Pgvector,
}

/// When pgvector dense columns use `halfvec` (2-byte floats) instead of `vector`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Halfvec {
    /// Always `vector(dim)`: exact for every Qdrant datatype.
    #[default]
    Never,
    /// `halfvec(dim)` for vectors Qdrant stores as float16 (exact: the values are float16
    /// already), `vector(dim)` for the rest.
    Float16,
    /// `halfvec(dim)` for every dense vector: half the space, but float32 values are rounded.
    Always,
}

impl Halfvec {
    /// Whether a dense vector of `datatype` becomes `halfvec` under this policy.
    pub fn applies_to(self, datatype: Datatype) -> bool {
        match self {
            Halfvec::Never => false,
            Halfvec::Float16 => datatype == Datatype::Float16,
            Halfvec::Always => true,
        }
    }
}

/// The id column type, decided by the ids actually seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// All ids are integers ≤ 2^63−1.
    Bigint,
    /// Some integer id is above 2^63−1, and there are no UUIDs.
    Numeric,
    /// All ids are UUIDs.
    Uuid,
    /// Integers and UUIDs mixed.
    Text,
}

impl IdKind {
    /// The `id` column's SQL type.
    pub fn sql_type(self) -> &'static str {
        match self {
            IdKind::Bigint => "bigint",
            IdKind::Numeric => "numeric(20,0)",
            IdKind::Uuid => "uuid",
            IdKind::Text => "text",
        }
    }
}

/// A collection's layout: what is known from its configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Dense and multi vectors first, then sparse; by name within each group.
    pub vectors: Vec<VectorSpec>,
    pub payload: PayloadType,
}

impl Layout {
    /// Builds a layout, putting vectors into their canonical order.
    pub fn new(mut vectors: Vec<VectorSpec>, payload: PayloadType) -> Self {
        vectors.sort_by(|a, b| {
            (a.shape == VectorShape::Sparse, &a.name)
                .cmp(&(b.shape == VectorShape::Sparse, &b.name))
        });
        Layout { vectors, payload }
    }

    /// Column names in order: `id`, one or two per vector, `payload`.
    pub fn column_names(&self) -> Vec<String> {
        let mut names = vec!["id".to_owned()];
        for v in &self.vectors {
            match v.shape {
                VectorShape::Sparse => {
                    names.push(format!("{}_indices", v.column()));
                    names.push(format!("{}_values", v.column()));
                }
                VectorShape::Dense | VectorShape::Multi => names.push(v.column().to_owned()),
            }
        }
        names.push("payload".to_owned());
        names
    }

    /// Column names in order in `syntax`: pgvector's types hold a sparse vector in one column.
    pub fn columns(&self, syntax: VectorSyntax) -> Vec<String> {
        match syntax {
            VectorSyntax::Array => self.column_names(),
            VectorSyntax::Pgvector => std::iter::once("id".to_owned())
                .chain(self.vectors.iter().map(|v| v.column().to_owned()))
                .chain(std::iter::once("payload".to_owned()))
                .collect(),
        }
    }

    /// The first column name used twice (e.g. a named vector called `payload`), if any.
    pub fn duplicate_column(&self) -> Option<String> {
        let mut seen = std::collections::HashSet::new();
        self.column_names()
            .into_iter()
            .find(|name| !seen.insert(name.clone()))
    }
}

/// Facts learned from the data, merged across rows, pages, files and runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFacts {
    /// Some id is an integer ≤ 2^63−1.
    #[serde(default)]
    pub small_ints: bool,
    /// Some id is an integer above 2^63−1.
    #[serde(default)]
    pub big_ints: bool,
    /// Some id is a UUID.
    #[serde(default)]
    pub uuids: bool,
    /// Per sparse vector (in layout order), the largest index seen.
    #[serde(default)]
    pub max_sparse_index: Vec<Option<u32>>,
    /// The lowest id whose payload holds a double that may be a bent integer above `i64::MAX`
    /// (`encode::json::maybe_bent_integer`), for a warning naming it. Absent in manifests
    /// written when there is none, so their bytes do not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wide_number: Option<PointKey>,
}

impl DataFacts {
    pub fn for_layout(layout: &Layout) -> Self {
        let sparse = layout
            .vectors
            .iter()
            .filter(|v| v.shape == VectorShape::Sparse)
            .count();
        DataFacts {
            max_sparse_index: vec![None; sparse],
            ..Default::default()
        }
    }

    pub fn note_id(&mut self, key: PointKey) {
        match key {
            PointKey::Num(n) if n > i64::MAX as u64 => self.big_ints = true,
            PointKey::Num(_) => self.small_ints = true,
            PointKey::Uuid(_) => self.uuids = true,
        }
    }

    /// Notes that `key`'s payload holds a double that may be a bent integer. The lowest such
    /// id is kept, so the warning names the same point whatever order pages arrive in.
    pub fn note_wide_number(&mut self, key: PointKey) {
        self.wide_number = Some(self.wide_number.map_or(key, |k| k.min(key)));
    }

    /// Notes the largest index of one sparse vector (`slot` counts sparse vectors only).
    pub fn note_sparse_index(&mut self, slot: usize, max_index: u32) {
        let entry = &mut self.max_sparse_index[slot];
        *entry = Some(entry.map_or(max_index, |m| m.max(max_index)));
    }

    pub fn merge(&mut self, other: &DataFacts) {
        self.small_ints |= other.small_ints;
        self.big_ints |= other.big_ints;
        self.uuids |= other.uuids;
        if let Some(key) = other.wide_number {
            self.note_wide_number(key);
        }
        if self.max_sparse_index.len() < other.max_sparse_index.len() {
            self.max_sparse_index
                .resize(other.max_sparse_index.len(), None);
        }
        for (mine, theirs) in self
            .max_sparse_index
            .iter_mut()
            .zip(&other.max_sparse_index)
        {
            *mine = match (*mine, *theirs) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// The id column type these ids need. An empty collection gets `bigint`.
    pub fn id_kind(&self) -> IdKind {
        match (self.small_ints || self.big_ints, self.uuids) {
            (true, true) => IdKind::Text,
            (false, true) => IdKind::Uuid,
            _ if self.big_ints => IdKind::Numeric,
            _ => IdKind::Bigint,
        }
    }

    /// Whether sparse slot `slot` needs `bigint[]` indices (an index above 2^31−1).
    pub fn sparse_needs_bigint(&self, slot: usize) -> bool {
        self.max_sparse_index
            .get(slot)
            .copied()
            .flatten()
            .is_some_and(|m| m > i32::MAX as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, shape: VectorShape) -> VectorSpec {
        VectorSpec {
            name: name.into(),
            shape,
            dim: Some(4),
            datatype: Datatype::Float32,
            distance: None,
            hnsw: None,
        }
    }

    #[test]
    fn columns_are_canonical_whatever_the_config_order() {
        let layout = Layout::new(
            vec![
                spec("bm25", VectorShape::Sparse),
                spec("text", VectorShape::Dense),
                spec("colbert", VectorShape::Multi),
            ],
            PayloadType::Json,
        );
        assert_eq!(
            layout.column_names(),
            [
                "id",
                "colbert",
                "text",
                "bm25_indices",
                "bm25_values",
                "payload"
            ]
        );
        assert_eq!(layout.duplicate_column(), None);
        let clash = Layout::new(vec![spec("payload", VectorShape::Dense)], PayloadType::Json);
        assert_eq!(clash.duplicate_column().as_deref(), Some("payload"));
    }

    #[test]
    fn id_kind_follows_the_ids_seen() {
        let mut facts = DataFacts::default();
        assert_eq!(facts.id_kind(), IdKind::Bigint);
        facts.note_id(PointKey::Num(i64::MAX as u64));
        assert_eq!(facts.id_kind(), IdKind::Bigint);
        facts.note_id(PointKey::Num(i64::MAX as u64 + 1));
        assert_eq!(facts.id_kind(), IdKind::Numeric);
        facts.note_id(PointKey::Uuid(3));
        assert_eq!(facts.id_kind(), IdKind::Text);
        let mut only_uuids = DataFacts::default();
        only_uuids.note_id(PointKey::Uuid(3));
        assert_eq!(only_uuids.id_kind(), IdKind::Uuid);
    }

    #[test]
    fn sparse_width_merges() {
        let mut a = DataFacts {
            max_sparse_index: vec![Some(5), None],
            ..Default::default()
        };
        let b = DataFacts {
            max_sparse_index: vec![Some(3), Some(i32::MAX as u32 + 1)],
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.max_sparse_index, vec![Some(5), Some(i32::MAX as u32 + 1)]);
        assert!(!a.sparse_needs_bigint(0));
        assert!(a.sparse_needs_bigint(1));
    }
}
