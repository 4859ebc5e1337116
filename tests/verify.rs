//! `qdrant2pg verify` after export + import, on real servers: identical data verifies, and any
//! changed value, missing or extra row is found and named.

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{export_import, fixture_server};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

fn verify(server: &QdrantServer, db: &TestDb, extra: &[&str]) -> std::process::Output {
    let (url, dsn) = (server.url(), db.dsn());
    let mut args = vec!["verify", "--url", &url, "--dsn", &dsn, "--quiet"];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

#[test]
fn exported_and_imported_fixtures_verify_and_every_change_is_named() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    for mode in [&["--full"][..], &["--sample", "50"][..], &[][..]] {
        let result = verify(&server, &db, mode);
        assert_ok(&result);
        let text = String::from_utf8_lossy(&result.stdout);
        assert_eq!(
            text.matches("identical").count(),
            3,
            "{}",
            describe(&result)
        );
    }

    let mut client = db.client();
    client
        .batch_execute(
            "UPDATE fx_single SET vector[2] = vector[2] + 1e-6 WHERE id = 3;
             UPDATE fx_single SET payload = '{\"title\": \"changed\"}' WHERE id = 6;
             DELETE FROM fx_sharded WHERE id = '1';
             INSERT INTO fx_rich (id, payload) VALUES ('00000000-0000-0000-0000-000000000001', '{}');
             UPDATE fx_rich SET bm25_values = NULL WHERE id = (SELECT id FROM fx_rich WHERE bm25_values IS NOT NULL ORDER BY id LIMIT 1);",
        )
        .expect("corrupt the tables");
    let result = verify(&server, &db, &["--full"]);
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let text = String::from_utf8_lossy(&result.stdout);
    for needle in [
        "id 3: vector \"vector\" differs first at element 1",
        "id 6: payload differs",
        "id 1: missing from the table",
        "id 00000000-0000-0000-0000-000000000001: in the table but not in Qdrant",
        "vector \"bm25\": the table holds a malformed value",
        "count: Qdrant has 600 points, the table 599 rows",
    ] {
        assert!(
            text.contains(needle),
            "verify output lacks {needle:?}:\n{}",
            describe(&result)
        );
    }
    // Values are never printed: the changed title does not appear.
    assert!(!text.contains("changed"), "{text}");
}

#[test]
fn pgvector_tables_verify_bit_exact() {
    let server = fixture_server();
    let db = PgCluster::pg18_vector().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "pgvector");
    let result = verify(&server, &db, &["--full"]);
    assert_ok(&result);
    assert_eq!(
        String::from_utf8_lossy(&result.stdout)
            .matches("identical")
            .count(),
        3,
        "{}",
        describe(&result)
    );
}
