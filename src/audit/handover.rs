//! The hand-over file (`spool_dir/handover.jsonl`): events a command
//! running beside the gateway (`sealgate tools accept`) leaves for the
//! gateway to record in its chain at SIGHUP.
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

/// The file's name in `spool_dir`.
pub(crate) const HANDOVER: &str = "handover.jsonl";

/// Largest handover file read (events are a few hundred bytes each).
const MAX_HANDOVER: u64 = 4 * 1024 * 1024;

/// Who hands events over, as `AuditLog::hand_over` writes it.
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

/// What was read: the events to record, and how many lines were refused.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub events: Vec<Map<String, Value>>,
    pub refused: u64,
}

/// Reads the hand-over file at `path` (absent: nothing). Lines beyond
/// [`MAX_HANDOVER`] bytes are refused, not read.
pub(crate) fn read(path: &Path) -> std::io::Result<Taken> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Taken::default()),
        Err(e) => return Err(e),
    };
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
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).ok()?;
    out.insert("ts".into(), Value::String(ts.to_string()));
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
}
