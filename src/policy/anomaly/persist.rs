//! Blocks that outlive the process: every block imposed here (not those
//! mirrored from the shared store, which are the store's) is kept in a
//! local file, written atomically (0600, fsynced, renamed) by a background
//! task shortly after every change, and read back at start. So a restart
//! lifts no block, including those meant to last until an operator
//! unblocks; an unblock is written the same way, so it survives a restart
//! too. Ended blocks are dropped when the file is read. The file's format
//! and the checks made when reading it are [`super::blocks_file`]'s.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::blocks_file::{read, BlocksFile, Persist, SavedBlock, WriteFile};
use super::identity::IdentityState;
use super::restriction::{detector_name, Imposed};
use super::sources::{source_key, source_text};
use super::tracker::{lock, Anomaly};

/// How long the writer waits after a write before the next one, so a burst
/// of changes costs one write.
const COALESCE: Duration = Duration::from_millis(100);

impl Anomaly {
    /// Restores the blocks kept in `path` (none if it does not exist yet),
    /// then keeps it up to date: a background task rewrites it after every
    /// change of a block. Returns how many blocks were restored. Call once,
    /// at start, inside the runtime.
    pub fn persist_blocks(
        self: &Arc<Self>,
        path: &Path,
        write: WriteFile,
        now_ms: i64,
    ) -> Result<usize, String> {
        let restored = match read(path)? {
            Some(file) => {
                // More than the maps hold was not written by this gateway
                // (and restoring it would cost a scan per extra entry).
                let room = self
                    .config
                    .max_identities
                    .saturating_add(self.config.max_sources);
                if file.blocks.len() > room {
                    return Err(format!(
                        "anomaly blocks file {}: {} blocks, more entries than the maps hold ({room}); not a file this gateway wrote",
                        path.display(),
                        file.blocks.len()
                    ));
                }
                self.restore(file, now_ms)
            }
            None => 0,
        };
        let persist = Arc::new(Persist {
            path: path.to_path_buf(),
            write,
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        });
        if self.persist.set(persist.clone()).is_err() {
            return Err("the blocks file is already set".into());
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(writer(Arc::downgrade(self), persist));
        }
        if restored > 0 {
            tracing::info!(
                file = %path.display(),
                restored,
                "anomaly blocks restored from the blocks file"
            );
        }
        Ok(restored)
    }

    /// Writes the blocks file now (the task does it after every change).
    pub fn save_blocks(&self) -> Result<(), String> {
        let Some(p) = self.persist.get() else {
            return Ok(());
        };
        p.dirty.store(false, Ordering::Release);
        let result = serde_json::to_vec_pretty(&self.snapshot())
            .map_err(|e| e.to_string())
            .and_then(|text| (p.write)(&p.path, &text));
        if result.is_err() {
            p.dirty.store(true, Ordering::Release);
        }
        result
    }

    /// Every block imposed here, identities then sources.
    fn snapshot(&self) -> BlocksFile {
        let mut blocks = Vec::new();
        let saved = |subject: &str, id: String, b: &Imposed| SavedBlock {
            subject: subject.to_string(),
            id,
            detector: b.detector.to_string(),
            since_ms: b.since_ms,
            until_ms: b.until_ms,
        };
        for (id, s) in lock(&self.identities).iter() {
            if let Some(b) = s.block.as_ref().filter(|b| !b.mirrored) {
                blocks.push(saved("identity", id.clone(), b));
            }
        }
        for (ip, s) in lock(&self.sources).iter() {
            if let Some(b) = s.block.as_ref().filter(|b| !b.mirrored) {
                blocks.push(saved("source", source_text(*ip), b));
            }
        }
        BlocksFile { version: 1, blocks }
    }

    /// Imposes the file's blocks that have not ended, as imposed here (so
    /// a shared store gets them again at their first re-check, unless an
    /// operator lifted them there meanwhile).
    fn restore(&self, file: BlocksFile, now_ms: i64) -> usize {
        let mut restored = 0;
        for b in file.blocks {
            if b.until_ms.is_some_and(|u| now_ms >= u) {
                continue;
            }
            let imposed = Imposed {
                detector: detector_name(&b.detector),
                since_ms: b.since_ms,
                until_ms: b.until_ms,
                checked_ms: now_ms,
                mirrored: false,
            };
            match b.subject.as_str() {
                "identity" if !b.id.is_empty() && b.id.len() <= 256 => {
                    let mut map = lock(&self.identities);
                    if !map.contains_key(&b.id) && !self.make_room(&mut map) {
                        continue;
                    }
                    map.entry(b.id)
                        .or_insert_with(|| IdentityState::new(now_ms))
                        .block = Some(imposed);
                }
                "source" => {
                    let Ok(ip) = b.id.trim_end_matches("/64").parse::<IpAddr>() else {
                        continue;
                    };
                    let mut map = lock(&self.sources);
                    let key = source_key(ip);
                    if !map.contains_key(&key) && !map.make_room(self.config.max_sources, now_ms) {
                        continue;
                    }
                    map.get_or_insert(key, now_ms).block = Some(imposed);
                }
                _ => continue,
            }
            restored += 1;
        }
        restored
    }
}

/// The background writer: one write per burst of changes, retried while it
/// fails (after 1 s, doubling to a minute; the blocks hold in memory
/// meanwhile).
async fn writer(anomaly: Weak<Anomaly>, persist: Arc<Persist>) {
    let mut retry = Duration::from_secs(1);
    loop {
        persist.wake.notified().await;
        loop {
            if !persist.dirty.load(Ordering::Acquire) {
                break;
            }
            let Some(a) = anomaly.upgrade() else { return };
            let written = tokio::task::spawn_blocking(move || a.save_blocks()).await;
            match written {
                Ok(Ok(())) => {
                    retry = Duration::from_secs(1);
                    tokio::time::sleep(COALESCE).await
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, retry_secs = retry.as_secs(), "the anomaly blocks file could not be written; blocks hold in memory and the write is retried");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(60));
                }
                Err(_) => return,
            }
        }
    }
}
