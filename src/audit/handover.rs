//! The hand-over file (`spool_dir/handover.jsonl`): events a command
//! running beside the gateway (`sealgate tools accept`) leaves for the
//! gateway to record in its chain at SIGHUP. Both sides are here: what the
//! command writes ([`write`], bounded) and what the gateway takes
//! ([`read`]).
//!
//! The file is not trusted as written: only the events that command
//! writes are taken, with their known fields (each string bounded and
//! escaped, digests in their one form), the chain's own members (`seq`,
//! `type`, `instance`, `prev`) are never taken from it, and every line
//! refused is counted in a `handover_lines_refused` event.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::foreign::{foreign, MAX_FOREIGN};

use super::config::AuditConfig;
use super::event::SecurityEvent;
use super::file::open_append;
use super::timestamp::rfc3339_of;

/// The file's name in `spool_dir`.
pub(crate) const HANDOVER: &str = "handover.jsonl";

/// Largest handover file read (events are a few hundred bytes each).
pub(crate) const MAX_HANDOVER: u64 = 4 * 1024 * 1024;

/// Who hands events over, as [`write`] records it for `tools accept`.
pub(crate) const RECORDED_BY: &str = "sealgate tools accept";

/// The events `sealgate tools accept` can hand over: the router's
/// security events about a backend's tools.
const EVENTS: &[&str] = &[
    "tools_accepted",
    "tools_pinned_on_first_use",
    "tools_not_pinned",
    "tool_listed_twice",
    "tool_definition_invalid",
    "tool_name_clash",
    "tool_definition_changed",
    "tool_added",
    "tool_refusals_summarised",
];

/// For a command that runs beside the gateway (`sealgate tools
/// accept`): a second writer would fork the chain, so its events (kept
/// in its memory log, `lines`) are handed over in `spool_dir/handover.jsonl`
/// (0600) and the running gateway records them in its chain at its
/// next SIGHUP. Returns how many were handed over.
///
/// Bounded when written: the events that say what the operator did
/// (`tools_accepted`, `tools_pinned_on_first_use`, `tools_not_pinned`)
/// go first, then the others up to a quarter of what the gateway reads;
/// those left out are counted in one `tool_refusals_summarised` line.
pub(crate) fn write(lines: Vec<String>, config: &AuditConfig, by: &str) -> std::io::Result<usize> {
    use std::io::Write;
    const FIRST: &[&str] = &[
        "tools_accepted",
        "tools_pinned_on_first_use",
        "tools_not_pinned",
    ];
    let budget = (MAX_HANDOVER / 4) as usize;
    let mut first = String::new();
    let mut rest = String::new();
    let mut n = 0;
    let mut left_out = 0u64;
    for line in lines {
        let Ok(mut v) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&line)
        else {
            continue;
        };
        if v.get("type").and_then(|t| t.as_str()) != Some("event") {
            continue;
        }
        for framing in ["seq", "type", "instance", "prev"] {
            v.remove(framing);
        }
        v.insert("recorded_by".into(), serde_json::json!(by));
        let is_first = v
            .get("event")
            .and_then(|e| e.as_str())
            .is_some_and(|e| FIRST.contains(&e));
        let text = serde_json::Value::Object(v).to_string();
        let out = if is_first {
            &mut first
        } else if rest.len() + text.len() < budget {
            &mut rest
        } else {
            left_out += 1;
            continue;
        };
        out.push_str(&text);
        out.push('\n');
        n += 1;
    }
    let mut out = first;
    out.push_str(&rest);
    if left_out > 0 {
        tracing::warn!(
            count = left_out,
            "more events than the hand-over takes: the rest are counted"
        );
        let mut ev = SecurityEvent::new("tool_refusals_summarised", "*");
        ev.count = Some(left_out);
        if let Ok(serde_json::Value::Object(mut v)) = serde_json::to_value(&ev) {
            v.insert("recorded_by".into(), serde_json::json!(by));
            out.push_str(&serde_json::Value::Object(v).to_string());
            out.push('\n');
            n += 1;
        }
    }
    if n == 0 {
        return Ok(0);
    }
    let dir = config
        .spool_dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("audit-spool"));
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let mut f = open_append(&dir.join(HANDOVER))?;
    f.write_all(out.as_bytes())?;
    f.sync_all()?;
    Ok(n)
}

/// What was read: the events to record, and how many lines were refused.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub events: Vec<Map<String, Value>>,
    pub refused: u64,
}

