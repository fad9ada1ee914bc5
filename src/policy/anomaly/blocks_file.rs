//! The blocks file's format and how it is read: the file is the gateway's
//! own state, so a file that does not parse, or that others than its owner
//! may write, stops the start (what it says cannot be trusted, and ignoring
//! it would lift every block). Keeping it up to date is `persist`'s.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// The file's largest accepted size: far above the blocks the bounded
/// maps can hold.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The file: its format version and every block imposed here.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlocksFile {
    pub(super) version: u32,
    pub(super) blocks: Vec<SavedBlock>,
}

/// One block as the file keeps it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedBlock {
    /// `identity` or `source`.
    pub(super) subject: String,
    /// The client id, or the source as records name it.
    pub(super) id: String,
    pub(super) detector: String,
    pub(super) since_ms: i64,
    pub(super) until_ms: Option<i64>,
}

/// How the file is replaced: atomically, at mode 0600 (the caller passes
/// `crate::keys::replace_atomically`, which this module cannot import
/// without a cycle).
pub type WriteFile = fn(&Path, &[u8]) -> Result<(), String>;

/// Where blocks are kept, and whether they changed since the last write.
pub(super) struct Persist {
    pub(super) path: PathBuf,
    pub(super) write: WriteFile,
    /// Blocks changed since the last write.
    pub(super) dirty: AtomicBool,
    /// Wakes the writer task.
    pub(super) wake: tokio::sync::Notify,
}

impl Persist {
    /// A block was imposed or lifted: the file is to be rewritten soon.
    pub(super) fn changed(&self) {
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// `sealgate check-config`: whether the blocks file at `path` would be
/// read at start (a missing one is fine); returns the blocks it holds.
pub fn check_blocks_file(path: &Path) -> Result<usize, String> {
    Ok(read(path)?.map_or(0, |f| f.blocks.len()))
}

/// Reads the file: `None` if it does not exist. Refused: a folder others
/// than its owner may write (another account could put its own file in
/// place), a symbolic link (not followed: `O_NOFOLLOW`), a file not owned
/// by the gateway's user or that others may write, one that is not a
/// regular file of at most [`MAX_FILE_BYTES`].
pub(super) fn read(path: &Path) -> Result<Option<BlocksFile>, String> {
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
