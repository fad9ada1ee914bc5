//! Writing the enrolled-keys file (`[registry] enrolled_keys`, read by
//! [`crate::identity::enrolled`]): atomically, under an advisory lock held
//! from reading the file to writing it.

use std::path::PathBuf;

use crate::enroll::reasons::{internal, Refused};
use crate::identity::EnrolledKeys;

const ENROLLED_HEADER: &str =
    "# Written by sealgate's enrollment service (Enroll, Renew): the signing\n\
# keys it registered, and until when the keys they replaced keep working.\n\
# Public data only. Merged into the client registry at every load; a key of\n\
# a client the registry does not list is ignored.\n\n";

/// Writes the enrolled-keys file atomically (a reader sees the old or the
/// new one, never a mix).
pub fn store_enrolled(keys: &EnrolledKeys, path: &std::path::Path) -> Result<(), String> {
    let body = toml::to_string(keys).map_err(|e| e.to_string())?;
    crate::keys::replace_atomically(path, format!("{ENROLLED_HEADER}{body}").as_bytes(), 0o644)
        .map_err(|e| e.to_string())
}

/// How long a write waits for another writer's lock on the enrolled-keys
/// file before it is refused (`INTERNAL`).
const ENROLLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The advisory lock (`flock`, exclusive) on `<enrolled-keys file>.lock`,
/// held from reading the file to writing it: another writer (`sealgate ca
/// serve` beside a gateway with `[enrollment]`, a replica on shared
/// storage, an operator editing by hand under `flock`) cannot interleave
/// and lose a `[[retire]]` or revive a removed key. Waits at most
/// [`ENROLLED_LOCK_WAIT`], without blocking a runtime thread.
pub(super) async fn lock_enrolled(
    path: &std::path::Path,
) -> Result<nix::fcntl::Flock<std::fs::File>, Refused> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::OpenOptionsExt;
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let deadline = tokio::time::Instant::now() + ENROLLED_LOCK_WAIT;
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&lock_path)
            .map_err(|e| internal("the enrolled-keys lock file cannot be opened", e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => return Ok(held),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err((_, e)) => {
                return Err(internal(
                    "the enrolled-keys file is locked by another writer",
                    e,
                ))
            }
        }
    }
}