/// Takes the hand-over file at `path` (absent: nothing): it is first
/// renamed to a private name (events a command appends meanwhile go to a
/// new file, taken at the next SIGHUP), opened without following a link
/// and without blocking, and removed once read. Anything but a regular
/// file counts as one refused line. Lines beyond [`MAX_HANDOVER`] bytes
/// are refused, not read.
pub(crate) fn read(path: &Path) -> std::io::Result<Taken> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut taking = path.as_os_str().to_owned();
    taking.push(".taking");
    let taking = std::path::PathBuf::from(taking);
    // A `.taking` left by a stop between rename and removal is taken first.
    if !taking.exists() {
        match std::fs::rename(path, &taking) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Taken::default()),
            Err(e) => return Err(e),
        }
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&taking)
        .and_then(|f| {
            if f.metadata()?.file_type().is_file() {
                Ok(f)
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        });
    let taken = match opened {
        Ok(file) => read_from(file),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "hand-over file refused: not a regular file, or unreadable");
            Ok(Taken {
                events: Vec::new(),
                refused: 1,
            })
        }
    };
    if let Err(e) = std::fs::remove_file(&taking) {
        tracing::error!(path = %taking.display(), error = %e, "handed-over audit events could not be removed");
    }
    taken
}

fn read_from(file: std::fs::File) -> std::io::Result<Taken> {
    let size = file.metadata()?.len();
    let mut bytes = Vec::new();
    file.take(MAX_HANDOVER).read_to_end(&mut bytes)?;
    let mut taken = Taken::default();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => match accept(map) {
                Some(e) => taken.events.push(e),
                None => taken.refused += 1,
            },
            _ => taken.refused += 1,
        }
    }
    if size > MAX_HANDOVER {
        // What was not read counts as one more refused line (at least).
        taken.refused += 1;
    }
    Ok(taken)
}

/// The event of one line, rebuilt from its known fields; `None` when the
/// line is not one `sealgate tools accept` writes.
fn accept(mut line: Map<String, Value>) -> Option<Map<String, Value>> {
    // The chain's members are the gateway's alone.
    for framing in ["seq", "type", "instance", "prev"] {
        line.remove(framing);
    }
    let mut out = Map::new();
    let ts = line.remove("ts")?;
    let ts = ts.as_str()?;
    // Rewritten in the one form the gateway writes: the parser takes any
    // number of fraction digits and any byte between date and time.
    let ts = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    out.insert("ts".into(), Value::String(rfc3339_of(ts)));
    let event = line.remove("event")?;
    let event = EVENTS.iter().find(|e| event.as_str() == Some(**e))?;
    out.insert("event".into(), Value::String((*event).to_string()));
    let backend = line.remove("backend")?;
    out.insert(
        "backend".into(),
        Value::String(foreign(backend.as_str()?, MAX_FOREIGN).into_owned()),
    );
    if let Some(tool) = line.remove("tool") {
        if !tool.is_null() {
            let tool = foreign(tool.as_str()?, MAX_FOREIGN).into_owned();
            out.insert("tool".into(), Value::String(tool));
        }
    }
    for digest in ["pinned_digest", "offered_digest"] {
        if let Some(d) = line.remove(digest) {
            if !d.is_null() {
                let d = d.as_str().filter(|d| is_digest(d))?;
                out.insert(digest.into(), Value::String(d.to_string()));
            }
        }
    }
    if let Some(count) = line.remove("count") {
        out.insert("count".into(), Value::from(count.as_u64()?));
    }
    if line.remove("recorded_by")?.as_str() != Some(RECORDED_BY) {
        return None;
    }
    out.insert("recorded_by".into(), Value::String(RECORDED_BY.into()));
    // A field the command does not write: not its line.
    line.is_empty().then_some(out)
}

