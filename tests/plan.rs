//! `qdrant2pg plan`: the whole picture of a migration, and no data moved.

use std::path::PathBuf;

use crate::support::cli::qdrant2pg;
use crate::support::qdrant::QdrantServer;

#[test]
fn plan_shows_counts_ids_columns_ddl_and_ranges() {
    let server = QdrantServer::start();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.18.3");
    for name in ["fx_rich", "fx_sharded"] {
        server.load_snapshot(name, &fixtures.join(format!("{name}.snapshot.gz")));
    }
    let out = qdrant2pg(&["plan", "--url", &server.url(), "--dialect", "pgvector"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "collection fx_rich",
        "points (exact):   300",
        "id column:        id uuid",
        "vector text         dense, size 8, float32, distance Dot",
        "vector image        dense, size 12, float16, distance Euclid",
        "vector colbert      multivector, size 4, float32, distance Cosine",
        "vector bm25         sparse",
        "collection fx_sharded",
        "points (exact):   600",
        "id column:        id text (integers",
        "distance Manhattan",
        "colbert real[][]",
        "sparsevec",
        "ranges planned:",
        "estimated export:",
    ] {
        assert!(text.contains(needle), "plan lacks {needle:?}:\n{text}");
    }
    // The words of SQL and of Qdrant's API, never Rust's debug forms.
    for debug in ["Some(", "None", "Float32", "Bigint", "Dense", "Uuid"] {
        assert!(!text.contains(debug), "plan shows {debug:?}:\n{text}");
    }
}
