//! What the end of an audit file is, read the way `sealgate audit verify`
//! reads it: a last line that lost only its newline (a crash, or `truncate
//! -s -1`) but parses as the next chained record is a record, not a torn
//! fragment, for the gateway as for the verifier (docs/AUDIT.md, "Torn
//! lines").

use super::chain::{decode_hash, line_hash};

/// Whether `fragment` (the bytes after a file's last newline) is a
/// complete chained record following `before` (the file's bytes before
/// that newline, or its last part): a JSON object whose `seq` is one more
/// than the last line's and whose `prev` is that line's hash. With no line
/// before it, any object with a `seq` and a `prev` of 64 hex digits is.
pub(crate) fn completes_chain(before: &[u8], fragment: &[u8]) -> bool {
    if fragment.is_empty() {
        return false;
    }
    let Ok(serde_json::Value::Object(v)) = serde_json::from_slice(fragment) else {
        return false;
    };
    let (Some(seq), Some(prev)) = (
        v.get("seq").and_then(serde_json::Value::as_u64),
        v.get("prev")
            .and_then(serde_json::Value::as_str)
            .and_then(decode_hash),
    ) else {
        return false;
    };
    let last = before.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    if last.is_empty() {
        return true;
    }
    let last_seq = serde_json::from_slice::<serde_json::Value>(last)
        .ok()
        .and_then(|l| l.get("seq").and_then(serde_json::Value::as_u64));
    last_seq.and_then(|s| s.checked_add(1)) == Some(seq) && prev == line_hash(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(line: &str, seq: u64) -> String {
        format!(
            "{{\"seq\":{seq},\"type\":\"request\",\"prev\":\"{}\"}}",
            hex::encode(line_hash(line.as_bytes()))
        )
    }

    #[test]
    fn only_the_next_chained_record_is_complete() {
        let first = format!("{{\"seq\":4,\"prev\":\"{}\"}}", "0".repeat(64));
        let next = after(&first, 5);
        assert!(completes_chain(first.as_bytes(), next.as_bytes()));
        let before = format!("x\n{first}");
        assert!(completes_chain(before.as_bytes(), next.as_bytes()));
        assert!(completes_chain(b"", next.as_bytes()));
        // Torn: cut short, not the next seq, not chained, not an object.
        assert!(!completes_chain(first.as_bytes(), &next.as_bytes()[..20]));
        assert!(!completes_chain(
            first.as_bytes(),
            after(&first, 6).as_bytes()
        ));
        assert!(!completes_chain(
            first.as_bytes(),
            after("other", 5).as_bytes()
        ));
        assert!(!completes_chain(first.as_bytes(), b"[1]"));
        assert!(!completes_chain(first.as_bytes(), b""));
    }
}
