//! The in-repo Qdrant gRPC server (the real engine, `qdrant-edge`) as a process, for the demo
//! and the benchmarks: `cargo run --release --example qdrant_server [-- NAME=SNAPSHOT …]`.
//!
//! It prints its URL on the first line of stdout, then serves until its stdin closes (so a
//! script that started it in the background stops it by closing the pipe or killing it). It is
//! the same server the integration tests fall back on where no genuine Qdrant is installed
//! (`tests/support/edge_qdrant.rs`), with the same semantics as a genuine Qdrant for every call
//! qdrant2pg makes. Where the genuine server is installed, the demo and the benchmarks run that
//! instead.

#[allow(dead_code)]
#[path = "../tests/support/edge_qdrant.rs"]
mod qdrant;

use std::io::{Read, Write};
use std::path::Path;

fn main() {
    let server = qdrant::EdgeQdrant::start();
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some((name, path)) => server.load_snapshot(name, Path::new(path)),
            None => {
                eprintln!("usage: qdrant_server [NAME=SNAPSHOT ...]");
                std::process::exit(2);
            }
        }
    }
    println!("{}", server.url());
    let _ = std::io::stdout().flush();
    // Serve until stdin reaches end of file.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
