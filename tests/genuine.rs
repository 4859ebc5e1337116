//! The genuine-Qdrant tier: what only a genuine Qdrant 1.18.3 can show.
//!
//! Every other test module runs against the genuine server too where it is installed
//! (`support::qdrant`); the tests here need its REST API or its own behaviour and are skipped,
//! with one line, where it is not.

use std::io::{BufRead, BufReader};

use qdrant2pg::postgres::compare::parse_json_exactly;
use serde_json::{Value as Json, json};

use crate::support::flows::{FIXTURES, fixtures_dir};
use crate::support::genuine_qdrant::encode;
use crate::support::qdrant::QdrantServer;

/// Every point of `collection` as the server's REST scroll returns it, in its order.
pub fn rest_scroll(server: &QdrantServer, collection: &str) -> Vec<Json> {
    let genuine = server.as_genuine().expect("a genuine server");
    let mut points = Vec::new();
    let mut offset = Json::Null;
    loop {
        let page = genuine.rest(
            "POST",
            &format!("/collections/{}/points/scroll", encode(collection)),
            Some(&json!({
                "limit": 256,
                "offset": offset,
                "with_payload": true,
                "with_vector": true,
            })),
        );
        points.extend(page["points"].as_array().expect("points").iter().cloned());
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            return points;
        }
    }
}

/// The harness itself: a fixture snapshot uploaded to the genuine server serves exactly the
/// points the server that made it recorded (tests/fixtures), so every test that loads fixtures
/// starts from the recorded truth.
#[test]
fn uploaded_fixtures_serve_the_recorded_points() {
    let Some(server) = QdrantServer::genuine() else {
        return;
    };
    for name in FIXTURES {
        server.load_snapshot(name, &fixtures_dir().join(format!("{name}.snapshot.gz")));
        let truth: Vec<Json> = BufReader::new(flate2::read::GzDecoder::new(
            std::fs::File::open(fixtures_dir().join(format!("{name}.points.jsonl.gz")))
                .expect("fixture"),
        ))
        .lines()
        .map(|line| parse_json_exactly(&line.expect("a line")).expect("JSON"))
        .collect();
        let served = rest_scroll(&server, name);
        assert_eq!(served.len(), truth.len(), "{name}: points");
        for (served, truth) in served.iter().zip(&truth) {
            assert_eq!(served["id"], truth["id"], "{name}: order");
            assert_eq!(
                served["vector"], truth["vector"],
                "{name}: vectors of {}",
                truth["id"]
            );
            assert_eq!(
                served["payload"], truth["payload"],
                "{name}: payload of {}",
                truth["id"]
            );
        }
    }
}
