//! Whether a backend's account may execute its command: every directory
//! on the way searchable, the file executable (and readable, for a script
//! its interpreter reads), by the account's own user and primary group
//! (supplementary groups are cleared before the backend runs). Used by
//! `check-config`, so that a command the account cannot run (a pyenv shim
//! under `/root`) is named before the gateway starts, not as a backend that
//! will not initialize.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether `uid`/`gid` hold `bit` (4 read, 1 execute/search) on `meta`.
fn allowed(meta: &std::fs::Metadata, uid: u32, gid: u32, bit: u32) -> bool {
    let mode = meta.mode();
    let shift = if meta.uid() == uid {
        6
    } else if meta.gid() == gid {
        3
    } else {
        0
    };
    mode >> shift & bit != 0
}

/// `Ok` when `uid`/`gid` can execute `program` (a path); else what stops it.
pub fn account_can_execute(program: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let real = std::fs::canonicalize(program).map_err(|e| format!("{}: {e}", program.display()))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    let mode = |m: &std::fs::Metadata| {
        format!(
            "mode {:o}, owner {}:{}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        )
    };
    if uid == 0 {
        // Root searches every directory and runs a file with any x bit.
        return if meta.mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err(format!(
                "{} is not executable ({})",
                real.display(),
                mode(&meta)
            ))
        };
    }
    // The path as written and the file it leads to: both are walked.
    let mut dirs: Vec<&Path> = program.ancestors().skip(1).collect();
    dirs.extend(real.ancestors().skip(1));
    for dir in dirs.into_iter().filter(|d| !d.as_os_str().is_empty()) {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        if !allowed(&m, uid, gid, 1) {
            return Err(format!(
                "{} is not searchable by uid {uid} gid {gid} ({})",
                dir.display(),
                mode(&m)
            ));
        }
    }
    if !allowed(&meta, uid, gid, 1) {
        return Err(format!(
            "{} is not executable by uid {uid} gid {gid} ({})",
            real.display(),
            mode(&meta)
        ));
    }
    let script = std::fs::File::open(&real).ok().is_some_and(|f| {
        use std::io::Read as _;
        let mut head = [0u8; 2];
        f.take(2).read_exact(&mut head).is_ok() && &head == b"#!"
    });
    if script && !allowed(&meta, uid, gid, 4) {
        return Err(format!(
            "{} is a script that uid {uid} gid {gid} cannot read ({})",
            real.display(),
            mode(&meta)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_or_file_mode_stops_another_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = nix::unistd::geteuid().as_raw();
        let my_gid = nix::unistd::getegid().as_raw();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).expect("mkdir");
        let script = private.join("server");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("script");
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        set(dir.path(), 0o755);
        set(&private, 0o700);
        set(&script, 0o755);
        let other = me.wrapping_add(12345);
        let other_gid = my_gid.wrapping_add(12345);
        assert_eq!(account_can_execute(&script, me, my_gid), Ok(()));
        let err = account_can_execute(&script, other, other_gid).expect_err("0700 directory");
        assert!(err.contains("private is not searchable by uid"), "{err}");
        set(&private, 0o711);
        assert_eq!(account_can_execute(&script, other, other_gid), Ok(()));
        set(&script, 0o711);
        let err = account_can_execute(&script, other, other_gid).expect_err("unreadable script");
        assert!(err.contains("is a script that uid"), "{err}");
        set(&script, 0o744);
        let err = account_can_execute(&script, other, other_gid).expect_err("no x for others");
        assert!(err.contains("is not executable by uid"), "{err}");
        set(&script, 0o644);
        assert!(account_can_execute(&script, 0, 0).is_err());
        assert!(account_can_execute(&dir.path().join("missing"), me, my_gid).is_err());
    }
}