/// `sha256:` and 64 lower-case hex digits.
fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::super::{AuditConfig, AuditLog};
    use serde_json::Value;

    fn lines(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .expect("audit file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    #[test]
    fn only_the_events_tools_accept_writes_are_taken_without_chain_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let spool = dir.path().join("spool");
        let text = format!(
            "spool_dir = \"{}\"\n[[sink]]\nkind = \"file\"\npath = \"{}\"\n",
            spool.display(),
            path.display()
        );
        let config: AuditConfig = toml::from_str(&text).expect("config");
        let log = AuditLog::open(&config, None).expect("open");
        std::fs::create_dir_all(&spool).expect("spool dir");
        let digest = format!("sha256:{}", "ab".repeat(32));
        let good = serde_json::json!({"ts": "2026-01-01T00:00:00.000Z", "event": "tool_added",
            "backend": "docs", "tool": "search", "pinned_digest": null, "offered_digest": digest,
            "recorded_by": "sealgate tools accept"});
        // Chain members in an otherwise good line are dropped, not taken.
        let mut framed = good.clone();
        framed["seq"] = 999.into();
        framed["type"] = "checkpoint".into();
        framed["prev"] = "00".repeat(32).into();
        framed["instance"] = "forged".into();
        let mut long = good.clone();
        long["tool"] = "x".repeat(2 * 1024 * 1024).into();
        let refused = [
            // Not an event the command writes.
            serde_json::json!({"ts": "2026-01-01T00:00:00.000Z", "event": "audit_started",
                "backend": "docs", "recorded_by": "sealgate tools accept"}),
            // A field it does not write.
            serde_json::json!({"ts": "2026-01-01T00:00:00.000Z", "event": "tool_added",
                "backend": "docs", "sig": "forged", "recorded_by": "sealgate tools accept"}),
            // Someone else.
            serde_json::json!({"ts": "2026-01-01T00:00:00.000Z", "event": "tool_added",
                "backend": "docs", "recorded_by": "operator"}),
            // A digest in another form.
            serde_json::json!({"ts": "2026-01-01T00:00:00.000Z", "event": "tool_added",
                "backend": "docs", "offered_digest": "whatever",
                "recorded_by": "sealgate tools accept"}),
        ];
        let mut text = String::new();
        for v in [&good, &framed, &long].into_iter().chain(&refused) {
            text.push_str(&v.to_string());
            text.push('\n');
        }
        std::fs::write(spool.join(super::HANDOVER), text).expect("handover");
        log.reopen();
        log.flush();
        log.close();
        let recs = lines(&path);
        let added: Vec<&Value> = recs.iter().filter(|r| r["event"] == "tool_added").collect();
        assert_eq!(added.len(), 3, "{recs:#?}");
        for r in &added {
            assert_eq!(r["type"], "event");
            assert_ne!(r["instance"], "forged");
            assert_ne!(r["seq"], 999);
            assert!(r.to_string().len() < 2048, "bounded");
        }
        assert!(added[2]["tool"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("…(+{} bytes)", 2 * 1024 * 1024 - 256))));
        let refused_events: Vec<&Value> = recs
            .iter()
            .filter(|r| r["event"] == "handover_lines_refused")
            .collect();
        assert_eq!(refused_events.len(), 1);
        assert_eq!(refused_events[0]["count"], 4);
        assert!(!spool.join(super::HANDOVER).exists(), "removed once taken");
    }

    fn line(ts: &str) -> String {
        serde_json::json!({"ts": ts, "event": "tool_added", "backend": "x",
            "recorded_by": "sealgate tools accept"})
        .to_string()
    }

    #[test]
    fn a_handed_over_ts_is_rewritten_in_its_one_form() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::HANDOVER);
        let long = format!("2026-01-01T00:00:00.{}Z", "0".repeat(1024 * 1024));
        let text = [
            line(&long),
            line("2026-01-01\u{1b}00:00:00Z"),
            line("2026-01-01T01:00:00.123456+01:00"),
        ]
        .join("\n");
        std::fs::write(&path, text).expect("write");
        let taken = super::read(&path).expect("read");
        let ts: Vec<&str> = taken
            .events
            .iter()
            .map(|e| e["ts"].as_str().expect("ts"))
            .collect();
        assert_eq!(
            ts,
            [
                "2026-01-01T00:00:00.000Z",
                "2026-01-01T00:00:00.000Z",
                "2026-01-01T00:00:00.123Z"
            ]
        );
        assert_eq!(taken.refused, 0);
    }

    #[test]
    fn a_fifo_or_a_symlink_at_the_hand_over_path_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(super::HANDOVER);
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(super::read(&p).map(|t| (t.events.len(), t.refused)));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read does not block on a FIFO");
        assert_eq!(got.expect("read"), (0, 1));
        assert!(!path.exists(), "taken away");

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, line("2026-01-01T00:00:00Z")).expect("target");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let taken = super::read(&path).expect("read");
        assert_eq!((taken.events.len(), taken.refused), (0, 1));
        assert!(target.exists(), "the link's target is left alone");
    }

    #[test]
    fn a_flood_of_events_cannot_crowd_tools_accepted_out_of_the_hand_over() {
        use crate::audit::SecurityEvent;
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        let config: AuditConfig =
            toml::from_str(&format!("spool_dir = \"{}\"\n", spool.display())).expect("config");
        let log = AuditLog::memory();
        for i in 0..30_000 {
            let name = format!("tool_{i}");
            let mut ev = SecurityEvent::new("tool_definition_invalid", "hostile");
            ev.tool = Some(&name);
            log.security_event(&ev);
        }
        log.security_event(&SecurityEvent::new("tools_accepted", "hostile"));
        log.hand_over(&config, super::RECORDED_BY)
            .expect("handed over");
        let path = spool.join(super::HANDOVER);
        assert!(
            std::fs::metadata(&path).expect("meta").len() <= super::MAX_HANDOVER,
            "bounded when written"
        );
        let taken = super::read(&path).expect("read");
        assert_eq!(taken.refused, 0);
        assert_eq!(taken.events[0]["event"], "tools_accepted");
        let summary = taken
            .events
            .iter()
            .find(|e| e["event"] == "tool_refusals_summarised")
            .expect("what was left out is counted");
        let detailed = taken
            .events
            .iter()
            .filter(|e| e["event"] == "tool_definition_invalid")
            .count() as u64;
        assert_eq!(summary["count"].as_u64(), Some(30_000 - detailed));
    }
}
