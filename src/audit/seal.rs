//! Sealed files stay sealed: a file sink whose file ends with a sealing
//! checkpoint (`close`, `rotate`) never takes another line into that file.
//!
//! A file whose last line seals it at open is rotated aside (renamed to
//! `<path>.<UTC time>`, as rotation does) by the first delivery into it,
//! and a new file is started; the chain continues across files. While running, a line that follows a
//! sealing checkpoint goes to a new file: the writer normally rotates
//! right after writing one, but when the file could not take the
//! checkpoint at once (a full disk) it arrives later with the lines after
//! it, and is split here. docs/AUDIT.md, "Sealed files".

use std::io::{self, BufRead, Read};
use std::path::Path;
use std::sync::Arc;

use super::chain::is_final_framed;
use super::config::SinkConfig;
use super::file::{FileSink, Resume};
use super::sink::Sink;

/// Longest line read when looking for a file's first seq.
const MAX_LINE: u64 = 1024 * 1024;

/// A [`FileSink`] that never writes after a sealing checkpoint.
pub(crate) struct SealedFile {
    inner: FileSink,
    /// The file ends with a sealing checkpoint: rotate before writing.
    sealed: bool,
}

impl SealedFile {
    /// Opens the file of `config`; a file its last line seals is rotated
    /// aside first. The resume names the first seq of the file the next
    /// line goes to (`None`: a new file).
    pub(crate) fn open(config: &SinkConfig) -> io::Result<(SealedFile, Resume)> {
        let (inner, mut resume) = FileSink::open(config)?;
        // A sealed file is rotated aside lazily, by the first delivery
        // into it: a start that fails (another sink) or dies before
        // writing leaves it at its path, so the next start resumes the
        // chain from it (a rename first would leave an empty file there
        // and restart the chain at seq 0).
        if resume.last_final {
            resume.first_seq = None;
        } else if let SinkConfig::File { path, .. } = config {
            resume.first_seq = first_seq(path)?;
        }
        Ok((
            SealedFile {
                inner,
                sealed: resume.last_final,
            },
            resume,
        ))
    }
}

impl SealedFile {
    /// Leaves the sealed file: followed by its path when it was moved (or
    /// deleted), rotated aside when it is still there.
    fn unseal(&mut self) -> io::Result<()> {
        if self.inner.moved() {
            self.inner.reopen()?;
        } else {
            self.inner.rotate()?;
        }
        self.sealed = false;
        Ok(())
    }
}

/// The seq of the first chained line of the file at `path` (a torn
/// fragment or two before it are skipped); `None` for an empty file.
fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut r = io::BufReader::new(std::fs::File::open(path)?);
    for _ in 0..4 {
        let mut line = Vec::new();
        if (&mut r).take(MAX_LINE).read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        let seq = serde_json::from_slice::<serde_json::Value>(line.trim_ascii_end())
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_u64));
        if seq.is_some() {
            return Ok(seq);
        }
    }
    Ok(None)
}

