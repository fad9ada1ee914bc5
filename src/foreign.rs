//! Text from outside the gateway's trust (a backend's tool names and
//! errors, a hand-over file) on its way into an audit record or a log line:
//! bounded in size and with every character a reader could not see
//! (controls, bidirectional and invisible characters) escaped, so one
//! hostile string can neither make a record the verifier refuses nor
//! rewrite what a human reads in a terminal.

use std::borrow::Cow;

/// Bytes of a foreign string kept in a record or log line: a tool name is
/// at most 128 characters, an error a sentence.
pub const MAX_FOREIGN: usize = 256;

/// `s` bounded to about `max` bytes (cut at a character, with the number
/// of bytes left out said at the end) and with hidden characters escaped
/// as `\u{…}`. Borrowed when nothing had to change (the usual case).
pub fn foreign(s: &str, max: usize) -> Cow<'_, str> {
    let clean = s.len() <= max && !s.chars().any(hidden);
    if clean {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(max.min(s.len()) + 24);
    let mut used = 0;
    for (i, c) in s.char_indices() {
        if out.len() >= max {
            used = i;
            break;
        }
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
        used = i + c.len_utf8();
    }
    if used < s.len() {
        out.push_str(&format!("…(+{} bytes)", s.len() - used));
    }
    Cow::Owned(out)
}

/// Bytes `v` takes as compact JSON, counted without building the text.
pub fn json_len(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail; a value that cannot be written
    // counts as unbounded.
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

/// Bidirectional controls (Trojan Source, CVE-2021-42574) and other
/// invisible format characters that change how text reads or hide text
/// from a human reviewer while a model still reads it: Unicode tag
/// characters (U+E0000–U+E007F, "ASCII smuggling"), soft hyphens, zero-width
/// and invisible operators, the deprecated format characters
/// (U+206A–U+206F: symmetric swapping, digit shapes), the Mongolian vowel
/// separator, interlinear annotations, and variation selectors beyond the
/// basic block (the basic ones, U+FE00–U+FE0F, are in emoji: allowed, but
/// the sanitizer's identifier checks read past them).
pub fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{206A}'..='\u{206F}' | '\u{FEFF}'
        | '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{3164}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Characters a reader cannot see or that change how the rest is shown:
/// controls (newlines included: one record, one log line), the line and
/// paragraph separators, the sanitizer's bidirectional and invisible set
/// and the rest of Unicode's default-ignorable code points.
pub fn unseen(c: char) -> bool {
    c.is_control()
        || is_bidi_or_invisible(c)
        || matches!(c,
            '\u{2028}' | '\u{2029}' | '\u{180B}'..='\u{180F}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FFF0}'..='\u{FFF8}' | '\u{13430}'..='\u{1343F}'
            | '\u{E0080}'..='\u{E0FFF}')
}

/// What [`foreign`] escapes: the [`unseen`] characters, and the two
/// characters this escaping writes itself (a backslash and `…`), so a
/// string can never pass for an escape or a cut it is not.
fn hidden(c: char) -> bool {
    unseen(c) || matches!(c, '\\' | '\u{2026}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_short_string_is_borrowed_unchanged() {
        assert!(matches!(
            foreign("get_meps", 256),
            Cow::Borrowed("get_meps")
        ));
    }

    #[test]
    fn a_long_string_is_cut_at_a_character_and_says_how_much_is_left_out() {
        let long = "é".repeat(2 * 1024 * 1024);
        let out = foreign(&long, MAX_FOREIGN);
        assert!(out.len() <= MAX_FOREIGN + 32, "{}", out.len());
        assert!(
            out.ends_with(&format!("…(+{} bytes)", long.len() - 256)),
            "{out}"
        );
    }

    #[test]
    fn controls_and_bidirectional_characters_are_escaped() {
        let out = foreign("a\nb\u{1b}[31m\u{202e}c", MAX_FOREIGN);
        assert_eq!(out, "a\\u{a}b\\u{1b}[31m\\u{202e}c");
    }

    #[test]
    fn separators_default_ignorables_and_the_escape_s_own_characters_are_escaped() {
        let out = foreign("a\u{2028}b\u{206B}c\\u{202e}", MAX_FOREIGN);
        assert_eq!(out, "a\\u{2028}b\\u{206b}c\\u{5c}u{202e}");
        for c in [
            '\u{2029}',
            '\u{180B}',
            '\u{180F}',
            '\u{FE0F}',
            '\u{FFF0}',
            '\u{13430}',
            '\u{E0FFF}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(foreign(&s, MAX_FOREIGN), format!("x\\u{{{:x}}}y", c as u32));
        }
        // A cut it is not: only the real cut's marker is a bare `…`.
        assert_eq!(
            foreign("name…(+99 bytes)", MAX_FOREIGN),
            "name\\u{2026}(+99 bytes)"
        );
    }
}
