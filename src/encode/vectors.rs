//! Finding one layout vector in a point, whatever shape the server sent it in.
//!
//! Qdrant ≥ 1.16 sends a vector in the `vector` oneof (dense, sparse or multi-dense); older
//! servers fill the deprecated `data` / `indices` / `vectors_count` fields instead, a multivector
//! flattened. Both are accepted so one binary reads every server version. A collection with a
//! single unnamed vector sends `VectorsOutput::Vector`; one with named vectors sends a map, from
//! which a point may omit any name (that column is then NULL).
//!
//! The vector is checked against the collection's declaration here, once, so the encoders can
//! trust its shape: dense and multi rows have the declared length, multi rows are rectangular
//! (PostgreSQL arrays must be), and sparse indices and values pair up.

use std::borrow::Cow;

use qdrant_client::qdrant::vector_output::Vector;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{DenseVector, RetrievedPoint, VectorOutput};

use super::EncodeError;
use crate::layout::{SPARSEVEC_MAX_NNZ, VectorShape, VectorSpec};
use crate::point_id::PointKey;

/// One vector of a point, borrowed from the gRPC message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VectorRef<'a> {
    Dense(&'a [f32]),
    Multi(MultiRef<'a>),
    Sparse {
        indices: &'a [u32],
        values: &'a [f32],
    },
}

/// A multivector: nested as Qdrant ≥ 1.16 sends it, or flat with a row count as older servers
/// do. Checked rectangular by [`vector_of`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MultiRef<'a> {
    Nested(&'a [DenseVector]),
    Flat { data: &'a [f32], rows: usize },
}

impl<'a> MultiRef<'a> {
    /// The number of vectors.
    pub fn rows(&self) -> usize {
        match self {
            MultiRef::Nested(rows) => rows.len(),
            MultiRef::Flat { rows, .. } => *rows,
        }
    }

    /// The length of each vector (0 when there are none).
    pub fn dim(&self) -> usize {
        match self {
            MultiRef::Nested(rows) => rows.first().map_or(0, |r| r.data.len()),
            MultiRef::Flat { data, rows } => data.len().checked_div(*rows).unwrap_or(0),
        }
    }

    /// Vector `i` (`i < rows()`).
    pub fn row(&self, i: usize) -> &'a [f32] {
        match self {
            MultiRef::Nested(rows) => &rows[i].data,
            MultiRef::Flat { data, .. } => {
                let dim = self.dim();
                &data[i * dim..(i + 1) * dim]
            }
        }
    }

    /// Every value, row after row.
    pub fn values(&self) -> impl Iterator<Item = f32> + 'a {
        let this = *self;
        (0..this.rows()).flat_map(move |i| this.row(i).iter().copied())
    }
}

/// The point's key, for the error messages of the vector checks.
fn key_of(point: &RetrievedPoint) -> Result<PointKey, EncodeError> {
    Ok(PointKey::from_proto(point.id.as_ref())?)
}

/// Finds `spec`'s vector in `point`: `Ok(None)` when the point lacks it, an error naming the
/// point when it has the wrong shape or length.
pub fn vector_of<'a>(
    point: &'a RetrievedPoint,
    spec: &VectorSpec,
) -> Result<Option<VectorRef<'a>>, EncodeError> {
    let output = match point
        .vectors
        .as_ref()
        .and_then(|v| v.vectors_options.as_ref())
    {
        Some(VectorsOptions::Vector(unnamed)) if spec.name.is_empty() => unnamed,
        Some(VectorsOptions::Vectors(named)) => match named.vectors.get(&spec.name) {
            Some(v) => v,
            None => return Ok(None),
        },
        Some(VectorsOptions::Vector(_)) | None => return Ok(None),
    };
    let found = shape_of(output)?;
    check(point, spec, found)?;
    Ok(Some(found))
}