impl Sink for SealedFile {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while done < lines.len() {
            if self.sealed {
                self.unseal().map_err(|e| (done, e))?;
            }
            let end = lines[done..]
                .iter()
                .position(|l| is_final_framed(l))
                .map_or(lines.len(), |i| done + i + 1);
            self.inner
                .deliver(&lines[done..end])
                .map_err(|(n, e)| (done + n, e))?;
            self.sealed = lines.get(end - 1).is_some_and(|l| is_final_framed(l));
            done = end;
        }
        Ok(())
    }

    fn tick(&mut self) -> Option<serde_json::Map<String, serde_json::Value>> {
        self.inner.tick()
    }

    fn take_new_file(&mut self) -> Option<u64> {
        self.inner.take_new_file()
    }

    fn rotate_due(&self) -> bool {
        self.inner.rotate_due()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.inner.rotate()?;
        self.sealed = false;
        Ok(())
    }

    /// SIGHUP: a moved file is followed by its path; a sealed file still at
    /// its path is rotated aside.
    fn reopen(&mut self) -> io::Result<()> {
        if self.sealed {
            self.unseal()
        } else {
            self.inner.reopen()
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }

    fn moved(&self) -> bool {
        self.inner.moved()
    }

    fn sealed(&self) -> bool {
        self.sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> SinkConfig {
        let text = format!(
            "[[sink]]\nkind = \"file\"\npath = \"{}\"\n",
            dir.join("audit.jsonl").display()
        );
        let c: super::super::AuditConfig = toml::from_str(&text).expect("config");
        c.effective_sinks().remove(0)
    }

    /// The audit files in `dir`: rotated ones (name order), then the live one.
    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort_by_key(|n| (n == "audit.jsonl", n.clone()));
        names
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).expect("read"))
            .collect()
    }

    const REC: &str = r#"{"seq":0,"type":"request","prev":"x"}"#;
    const SEAL: &str = r#"{"seq":1,"type":"checkpoint","reason":"rotate","prev":"x"}"#;
    const NEXT: &str = r#"{"seq":2,"type":"event","prev":"x"}"#;

    #[test]
    fn a_line_after_a_seal_goes_to_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut sink, resume) = SealedFile::open(&config(dir.path())).expect("open");
        assert_eq!(resume.first_seq, None);
        // The rotate checkpoint arrives with the lines after it (the file
        // could not take it at once): the file is split after it.
        let lines: Vec<Arc<str>> = [REC, SEAL, NEXT].iter().map(|l| Arc::from(*l)).collect();
        sink.deliver(&lines).expect("deliver");
        assert!(!sink.sealed());
        assert_eq!(
            files(dir.path()),
            [format!("{REC}\n{SEAL}\n"), format!("{NEXT}\n")]
        );
    }

    #[test]
    fn a_file_sealed_before_the_start_is_rotated_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, format!("{REC}\n{SEAL}\n")).expect("write");
        let (mut sink, resume) = SealedFile::open(&config(dir.path())).expect("open");
        assert!(resume.last_final);
        assert_eq!(resume.first_seq, None, "a new file");
        assert_eq!(resume.last.map(|(s, _)| s), Some(1), "the chain goes on");
        sink.deliver(&[Arc::from(NEXT)]).expect("deliver");
        assert_eq!(
            files(dir.path()),
            [format!("{REC}\n{SEAL}\n"), format!("{NEXT}\n")]
        );
        // A file that does not end sealed (killed) is continued.
        drop(sink);
        let (_, resume) = SealedFile::open(&config(dir.path())).expect("open");
        assert!(!resume.last_final);
        assert_eq!(resume.first_seq, Some(2));
    }

    /// Audit files of `dir` in trail order, verified with `key`.
    fn verify_dir(dir: &Path, key: &ed25519_dalek::SigningKey) -> super::super::chain::Report {
        let vk = key.verifying_key();
        let mut v = super::super::chain::Verifier::new(Some(&vk));
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("audit.jsonl"))
            .collect();
        names.sort_by_key(|n| (n == "audit.jsonl", n.clone()));
        for n in names {
            v.start_file(&n);
            let text = std::fs::read_to_string(dir.join(&n)).expect("read");
            for (i, l) in text.lines().enumerate() {
                v.line(&format!("{n}:{}", i + 1), l.as_bytes());
            }
        }
        v.finish()
    }

    fn run(config: &super::super::AuditConfig, key: &ed25519_dalek::SigningKey, records: usize) {
        let log = super::super::AuditLog::open(config, Some(key.clone())).expect("open");
        for _ in 0..records {
            let mut r = super::super::AuditRecord::new();
            r.method = Some("ping");
            r.outcome = super::super::Outcome::Allowed;
            log.write(&r);
        }
        log.close();
    }

    #[test]
    fn a_failed_start_leaves_a_sealed_file_at_its_path_and_the_chain_goes_on() {
        // Review F3: a start that fails after the first file sink opened
        // (here a second file sink in a missing folder) must not leave an
        // empty file at the path: the next start would restart at seq 0.
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let path = dir.path().join("audit.jsonl");
        let first = format!("[[sink]]\nkind = \"file\"\npath = \"{}\"\n", path.display());
        let cfg = |t: &str| toml::from_str::<super::super::AuditConfig>(t).expect("config");
        run(&cfg(&first), &key, 2);
        let two = format!(
            "{first}[[sink]]\nkind = \"file\"\npath = \"{}\"\n",
            dir.path().join("missing/x.jsonl").display()
        );
        assert!(super::super::AuditLog::open(&cfg(&two), Some(key.clone())).is_err());
        run(&cfg(&first), &key, 1);
        let r = verify_dir(dir.path(), &key);
        assert_eq!(r.broken, None);
        assert!(r.sealed, "{r:?}");
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files[1].first_seq, r.files[0].last_seq.map(|s| s + 1));
    }

    #[test]
    fn files_rotate_by_size_without_a_key() {
        // Review F4: without signing_key there is no rotate checkpoint;
        // size rotation must happen all the same.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let text = format!(
            "[[sink]]\nkind = \"file\"\npath = \"{}\"\nrotate_bytes = 4096\n",
            path.display()
        );
        let config: super::super::AuditConfig = toml::from_str(&text).expect("config");
        let log = super::super::AuditLog::open(&config, None).expect("open");
        let rotated = || {
            std::fs::read_dir(dir.path())
                .expect("dir")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("audit.jsonl."))
                })
                .count()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while rotated() < 2 && std::time::Instant::now() < deadline {
            for _ in 0..10 {
                let mut r = super::super::AuditRecord::new();
                r.method = Some("ping");
                r.outcome = super::super::Outcome::Allowed;
                log.write(&r);
            }
            log.flush();
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        log.close();
        assert!(rotated() >= 2, "no size rotation without a key");
        assert!(std::fs::metadata(&path).expect("live file").len() < 2 * 4096);
    }

    #[test]
    fn a_sighup_after_mv_and_a_stop_in_one_batch_verify_sealed() {
        // Review F10a: Reopen and Close handled together with the file
        // moved: the moved file is sealed with `rotate`, the new one gets
        // its own `start` and `close` (not a head that is not its own).
        let dir = tempfile::tempdir().expect("tempdir");
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let path = dir.path().join("audit.jsonl");
        let text = format!("[[sink]]\nkind = \"file\"\npath = \"{}\"\n", path.display());
        let config: super::super::AuditConfig = toml::from_str(&text).expect("config");
        let log = super::super::AuditLog::open(&config, Some(key.clone())).expect("open");
        let mut r = super::super::AuditRecord::new();
        r.method = Some("ping");
        log.write(&r);
        log.flush();
        std::fs::rename(&path, dir.path().join("audit.jsonl.moved")).expect("mv");
        let writer = log.fast.clone().expect("a local file writer");
        writer.lock().expect("writer").process(vec![
            super::super::writer::Entry::Reopen,
            super::super::writer::Entry::Close,
        ]);
        log.close();
        let r = verify_dir(dir.path(), &key);
        assert_eq!(r.broken, None);
        assert!(r.sealed, "{r:?}");
    }
}
