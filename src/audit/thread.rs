//! The writer's thread: drains the queue in batches, ticks in between,
//! and turns a panic into a gateway that refuses calls
//! (AUDIT_UNAVAILABLE), never one that serves without records.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::transparency::Transparency;
use super::writer::{Entry, Writer};

/// The thread's loop; a bug that panics in it leaves the gateway
/// refusing calls (AUDIT_UNAVAILABLE), never serving without records.
/// The writer is shared with the request path's fast path
/// ([`Writer::append_now`], [`Writer::finish_now`]); the thread holds it only per batch.
pub(crate) fn run(writer: Arc<Mutex<Writer>>, rx: Receiver<Entry>) {
    let shared = match writer.lock() {
        Ok(w) => w.shared.clone(),
        Err(_) => return,
    };
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&writer, rx)));
    if ran.is_err() {
        shared.available.store(false, Ordering::Release);
        tracing::error!("the audit writer failed; every call is refused with AUDIT_UNAVAILABLE until the gateway restarts");
    }
}

/// Stores the Merkle log's staged leaves (tile writes and fsyncs) outside
/// the writer's lock, so the request path's fast path never waits on
/// them; a failure is logged once and retried at the next tick.
/// Only when [`Transparency::store_due`] says so (or to retry a failed
/// store): a store writes and fsyncs a few files whatever it holds.
fn store(log: Option<Arc<Transparency>>, failing: &mut bool, last: &mut Instant, force: bool) {
    let Some(log) = log else { return };
    if !(force || *failing || log.store_due(last.elapsed())) {
        return;
    }
    *last = Instant::now();
    match log.flush() {
        Ok(_) if *failing => {
            *failing = false;
            tracing::info!("audit Merkle log stores its leaves again");
        }
        Ok(_) => {}
        Err(e) => {
            if !*failing {
                tracing::error!(error = %e, "audit Merkle log could not store its leaves; retried at every tick");
            }
            *failing = true;
        }
    }
}

/// Batches from the queue, ticks in between; the writer is locked per
/// batch, so the request path's fast path waits at most for one batch (it
/// does not wait: it queues instead).
fn serve(writer: &Mutex<Writer>, rx: Receiver<Entry>) {
    let tick = Duration::from_millis(20);
    let mut last_tick = Instant::now();
    let mut last_store = Instant::now();
    let mut failing = false;
    // A poisoned lock (a panic while a request held the writer on the
    // fast path) is a writer whose state cannot be trusted: `None`, and
    // the gateway refuses calls from then on.
    let lock = || writer.lock().ok();
    loop {
        let first = match rx.recv_timeout(tick) {
            Ok(e) => Some(e),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(mut w) = lock() {
                    w.close();
                    store(w.stage_leaves(), &mut failing, &mut last_store, true);
                }
                return;
            }
        };
        let mut batch: Vec<Entry> = first.into_iter().collect();
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let Some(mut w) = lock() else {
            std::panic::panic_any("the audit writer's state was poisoned by a panic");
        };
        w.shared
            .queued
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        w.process(batch);
        if w.closed {
            store(w.stage_leaves(), &mut failing, &mut last_store, true);
            return;
        }
        if last_tick.elapsed() >= tick {
            w.tick();
            let log = w.stage_leaves();
            drop(w);
            store(log, &mut failing, &mut last_store, false);
            last_tick = Instant::now();
        }
    }
}
