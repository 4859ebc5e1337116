//! Measuring PostgreSQL's searches against Qdrant's answers: recall at a setting, the ladder of
//! settings climbed until one reaches the recall asked for, latency and throughput on either
//! engine, and the trial of a larger HNSW graph on a copy of the table.
//!
//! Recall is a share of ids: of Qdrant's exact top K per query, how many PostgreSQL returned.
//! A setting is `hnsw.ef_search` (how many candidates pgvector's graph walk keeps) and, for
//! filtered searches, `hnsw.iterative_scan` (whether the walk goes on once a filter has thrown
//! its first candidates away: pgvector 0.8). Settings are session settings, which is how an
//! application sets them too.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use postgres::GenericClient;
use serde::Serialize;

use super::sql::knn_sql;
use crate::layout::Hnsw;
use crate::point_id::PointKey;
use crate::postgres::ident::quote_ident;
use crate::postgres::index::hnsw_options;

/// How long the throughput measurement keeps every client busy, per engine and vector: a
/// second is thousands of queries. On the shared 2-core test machine (load average 7–8), four
/// repeats over 1 s windows gave 1620–2247 queries/s for one PostgreSQL vector: the machine's
/// load, not the window, made the spread, and a longer window would only cost every vector
/// the time.
const QPS_WINDOW: Duration = Duration::from_secs(1);

/// Trial graphs are built in this much memory, as `index` builds by default: a graph that
/// does not fit is built far more slowly.
const TRIAL_WORK_MEM: &str = "1GB";

/// `hnsw.iterative_scan`: whether pgvector's filtered graph walk goes on past its first
/// `ef_search` candidates until it has K rows that pass the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IterativeScan {
    Off,
    /// Goes on, returning rows slightly out of distance order (the order matters not for
    /// recall; an application that needs it re-sorts the K rows).
    RelaxedOrder,
}

/// The session settings one search runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub ef_search: u32,
    pub iterative_scan: IterativeScan,
}

impl Setting {
    pub fn plain(ef_search: u32) -> Setting {
        Setting {
            ef_search,
            iterative_scan: IterativeScan::Off,
        }
    }

    /// For a report: `ef_search 300`, or with the iterative scan said first.
    pub fn describe(&self) -> String {
        match self.iterative_scan {
            IterativeScan::Off => format!("ef_search {}", self.ef_search),
            IterativeScan::RelaxedOrder => format!(
                "hnsw.iterative_scan = relaxed_order, ef_search {}",
                self.ef_search
            ),
        }
    }
}

/// Recall at one setting.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rung {
    #[serde(flatten)]
    pub setting: Setting,
    pub recall: f64,
}

/// What climbing a ladder of settings found.
#[derive(Debug)]
pub struct Climb {
    /// Every setting tried, in order: up to the first that reached the recall asked for.
    pub rungs: Vec<Rung>,
    pub reached: bool,
    /// Per query, the ids PostgreSQL returned at the last setting tried.
    pub answers: Vec<Vec<PointKey>>,
}

impl Climb {
    /// The setting the check reports: the first that reached, else the last tried.
    pub fn last(&self) -> Option<Rung> {
        self.rungs.last().copied()
    }
}

/// PostgreSQL's side of one vector's searches: the k-nearest query through its index.
#[derive(Clone, Copy, Debug)]
pub struct PgSearch<'a> {
    /// The table, qualified.
    pub table: &'a str,
    pub column: &'a str,
    /// The ordering operator of the vector's distance.
    pub operator: &'static str,
    /// `vector`, `halfvec` or `sparsevec`: what the query literal is cast to.
    pub base_type: &'a str,
    pub top: i64,
    /// Whether the server has `hnsw.iterative_scan` (pgvector 0.8 and later).
    pub iterative: bool,
}

