//! Reading in parallel: cursors → bounded page queue → page workers.
//!
//! One function serves every command that reads points (export, migrate): it runs `cursors`
//! threads, each with its own [`PageReader`], feeding a bounded queue drained by `workers`
//! threads that call the command's page handler (encode and write, or encode and stream). A
//! failure reading or handling a page fails that page's collection only (the scheduler drops
//! the rest of its work, the workers skip its queued pages); every other collection is read to
//! its end, and the failed ones come back by name. Only a failure that concerns every
//! collection — Qdrant unreachable, a thread that cannot start — stops the run.
//!
//! Memory: the queue holds at most `cursors × PAGES_QUEUED_PER_CURSOR` pages, each cursor one
//! more in flight, each worker one being handled — independent of the collection's size.

use std::sync::Mutex;

use anyhow::Context;
use crossbeam_channel::bounded;

use crate::source::cursor::{CollectionFailure, PageBatch, Scheduler};
use crate::source::page::PageReader;

/// Pages queued per cursor. Two keep each cursor's next request going while the workers
/// handle the previous page; more only adds memory.
const PAGES_QUEUED_PER_CURSOR: usize = 2;

/// Opens one reader per cursor thread.
pub type OpenReader<'a> = dyn Fn() -> anyhow::Result<Box<dyn PageReader>> + Sync + 'a;

/// Reads everything the scheduler hands out, calling `handle` on worker threads for each page.
/// Returns the collections that failed (see the module docs), or the error that stopped the
/// whole run.
pub fn read_parallel<H>(
    scheduler: &Scheduler,
    open: &OpenReader<'_>,
    collections: &[String],
    cursors: usize,
    page_size: u32,
    workers: usize,
    handle: H,
) -> anyhow::Result<Vec<CollectionFailure>>
where
    H: Fn(PageBatch) -> anyhow::Result<()> + Sync,
{
    let cursors = cursors.max(1);
    let workers = workers.max(1);
    let (pages_tx, pages_rx) = bounded::<PageBatch>(cursors * PAGES_QUEUED_PER_CURSOR);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("worker-{i}"))
        .build()
        .context("cannot start the worker threads")?;
    let errors = Mutex::new(Vec::<anyhow::Error>::new());
    let fail = |err: anyhow::Error| {
        scheduler.stop();
        errors.lock().unwrap_or_else(|e| e.into_inner()).push(err);
    };
    std::thread::scope(|s| {
        for i in 0..cursors {
            let pages_tx = pages_tx.clone();
            let fail = &fail;
            let cursor = move || {
                let result = open().and_then(|reader| {
                    scheduler
                        .run_cursor(reader.as_ref(), collections, page_size, &pages_tx)
                        .map_err(|e| anyhow::Error::from(*e))
                });
                if let Err(err) = result {
                    fail(err);
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name(format!("cursor-{i}"))
                .spawn_scoped(s, cursor)
            {
                fail(anyhow::Error::from(e).context("cannot start a cursor thread"));
            }
        }
        drop(pages_tx);
        pool.scope(|ps| {
            for _ in 0..workers {
                let pages_rx = pages_rx.clone();
                let handle = &handle;
                ps.spawn(move |_| {
                    for batch in pages_rx.iter() {
                        let collection = batch.collection;
                        if scheduler.gave_up(collection) {
                            continue;
                        }
                        if let Err(err) = handle(batch) {
                            scheduler.fail(collection, err);
                        }
                    }
                });
            }
        });
        // Every worker has stopped: unblock cursors still sending.
        drop(pages_rx);
    });
    let mut errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if errors.is_empty() {
        return Ok(scheduler.failures());
    }
    let first = errors.remove(0);
    match errors.len() {
        0 => Err(first),
        more => Err(first.context(format!("{more} more error(s) after this one"))),
    }
}
