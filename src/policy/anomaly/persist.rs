//! Blocks that outlive the process: every block imposed here (not those
//! mirrored from the shared store, which are the store's) is kept in a
//! local file, written atomically (0600, fsynced, renamed) by a background
//! task shortly after every change, and read back at start. So a restart
//! lifts no block, including those meant to last until an operator
//! unblocks; an unblock is written the same way, so it survives a restart
//! too. Ended blocks are dropped when the file is read.
//!
//! The file is the gateway's own state: a file that does not parse, or
//! that others than its owner may write, stops the start (what it says
//! cannot be trusted, and ignoring it would lift every block).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{detector_name, lock, source_key, source_text, Anomaly, IdentityState, Imposed};

/// The file's largest accepted size: far above the blocks the bounded
/// maps can hold.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// How long the writer waits after a write before the next one, so a burst
/// of changes costs one write.
const COALESCE: Duration = Duration::from_millis(100);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocksFile {
    version: u32,
    blocks: Vec<SavedBlock>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedBlock {
    /// `identity` or `source`.
    subject: String,
    /// The client id, or the source as records name it.
    id: String,
    detector: String,
    since_ms: i64,
    until_ms: Option<i64>,
}

/// How the file is replaced: atomically, at mode 0600 (the caller passes
/// `crate::keys::replace_atomically`, which this module cannot import
/// without a cycle).
pub type WriteFile = fn(&Path, &[u8]) -> Result<(), String>;

/// Where blocks are kept, and whether they changed since the last write.
pub(super) struct Persist {
    path: PathBuf,
    write: WriteFile,
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
}

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

    /// A block was imposed or lifted: the file is rewritten soon.
    pub(super) fn blocks_changed(&self) {
        if let Some(p) = self.persist.get() {
            p.dirty.store(true, Ordering::Release);
            p.wake.notify_one();
        }
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

/// `sealgate check-config`: whether the blocks file at `path` would be
/// read at start (a missing one is fine); returns the blocks it holds.
pub fn check_blocks_file(path: &Path) -> Result<usize, String> {
    Ok(read(path)?.map_or(0, |f| f.blocks.len()))
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

/// Reads the file: `None` if it does not exist. Refused: a folder others
/// than its owner may write (another account could put its own file in
/// place), a symbolic link (not followed: `O_NOFOLLOW`), a file not owned
/// by the gateway's user or that others may write, one that is not a
/// regular file of at most [`MAX_FILE_BYTES`].
fn read(path: &Path) -> Result<Option<BlocksFile>, String> {
    use std::io::Read;
    let shown = path.display();
    check_folder(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "anomaly blocks file {shown}: is a symbolic link; it must be the gateway's own regular file"
            ))
        }
        Err(e) => return Err(format!("anomaly blocks file {shown}: cannot read ({e})")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("anomaly blocks file {shown}: cannot read ({e})"))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "anomaly blocks file {shown}: not a regular file of at most {MAX_FILE_BYTES} bytes"
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "anomaly blocks file {shown}: writable by group or others; it must be 0600"
            ));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "anomaly blocks file {shown}: owned by uid {}, not by the gateway's user (uid {me}); only a file the gateway wrote is read",
                meta.uid()
            ));
        }
    }
    let mut text = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("anomaly blocks file {shown}: cannot read ({e})"))?;
    let file: BlocksFile = serde_json::from_slice(&text).map_err(|e| {
        format!("anomaly blocks file {shown}: not a blocks file ({e}); fix or remove it (removing it lifts every block it holds)")
    })?;
    if file.version != 1 {
        return Err(format!(
            "anomaly blocks file {shown}: version {} is not supported",
            file.version
        ));
    }
    Ok(Some(file))
}

/// The file's folder: it must exist, be writable by the gateway (else no
/// block would survive a restart, silently) and by no one else.
fn check_folder(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shown = dir.display();
    let meta = std::fs::metadata(dir).map_err(|e| {
        format!("anomaly blocks file folder {shown}: cannot be used ({e}); set [anomaly] blocks_file to a file in a folder only the gateway writes")
    })?;
    if !meta.is_dir() {
        return Err(format!("anomaly blocks file folder {shown}: not a folder"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(format!(
                "anomaly blocks file folder {shown}: writable by group or others, who could put their own blocks file in place; make it 0700 or 0750, or set [anomaly] blocks_file elsewhere"
            ));
        }
    }
    // Writable by the gateway: a file that cannot be written would lose
    // every block at the next restart.
    let probe = dir.join(format!(
        ".anomaly-blocks.{}.probe",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "anomaly blocks file folder {shown}: not writable by the gateway ({e}), so no block would survive a restart; set [anomaly] blocks_file to a file in a writable folder (under deploy/systemd/sealgate.service, the audit folder /var/lib/sealgate/audit, the one it may write)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::check_blocks_file;

    const ONE_BLOCK: &str = r#"{"version":1,"blocks":[{"subject":"identity","id":"demo","detector":"denials","since_ms":0,"until_ms":null}]}"#;

    fn folder() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn write(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, ONE_BLOCK).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn the_gateways_own_file_is_read() {
        let dir = folder();
        let path = dir.path().join("anomaly-blocks.json");
        write(&path);
        assert_eq!(check_blocks_file(&path), Ok(1));
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let dir = folder();
        let target = dir.path().join("elsewhere.json");
        write(&target);
        let path = dir.path().join("anomaly-blocks.json");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let e = check_blocks_file(&path).expect_err("a link is refused");
        assert!(e.contains("is a symbolic link"), "{e}");
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            // Only root can give a file away; CI runs these as root.
            return;
        }
        let dir = folder();
        let path = dir.path().join("anomaly-blocks.json");
        write(&path);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
        let e = check_blocks_file(&path).expect_err("a foreign file is refused");
        assert!(e.contains("owned by uid 65534"), "{e}");
    }

    #[test]
    fn a_folder_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = folder();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let path = dir.path().join("anomaly-blocks.json");
        write(&path);
        let e = check_blocks_file(&path).expect_err("a shared folder is refused");
        assert!(e.contains("writable by group or others"), "{e}");
        // Even before the file exists.
        std::fs::remove_file(&path).expect("rm");
        assert!(check_blocks_file(&path).is_err());
    }

    #[test]
    fn a_folder_the_gateway_cannot_write_is_refused() {
        let path = std::path::Path::new("/proc/sealgate-anomaly-blocks.json");
        let e = check_blocks_file(path).expect_err("an unwritable folder is refused");
        assert!(e.contains("not writable by the gateway"), "{e}");
    }
}