impl PgSearch<'_> {
    pub fn sql(&self, filter: Option<&str>) -> String {
        knn_sql(
            self.table,
            self.column,
            self.operator,
            self.base_type,
            filter,
        )
    }

    /// Sets the session up for `setting`: the planner kept off sequential scans (the table
    /// is searched as one large enough to need its index would be), then the HNSW settings.
    pub fn set(
        &self,
        db: &mut impl GenericClient,
        setting: Setting,
    ) -> Result<(), postgres::Error> {
        let mut sql = format!(
            "SET enable_seqscan = off; SET hnsw.ef_search = {}",
            setting.ef_search
        );
        if self.iterative {
            let scan = match setting.iterative_scan {
                IterativeScan::Off => "off",
                IterativeScan::RelaxedOrder => "relaxed_order",
            };
            sql.push_str(&format!("; SET hnsw.iterative_scan = {scan}"));
        }
        db.batch_execute(&sql)
    }

    /// The plan PostgreSQL would run `literal`'s search with, line by line.
    pub fn explain(
        &self,
        db: &mut impl GenericClient,
        filter: Option<&str>,
        literal: &str,
    ) -> Result<Vec<String>, postgres::Error> {
        Ok(db
            .query(
                &format!("EXPLAIN {}", self.sql(filter)),
                &[&literal, &self.top],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Per literal, the ids PostgreSQL returns at `setting`.
    pub fn answers(
        &self,
        db: &mut impl GenericClient,
        setting: Setting,
        filter: Option<&str>,
        literals: &[String],
    ) -> Result<Vec<Vec<PointKey>>, postgres::Error> {
        self.set(db, setting)?;
        let statement = db.prepare(&self.sql(filter))?;
        literals
            .iter()
            .map(|literal| {
                Ok(db
                    .query(&statement, &[literal, &self.top])?
                    .iter()
                    .filter_map(|r| r.get::<_, String>(0).parse().ok())
                    .collect())
            })
            .collect()
    }

    /// Tries `settings` in order until one reaches `min_recall` against `expected`.
    pub fn climb(
        &self,
        db: &mut impl GenericClient,
        filter: Option<&str>,
        literals: &[String],
        expected: &[Vec<PointKey>],
        settings: &[Setting],
        min_recall: f64,
    ) -> Result<Climb, postgres::Error> {
        let mut climb = Climb {
            rungs: Vec::new(),
            reached: false,
            answers: Vec::new(),
        };
        for &setting in settings {
            climb.answers = self.answers(db, setting, filter, literals)?;
            let recall = recall(expected, &climb.answers);
            climb.rungs.push(Rung { setting, recall });
            if recall >= min_recall {
                climb.reached = true;
                break;
            }
        }
        Ok(climb)
    }

    /// Builds a graph with `hnsw` over a copy of the table's vectors (a temporary table, in a
    /// transaction rolled back at the end, so nothing of it stays and the table is only read)
    /// and climbs `ladder` on it: what `index --m --ef-construction` would give.
    #[allow(clippy::too_many_arguments)]
    pub fn trial(
        &self,
        db: &mut postgres::Client,
        opclass: &str,
        hnsw: Hnsw,
        literals: &[String],
        expected: &[Vec<PointKey>],
        ladder: &[Setting],
        min_recall: f64,
    ) -> Result<Trial, postgres::Error> {
        let mut tx = db.transaction()?;
        let copy = "pg_temp.qdrant2pg_trial";
        let column = quote_ident(self.column);
        let started = Instant::now();
        tx.batch_execute(&format!(
            "SET LOCAL maintenance_work_mem = '{TRIAL_WORK_MEM}';
             CREATE TEMPORARY TABLE qdrant2pg_trial AS SELECT id, {column} FROM {};
             CREATE INDEX ON {copy} USING hnsw ({column} {opclass}){};
             ANALYZE {copy}",
            self.table,
            hnsw_options(hnsw)
        ))?;
        let build_seconds = started.elapsed().as_secs_f64();
        let on_copy = PgSearch {
            table: copy,
            ..*self
        };
        let climb = on_copy.climb(&mut tx, None, literals, expected, ladder, min_recall)?;
        tx.rollback()?;
        Ok(Trial {
            m: hnsw.m,
            ef_construction: hnsw.ef_construct,
            build_seconds,
            rungs: climb.rungs,
            reached: climb.reached,
        })
    }
}

/// A larger graph tried on a copy of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub m: u64,
    pub ef_construction: u64,
    pub build_seconds: f64,
    pub rungs: Vec<Rung>,
    pub reached: bool,
}

/// recall@K: the share of the `expected` ids (per query) found among `answers`; 1 when nothing
/// was expected.
pub fn recall(expected: &[Vec<PointKey>], answers: &[Vec<PointKey>]) -> f64 {
    let (found, of) =
        expected
            .iter()
            .zip(answers)
            .fold((0usize, 0usize), |(found, of), (expected, answer)| {
                (
                    found + expected.iter().filter(|k| answer.contains(k)).count(),
                    of + expected.len(),
                )
            });
    if of == 0 {
        1.0
    } else {
        found as f64 / of as f64
    }
}

/// How fast one engine answered the same queries.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    pub queries: usize,
    /// Per query, one client, one query at a time.
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Queries per second with `clients` clients at once, each on its own connection.
    pub clients: usize,
    pub qps: f64,
}