/// Reads a `VectorOutput` in either wire shape.
#[allow(deprecated)] // the deprecated fields are what servers before 1.16 send
fn shape_of(output: &VectorOutput) -> Result<VectorRef<'_>, EncodeError> {
    Ok(match &output.vector {
        Some(Vector::Dense(d)) => VectorRef::Dense(&d.data),
        Some(Vector::Sparse(s)) => VectorRef::Sparse {
            indices: &s.indices,
            values: &s.values,
        },
        Some(Vector::MultiDense(m)) => VectorRef::Multi(MultiRef::Nested(&m.vectors)),
        None => match (&output.indices, output.vectors_count) {
            (Some(indices), _) => VectorRef::Sparse {
                indices: &indices.data,
                values: &output.data,
            },
            (None, Some(rows)) => VectorRef::Multi(MultiRef::Flat {
                data: &output.data,
                rows: rows as usize,
            }),
            (None, None) => VectorRef::Dense(&output.data),
        },
    })
}

fn check(
    point: &RetrievedPoint,
    spec: &VectorSpec,
    found: VectorRef<'_>,
) -> Result<(), EncodeError> {
    let vector = || spec.name.clone();
    let declared = spec.dim.map(|d| d as usize);
    let wrong_dim = |len: usize| declared.is_some_and(|d| d != len);
    match (spec.shape, found) {
        (VectorShape::Dense, VectorRef::Dense(values)) if wrong_dim(values.len()) => {
            Err(EncodeError::Dim {
                id: key_of(point)?,
                vector: vector(),
                expected: declared.unwrap_or_default(),
                found: values.len(),
            })
        }
        (VectorShape::Dense, VectorRef::Dense(_)) => Ok(()),
        (VectorShape::Multi, VectorRef::Multi(multi)) => {
            if let MultiRef::Flat { data, rows } = multi
                && (rows == 0 && !data.is_empty() || rows != 0 && data.len() % rows != 0)
            {
                return Err(EncodeError::MultiLength {
                    id: key_of(point)?,
                    vector: vector(),
                    values: data.len(),
                    count: rows,
                });
            }
            let dim = multi.dim();
            if let MultiRef::Nested(rows) = multi
                && let Some(bad) = rows.iter().find(|r| r.data.len() != dim)
            {
                return Err(EncodeError::Dim {
                    id: key_of(point)?,
                    vector: vector(),
                    expected: dim,
                    found: bad.data.len(),
                });
            }
            if multi.rows() > 0 && wrong_dim(dim) {
                return Err(EncodeError::Dim {
                    id: key_of(point)?,
                    vector: vector(),
                    expected: declared.unwrap_or_default(),
                    found: dim,
                });
            }
            Ok(())
        }
        (VectorShape::Sparse, VectorRef::Sparse { indices, values }) => {
            if indices.len() != values.len() {
                return Err(EncodeError::SparseLengths {
                    id: key_of(point)?,
                    vector: vector(),
                    indices: indices.len(),
                    values: values.len(),
                });
            }
            Ok(())
        }
        (expected, found) => Err(EncodeError::Shape {
            id: key_of(point)?,
            vector: vector(),
            expected,
            found: match found {
                VectorRef::Dense(_) => "dense",
                VectorRef::Multi(_) => "a multivector",
                VectorRef::Sparse { .. } => "sparse",
            },
        }),
    }
}

/// A sparse vector as pgvector's sparsevec needs it: indices strictly ascending (Qdrant does
/// not promise an order), explicit zeros dropped (sparsevec cannot hold them: its text input
/// drops them and its binary input rejects them), values finite, indices below `dim`.
pub(crate) struct SparsevecEntries<'a> {
    indices: Cow<'a, [u32]>,
    values: Cow<'a, [f32]>,
    /// Entries whose value is not zero.
    pub nnz: usize,
}

