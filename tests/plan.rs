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
        "id column:        Uuid",
        "collection fx_sharded",
        "points (exact):   600",
        "id column:        Text (integers",
        "colbert real[][]",
        "sparsevec",
        "ranges planned:",
        "estimated export:",
    ] {
        assert!(text.contains(needle), "plan lacks {needle:?}:\n{text}");
    }
}