impl Latency {
    pub fn describe(&self) -> String {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, {:.0} queries/s with {} client(s)",
            self.p50_ms, self.p95_ms, self.qps, self.clients
        )
    }

    /// Times `queries` queries: each once, one at a time, on one connection (the percentiles),
    /// then `clients` connections at once, each going round the queries for [`QPS_WINDOW`]
    /// (the throughput). `connect` opens a connection (before the clock starts), `run` sends
    /// query `i` on it.
    pub fn measure<C, E: Send>(
        queries: usize,
        clients: usize,
        connect: impl Fn() -> Result<C, E> + Sync,
        run: impl Fn(&mut C, usize) -> Result<(), E> + Sync,
    ) -> Result<Latency, E> {
        let mut one = connect()?;
        let mut times = Vec::with_capacity(queries);
        for i in 0..queries {
            let started = Instant::now();
            run(&mut one, i)?;
            times.push(started.elapsed());
        }
        drop(one);
        times.sort();
        let percentile = |p: f64| {
            let rank = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
            times.get(rank - 1).map_or(0.0, |t| t.as_secs_f64() * 1e3)
        };
        let clients = clients.max(1);
        let barrier = Barrier::new(clients);
        let counts: Vec<Result<(usize, Duration), E>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..clients)
                .map(|client| {
                    let (barrier, connect, run) = (&barrier, &connect, &run);
                    s.spawn(move || {
                        let connection = connect();
                        // Every client waits for the others, connected or not, so none is
                        // left waiting on one that failed.
                        barrier.wait();
                        let mut connection = connection?;
                        let started = Instant::now();
                        let mut sent = 0;
                        while queries > 0 && started.elapsed() < QPS_WINDOW {
                            run(&mut connection, (client + sent * clients) % queries)?;
                            sent += 1;
                        }
                        Ok((sent, started.elapsed()))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut sent = 0;
        let mut longest = Duration::ZERO;
        for count in counts {
            let (n, took) = count?;
            sent += n;
            longest = longest.max(took);
        }
        Ok(Latency {
            queries,
            p50_ms: percentile(0.50),
            p95_ms: percentile(0.95),
            clients,
            qps: sent as f64 / longest.as_secs_f64().max(1e-9),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_the_expected_ids_found() {
        let k = PointKey::Num;
        let expected = vec![vec![k(1), k(2)], vec![k(3), k(4)], vec![]];
        let answers = vec![vec![k(2), k(9)], vec![k(4), k(3)], vec![k(5)]];
        assert_eq!(recall(&expected, &answers), 0.75);
        assert_eq!(recall(&[vec![]], &[vec![k(1)]]), 1.0);
    }

    #[test]
    fn latency_takes_percentiles_of_single_queries_and_counts_concurrent_ones() {
        let latency = Latency::measure(
            20,
            2,
            || Ok::<_, ()>(()),
            |_, i| {
                std::thread::sleep(Duration::from_micros(if i == 19 { 3000 } else { 100 }));
                Ok(())
            },
        )
        .expect("no failure");
        assert!(latency.p50_ms < 2.0, "{latency:?}");
        assert!(latency.p95_ms >= latency.p50_ms, "{latency:?}");
        assert!(latency.qps > 0.0 && latency.clients == 2, "{latency:?}");
        let failed = Latency::measure(3, 2, || Ok::<_, &str>(()), |_, _| Err("down"));
        assert_eq!(failed.map(|_| ()), Err("down"));
    }
}