impl<'a> SparsevecEntries<'a> {
    pub fn new(
        id: PointKey,
        vector: &str,
        indices: &'a [u32],
        values: &'a [f32],
        dim: u32,
    ) -> Result<Self, EncodeError> {
        let sorted = indices.windows(2).all(|w| w[0] < w[1]);
        let (indices, values): (Cow<'a, [u32]>, Cow<'a, [f32]>) = if sorted {
            (indices.into(), values.into())
        } else {
            let mut pairs: Vec<(u32, f32)> = indices
                .iter()
                .copied()
                .zip(values.iter().copied())
                .collect();
            pairs.sort_unstable_by_key(|p| p.0);
            if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(EncodeError::SparseDuplicate {
                    id,
                    vector: vector.into(),
                    index: w[0].0,
                });
            }
            let (i, v): (Vec<u32>, Vec<f32>) = pairs.into_iter().unzip();
            (i.into(), v.into())
        };
        if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
            return Err(EncodeError::NonFinite {
                id,
                vector: vector.into(),
                value,
            });
        }
        if let Some(&index) = indices.last().filter(|&&i| i >= dim) {
            return Err(EncodeError::SparseBeyondDim {
                id,
                vector: vector.into(),
                index,
                dim,
            });
        }
        let nnz = values.iter().filter(|v| **v != 0.0).count();
        if nnz > SPARSEVEC_MAX_NNZ {
            return Err(EncodeError::SparseTooMany {
                id,
                vector: vector.into(),
                nnz,
            });
        }
        Ok(SparsevecEntries {
            indices,
            values,
            nnz,
        })
    }

    /// The non-zero entries, 0-based, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .filter(|e| e.1 != 0.0)
    }
}

/// The first value pgvector's vector, halfvec and sparsevec reject (NaN, ±Infinity).
pub(crate) fn first_non_finite(values: impl IntoIterator<Item = f32>) -> Option<f32> {
    values.into_iter().find(|v| !v.is_finite())
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::MultiDenseVector;

    use super::*;
    use crate::encode::fixtures::{dense, old_style, point, sparse, spec};
    use crate::layout::SPARSEVEC_MAX_DIM;

    fn p7(vectors: Vec<(&str, VectorOutput)>) -> RetrievedPoint {
        point(PointKey::Num(7), vectors)
    }

    fn multi_nested(rows: Vec<Vec<f32>>) -> VectorOutput {
        VectorOutput {
            vector: Some(Vector::MultiDense(MultiDenseVector {
                vectors: rows.into_iter().map(|data| DenseVector { data }).collect(),
            })),
            ..Default::default()
        }
    }

    fn dense_values(r: Option<VectorRef<'_>>) -> Vec<f32> {
        match r {
            Some(VectorRef::Dense(v)) => v.to_vec(),
            other => panic!("expected dense, got {other:?}"),
        }
    }

    fn multi_values(r: Option<VectorRef<'_>>) -> (usize, usize, Vec<f32>) {
        match r {
            Some(VectorRef::Multi(m)) => (m.rows(), m.dim(), m.values().collect()),
            other => panic!("expected multi, got {other:?}"),
        }
    }

    #[test]
    fn both_wire_shapes_give_the_same_vectors() {
        let unnamed = spec("", VectorShape::Dense, Some(2));
        let new = p7(vec![("", dense(vec![1.0, 2.0]))]);
        let old = p7(vec![("", old_style(vec![1.0, 2.0], None, None))]);
        assert_eq!(dense_values(vector_of(&new, &unnamed).unwrap()), [1.0, 2.0]);
        assert_eq!(dense_values(vector_of(&old, &unnamed).unwrap()), [1.0, 2.0]);

        let multi = spec("colbert", VectorShape::Multi, Some(2));
        let new = p7(vec![
            (
                "colbert",
                multi_nested(vec![vec![1.0, 2.0], vec![3.0, 4.0]]),
            ),
            ("x", dense(vec![])),
        ]);
        let old = p7(vec![
            (
                "colbert",
                old_style(vec![1.0, 2.0, 3.0, 4.0], None, Some(2)),
            ),
            ("x", dense(vec![])),
        ]);
        let expected = (2, 2, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(multi_values(vector_of(&new, &multi).unwrap()), expected);
        assert_eq!(multi_values(vector_of(&old, &multi).unwrap()), expected);

        let bm25 = spec("bm25", VectorShape::Sparse, None);
        let new = p7(vec![
            ("bm25", sparse(vec![9], vec![0.5])),
            ("x", dense(vec![])),
        ]);
        let old = p7(vec![
            ("bm25", old_style(vec![0.5], Some(vec![9]), None)),
            ("x", dense(vec![])),
        ]);
        for p in [&new, &old] {
            assert_eq!(
                vector_of(p, &bm25).unwrap(),
                Some(VectorRef::Sparse {
                    indices: &[9],
                    values: &[0.5]
                })
            );
        }
    }

    #[test]
    fn absent_vectors_are_none() {
        let b = spec("b", VectorShape::Dense, Some(1));
        let p = p7(vec![("a", dense(vec![1.0])), ("c", dense(vec![1.0]))]);
        assert_eq!(vector_of(&p, &b).unwrap(), None);
        let unnamed = p7(vec![("", dense(vec![1.0]))]);
        assert_eq!(vector_of(&unnamed, &b).unwrap(), None);
        let bare = p7(vec![]);
        assert_eq!(
            vector_of(&bare, &spec("", VectorShape::Dense, Some(1))).unwrap(),
            None
        );
    }

    #[test]
    fn wrong_shapes_and_lengths_name_the_point_and_vector() {
        let p = p7(vec![("", old_style(vec![1.0, 2.0, 3.0], None, None))]);
        let err = vector_of(&p, &spec("", VectorShape::Dense, Some(2)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("point 7") && err.contains("3 dim"), "{err}");
        let err = vector_of(&p, &spec("", VectorShape::Sparse, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is dense") && err.contains("Sparse"), "{err}");
        let ragged = p7(vec![("", old_style(vec![1.0, 2.0, 3.0], None, Some(2)))]);
        let err = vector_of(&ragged, &spec("", VectorShape::Multi, None)).unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::MultiLength {
                    values: 3,
                    count: 2,
                    ..
                }
            ),
            "{err}"
        );
        let nested = p7(vec![("", multi_nested(vec![vec![1.0], vec![1.0, 2.0]]))]);
        let err = vector_of(&nested, &spec("", VectorShape::Multi, None)).unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::Dim {
                    expected: 1,
                    found: 2,
                    ..
                }
            ),
            "{err}"
        );
        let declared = vector_of(&nested, &spec("", VectorShape::Multi, Some(1)));
        assert!(declared.is_err());
        let lengths = p7(vec![
            ("s", old_style(vec![1.0], Some(vec![1, 2]), None)),
            ("x", dense(vec![])),
        ]);
        let err = vector_of(&lengths, &spec("s", VectorShape::Sparse, None)).unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::SparseLengths {
                    indices: 2,
                    values: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("\"s\""), "{err}");
        let no_id = RetrievedPoint {
            id: None,
            ..lengths
        };
        let err = vector_of(&no_id, &spec("s", VectorShape::Sparse, None)).unwrap_err();
        assert!(matches!(err, EncodeError::Id(_)), "{err}");
    }

    #[test]
    fn empty_multivectors_are_zero_rows() {
        let m = spec("", VectorShape::Multi, Some(4));
        let flat = p7(vec![("", old_style(vec![], None, Some(0)))]);
        assert_eq!(multi_values(vector_of(&flat, &m).unwrap()), (0, 0, vec![]));
        let nested = p7(vec![("", multi_nested(vec![]))]);
        assert_eq!(
            multi_values(vector_of(&nested, &m).unwrap()),
            (0, 0, vec![])
        );
    }

    #[test]
    fn sparsevec_entries_sort_drop_zeros_and_check_limits() {
        let id = PointKey::Num(1);
        let e = SparsevecEntries::new(id, "s", &[5, 1, 3], &[0.5, 0.0, 2.0], 10).unwrap();
        assert_eq!(e.nnz, 2);
        assert_eq!(e.iter().collect::<Vec<_>>(), [(3, 2.0), (5, 0.5)]);
        assert!(matches!(
            SparsevecEntries::new(id, "s", &[2, 1, 2], &[1.0; 3], 10),
            Err(EncodeError::SparseDuplicate { index: 2, .. })
        ));
        assert!(matches!(
            SparsevecEntries::new(id, "s", &[10], &[1.0], 10),
            Err(EncodeError::SparseBeyondDim {
                index: 10,
                dim: 10,
                ..
            })
        ));
        assert!(matches!(
            SparsevecEntries::new(id, "s", &[1], &[f32::NAN], 10),
            Err(EncodeError::NonFinite { .. })
        ));
        let many: Vec<u32> = (0..16_001).collect();
        assert!(matches!(
            SparsevecEntries::new(id, "s", &many, &vec![1.0; 16_001], SPARSEVEC_MAX_DIM),
            Err(EncodeError::SparseTooMany { nnz: 16_001, .. })
        ));
    }
}
