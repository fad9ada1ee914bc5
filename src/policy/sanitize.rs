//! The sanitizer: rules for every string in tool arguments, beyond what a
//! backend's schema says. Limits on length, total size and depth; no control
//! characters and no Unicode bidirectional overrides; NFC for values and
//! member names (normalise or reject); and, in identifier-like fields and
//! lists, no path traversal and no URL schemes, also under compatibility
//! (NFKC) folding. Errors name the JSON path and the rule, never the value.
//!
//! It runs before the pinned schema check and is the only code that may
//! rewrite an argument (and only to NFC, when configured); it never
//! consults the client's identity.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::Value;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// What to do with a string that is not in Unicode NFC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NfcPolicy {
    /// Refuse it.
    Reject,
    /// Rewrite it to NFC before forwarding.
    Normalize,
}

/// One set of rules (the defaults, or a tool's overrides).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SanitizeRules {
    /// Longest string, in characters.
    pub max_string_chars: Option<usize>,
    /// Largest argument object, serialised, in bytes.
    pub max_total_bytes: Option<usize>,
    /// Deepest nesting of the arguments object.
    pub max_depth: Option<usize>,
    /// What to do with a string that is not NFC; rejected by default.
    pub nfc: Option<NfcPolicy>,
    /// Field names treated as identifiers (in any case), in addition to
    /// the built-in rule: `id`, `ids`, `identifier(s)`, `uri(s)`, `url(s)`,
    /// `path(s)` as the name or its last word (`mepIds`, `file_path`,
    /// `sourceURL`), and `*ID`.
    pub identifier_fields: Option<Vec<String>>,
}

/// The effective policy: defaults plus per-tool overrides.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SanitizePolicy {
    /// Rules for every tool, each unset one falling back to the built-in
    /// default.
    #[serde(flatten)]
    pub defaults: SanitizeRules,
    /// Overrides by exposed tool name (or method name, for resources and
    /// prompts); an unset limit falls back to `defaults`, and identifier
    /// fields add to those of `defaults`.
    #[serde(default)]
    pub tools: BTreeMap<String, SanitizeRules>,
}

struct Effective<'a> {
    max_string_chars: usize,
    max_total_bytes: usize,
    max_depth: usize,
    nfc: NfcPolicy,
    identifier_fields: HashSet<&'a str>,
}

/// An argument that breaks a rule: sent to the client as
/// `ARGUMENTS_REJECTED`, so it must never hold the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument {path} {rule}")]
pub struct SanitizeError {
    /// JSON Pointer of the offending value (`/` for the whole arguments).
    pub path: String,
    /// The broken rule, as a fixed phrase that completes "argument `<path>`".
    pub rule: &'static str,
}

const DEFAULT_MAX_STRING_CHARS: usize = 4096;
const DEFAULT_MAX_TOTAL_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_DEPTH: usize = 8;
/// Longest member name, in characters.
const MAX_NAME_CHARS: usize = 256;

impl SanitizePolicy {
    fn effective(&self, tool: &str) -> Effective<'_> {
        let t = self.tools.get(tool);
        let pick = |f: fn(&SanitizeRules) -> Option<usize>, d: usize| {
            t.and_then(f).or(f(&self.defaults)).unwrap_or(d)
        };
        let mut identifier_fields: HashSet<&str> = HashSet::new();
        for rules in [Some(&self.defaults), t].into_iter().flatten() {
            if let Some(fields) = &rules.identifier_fields {
                identifier_fields.extend(fields.iter().map(String::as_str));
            }
        }
        Effective {
            max_string_chars: pick(|r| r.max_string_chars, DEFAULT_MAX_STRING_CHARS),
            max_total_bytes: pick(|r| r.max_total_bytes, DEFAULT_MAX_TOTAL_BYTES),
            max_depth: pick(|r| r.max_depth, DEFAULT_MAX_DEPTH),
            nfc: t
                .and_then(|r| r.nfc)
                .or(self.defaults.nfc)
                .unwrap_or(NfcPolicy::Reject),
            identifier_fields,
        }
    }

    /// Checks (and, for NFC normalisation, rewrites) a tool's arguments.
    pub fn apply(&self, tool: &str, arguments: &mut Value) -> Result<(), SanitizeError> {
        let rules = self.effective(tool);
        let too_large = |v: &Value| {
            let size = serde_json::to_vec(v).map(|v| v.len()).unwrap_or(usize::MAX);
            (size > rules.max_total_bytes).then(|| SanitizeError {
                path: "/".into(),
                rule: "exceeds the total argument size limit",
            })
        };
        if let Some(e) = too_large(arguments) {
            return Err(e);
        }
        walk(arguments, &mut String::new(), None, 0, &rules)?;
        // NFC can lengthen what it rewrites: the limit holds for what is
        // forwarded.
        match too_large(arguments) {
            Some(e) if rules.nfc == NfcPolicy::Normalize => Err(e),
            _ => Ok(()),
        }
    }
}

impl SanitizePolicy {
    /// Checks the params of `resources/read`: the `uri` must carry one of
    /// the schemes the backend `offered` (lower case, compared after
    /// parsing) and no path traversal after it; it gets the string rules
    /// every argument gets (length, control and invisible characters,
    /// NFC), and the other params the ordinary rules.
    pub fn apply_resource_read(
        &self,
        params: &mut Value,
        offered: &std::collections::BTreeSet<String>,
    ) -> Result<(), SanitizeError> {
        let fail = |rule| SanitizeError {
            path: "/uri".into(),
            rule,
        };
        let Value::Object(map) = params else {
            return Err(fail("is missing"));
        };
        let Some(Value::String(uri)) = map.remove("uri") else {
            return Err(fail("is missing or not a string"));
        };
        self.apply("resources/read", params)?;
        let rules = self.effective("resources/read");
        let mut uri = Value::String(uri);
        walk(&mut uri, &mut "/uri".to_string(), None, 0, &rules)?;
        let Value::String(uri) = uri else {
            return Err(fail("is missing or not a string"));
        };
        match scheme_of(&uri) {
            None => return Err(fail("has no URL scheme")),
            Some(scheme) if !offered.contains(&scheme) => {
                return Err(fail("carries a URL scheme the backend does not offer"))
            }
            Some(_) => {}
        }
        let rest = uri.split_once(':').map(|(_, r)| r).unwrap_or_default();
        if is_traversal(rest.trim_start_matches('/')) {
            return Err(fail("looks like a path traversal"));
        }
        if let Value::Object(map) = params {
            map.insert("uri".into(), Value::String(uri));
        }
        Ok(())
    }
}

/// The scheme of `uri` in lower case: RFC 3986 `ALPHA *( ALPHA / DIGIT /
/// "+" / "-" / "." )` before the first `:`; `None` when it has none.
pub fn scheme_of(uri: &str) -> Option<String> {
    let (head, _) = uri.split_once(':')?;
    let valid = head.starts_with(|c: char| c.is_ascii_alphabetic())
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| head.to_ascii_lowercase())
}

/// Appends array index `i` to the JSON Pointer `path`, without allocating.
pub(crate) fn push_index(path: &mut String, i: usize) {
    use std::fmt::Write;
    let _ = write!(path, "/{i}");
}

/// Appends member name `k` to the JSON Pointer `path` (RFC 6901 escapes
/// `~` and `/`), allocating only for a name that needs escaping.
pub(crate) fn push_key(path: &mut String, k: &str) {
    path.push('/');
    if k.contains(['~', '/']) {
        path.push_str(&k.replace('~', "~0").replace('/', "~1"));
    } else {
        path.push_str(k);
    }
}

/// `s` as a backend that reads it leniently would: a URL parser (WHATWG)
/// drops every ASCII tab and newline and trims leading and trailing C0
/// controls and spaces (and a backend may drop any character no one
/// sees: variation selectors, default ignorables), so `"java\tscript:"` or `" file:"` carry a
/// scheme; NFKC (compatibility) folding, with the slash lookalikes NFKC
/// leaves alone mapped too, and Windows' "best-fit" mapping (a yen or won
/// sign is the backslash of the Japanese and Korean code pages). The
/// traversal and scheme checks look at this, so `\u{2025}/` (one "two dot
/// leader") or `..\u{FF0F}` (a fullwidth solidus) is `../` to them.
fn folded(s: &str) -> std::borrow::Cow<'_, str> {
    let loose = |c: char| c <= ' ';
    let url_view = !s.contains(['\t', '\n', '\r']) && !s.starts_with(loose) && !s.ends_with(loose);
    if s.is_ascii() && url_view {
        return std::borrow::Cow::Borrowed(s);
    }
    let f: String = s
        .nfkc()
        // Tabs and newlines (a URL parser drops them), and every character
        // a reader cannot see: a backend that removes ignorables reads
        // `.\u{FE0F}./x` as `../x`.
        .filter(|c| !crate::foreign::unseen(*c))
        .map(|c| match c {
            // Division slash, fraction slash, big solidus.
            '\u{2215}' | '\u{2044}' | '\u{29F8}' => '/',
            // Set minus, big reverse solidus, yen and won signs.
            '\u{2216}' | '\u{29F9}' | '\u{A5}' | '\u{20A9}' => '\\',
            c => c,
        })
        .collect();
    // Trimmed after folding: an ideographic space folds to a space.
    std::borrow::Cow::Owned(f.trim_matches(loose).to_string())
}

/// `.` or `..` segments, backslashes, percent-encoded dots or slashes, NUL,
/// in `s` or in its compatibility folding (see [`folded`]).
fn is_traversal(s: &str) -> bool {
    let s = folded(s);
    let lower = s.to_ascii_lowercase();
    s.split(['/', '\\']).any(|seg| seg == ".." || seg == ".")
        || s.contains('\\')
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || s.contains('\0')
}

/// The words that make a member name an identifier field, as the whole
/// name or its last word, in any case. `id` and `ids` must be a word of
/// their own (`mepIds`, `group_ids`, `docID`), not the end of one
/// (`valid`, `kids`); the longer ones may end an all-lower-case name too
/// (`filepath`, `imageurl`).
const IDENTIFIER_WORDS: &[&str] = &[
    "id",
    "ids",
    "identifier",
    "identifiers",
    "uri",
    "uris",
    "url",
    "urls",
    "path",
    "paths",
];

/// Whether member `name` (NFKC-folded: `ｉｄ` is `id`) holds identifiers:
/// the built-in words ([`IDENTIFIER_WORDS`]; `*ID` as before, whatever
/// precedes it) or the configured `identifier_fields`, compared without
/// regard to case. The items of an identifier list are identifiers too.
fn is_identifier_field(name: &str, rules: &Effective<'_>) -> bool {
    let name = folded(name);
    rules
        .identifier_fields
        .iter()
        .any(|f| f.eq_ignore_ascii_case(&name))
        || name.ends_with("ID")
        || IDENTIFIER_WORDS.iter().any(|w| ends_with_word(&name, w))
}

/// Whether `name` ends with `word` (ASCII, lower case) in any case, as a
/// word: the whole name; after `_`, `-`, `.` or a space; or starting with
/// a capital after a lower-case letter or digit (`mepIds`, `sourceURL`) or
/// in title case (`URLPath`). Every word but `id` and `ids` may also end
/// an all-lower-case name (`filepath`; `paid` and `kids` are no ids).
fn ends_with_word(name: &str, word: &str) -> bool {
    let Some(at) = name.len().checked_sub(word.len()) else {
        return false;
    };
    if !name.is_char_boundary(at) {
        return false;
    }
    let (head, tail) = name.split_at(at);
    if !tail.eq_ignore_ascii_case(word) {
        return false;
    }
    let Some(prev) = head.chars().next_back() else {
        return true;
    };
    let mut chars = tail.chars();
    let first = chars.next().unwrap_or_default();
    let second = chars.next().unwrap_or_default();
    matches!(prev, '_' | '-' | '.' | ' ')
        || (first.is_ascii_uppercase()
            && (prev.is_lowercase() || prev.is_ascii_digit() || second.is_ascii_lowercase()))
        || (!matches!(word, "id" | "ids")
            && head.chars().all(|c| !c.is_uppercase())
            && tail == word)
}

pub(crate) use crate::foreign::is_bidi_or_invisible;

fn walk(
    v: &mut Value,
    path: &mut String,
    key: Option<&str>,
    depth: usize,
    rules: &Effective<'_>,
) -> Result<(), SanitizeError> {
    let fail = |path: &str, rule| {
        Err(SanitizeError {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            rule,
        })
    };
    if depth > rules.max_depth {
        return fail(path, "nests deeper than the limit");
    }
    match v {
        Value::String(s) => {
            if s.chars().count() > rules.max_string_chars {
                return fail(path, "is longer than the string length limit");
            }
            if s.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
            {
                return fail(path, "contains control characters");
            }
            if s.chars().any(is_bidi_or_invisible) {
                return fail(
                    path,
                    "contains Unicode bidirectional or invisible format characters",
                );
            }
            if is_nfc_quick(s.chars()) != IsNormalized::Yes {
                let nfc: String = s.nfc().collect();
                if nfc != *s {
                    match rules.nfc {
                        NfcPolicy::Reject => return fail(path, "is not in Unicode NFC"),
                        // NFC can lengthen a string (U+FB2C is three
                        // characters in NFC): the limit holds for what is
                        // forwarded.
                        NfcPolicy::Normalize => {
                            if nfc.chars().count() > rules.max_string_chars {
                                return fail(path, "is longer than the string length limit");
                            }
                            *s = nfc
                        }
                    }
                }
            }
            if key.is_some_and(|k| is_identifier_field(k, rules)) {
                // As a backend that folds compatibility characters reads it.
                let f = folded(s);
                if f.starts_with(['/', '\\']) || is_traversal(&f) {
                    return fail(path, "in an identifier field looks like a path traversal");
                }
                if scheme_of(&f).is_some() {
                    return fail(path, "in an identifier field carries a URL scheme");
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                push_index(path, i);
                // Items of an identifier list are identifiers too.
                walk(item, path, key, depth + 1, rules)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            let mut renames = Vec::new();
            for k in map.keys() {
                if k.chars().any(|c| c.is_control() || is_bidi_or_invisible(c))
                    || k.chars().count() > MAX_NAME_CHARS
                {
                    return fail(
                        path,
                        "has a member name with control or format characters, or too long",
                    );
                }
                // Member names get the NFC rule string values get: two
                // names a backend that normalises reads as one, or a name
                // the pinned schema does not know that the backend reads
                // as one it does, would slip past the schema check.
                if is_nfc_quick(k.chars()) != IsNormalized::Yes {
                    let nfc: String = k.nfc().collect();
                    if nfc != *k {
                        if rules.nfc == NfcPolicy::Reject {
                            return fail(path, "has a member name not in Unicode NFC");
                        }
                        if nfc.chars().count() > MAX_NAME_CHARS {
                            return fail(
                                path,
                                "has a member name with control or format characters, or too long",
                            );
                        }
                        renames.push((k.clone(), nfc));
                    }
                }
            }
            for (name, nfc) in renames {
                if map.contains_key(&nfc) {
                    return fail(path, "has two member names that are equal in Unicode NFC");
                }
                if let Some(item) = map.remove(&name) {
                    map.insert(nfc, item);
                }
            }
            for (k, item) in map.iter_mut() {
                let len = path.len();
                push_key(path, k);
                walk(item, path, Some(k), depth + 1, rules)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<Value, SanitizeError> {
        let mut v = v;
        SanitizePolicy::default().apply("t", &mut v).map(|_| v)
    }

    #[test]
    fn ordinary_arguments_pass() {
        let v = json!({"country": "SE", "id": "person/900001", "docId": "A10-9004/2025", "keyword": "café, Straße", "limit": 5});
        assert_eq!(check(v.clone()), Ok(v));
    }

    #[test]
    fn each_rule_refuses_with_path_and_no_value() {
        let cases = [
            (
                json!({"q": "a\u{0007}b"}),
                "/q",
                "contains control characters",
            ),
            (
                json!({"q": "admin\u{202E}txt.exe"}),
                "/q",
                "contains Unicode bidirectional or invisible format characters",
            ),
            (
                json!({"q": "zero\u{200B}width"}),
                "/q",
                "contains Unicode bidirectional or invisible format characters",
            ),
            (
                json!({"q": "ignore\u{E0069}\u{E0067}\u{E006E}tags"}),
                "/q",
                "contains Unicode bidirectional or invisible format characters",
            ),
            (
                json!({"q": "soft\u{00AD}hyphen"}),
                "/q",
                "contains Unicode bidirectional or invisible format characters",
            ),
            (
                json!({"q": "invisible\u{2062}times"}),
                "/q",
                "contains Unicode bidirectional or invisible format characters",
            ),
            (json!({"q": "cafe\u{0301}"}), "/q", "is not in Unicode NFC"),
            (
                json!({"id": "../../etc/passwd"}),
                "/id",
                "in an identifier field looks like a path traversal",
            ),
            (
                json!({"docId": "%2e%2e%2fsecret"}),
                "/docId",
                "in an identifier field looks like a path traversal",
            ),
            (
                json!({"mep_id": "/etc/passwd"}),
                "/mep_id",
                "in an identifier field looks like a path traversal",
            ),
            (
                json!({"id": "file:///etc/passwd"}),
                "/id",
                "in an identifier field carries a URL scheme",
            ),
            (
                json!({"sessionId": "javascript:alert(1)"}),
                "/sessionId",
                "in an identifier field carries a URL scheme",
            ),
            (
                json!({"ids": ["ok", "x"], "nested": {"eventId": "http://evil"}}),
                "/nested/eventId",
                "in an identifier field carries a URL scheme",
            ),
            (
                json!({"q": "x".repeat(4097)}),
                "/q",
                "is longer than the string length limit",
            ),
            (
                json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
                "/a/b/c/d/e/f/g/h/i",
                "nests deeper than the limit",
            ),
        ];
        for (v, path, rule) in cases {
            let text = v.to_string();
            let e = check(v).expect_err(&text);
            assert_eq!((e.path.as_str(), e.rule), (path, rule), "{text}");
        }
        // Non-identifier fields may hold URLs and slashes.
        assert!(check(json!({"keyword": "see http://example.org/a/../b"})).is_ok());
    }

    /// review-rt #9: compatibility lookalikes of `.`, `/` and `\`, id lists
    /// and names in any case.
    #[test]
    fn lookalikes_id_lists_and_names_in_any_case_are_identifier_checked() {
        let traversal = "in an identifier field looks like a path traversal";
        let scheme = "in an identifier field carries a URL scheme";
        let cases = [
            (json!({"mepIds": ["../x"]}), "/mepIds/0", traversal),
            (
                json!({"groupIds": ["EPP", "file:x"]}),
                "/groupIds/1",
                scheme,
            ),
            (json!({"id": "\u{2025}/x"}), "/id", traversal),
            (json!({"filePath": "..\u{FF0F}etc"}), "/filePath", traversal),
            (json!({"id": "\u{2024}\u{2024}/x"}), "/id", traversal),
            (json!({"id": "\u{FF0E}\u{FF0E}/x"}), "/id", traversal),
            (json!({"id": "\u{FE52}\u{FE52}/x"}), "/id", traversal),
            (json!({"id": "a\u{FE68}b"}), "/id", traversal),
            (json!({"id": "a\u{FF3C}b"}), "/id", traversal),
            (json!({"id": "\u{FF0F}etc"}), "/id", traversal),
            (json!({"id": "..\u{2215}x"}), "/id", traversal),
            (json!({"MEP_IDS": ["a", "..\\x"]}), "/MEP_IDS/1", traversal),
            (json!({"docID": "../x"}), "/docID", traversal),
            (json!({"file_path": "/etc/passwd"}), "/file_path", traversal),
            (json!({"filepath": "/etc/passwd"}), "/filepath", traversal),
            (json!({"Path": "../x"}), "/Path", traversal),
            (json!({"URLPath": "../x"}), "/URLPath", traversal),
            (json!({"sourceURL": "http://evil"}), "/sourceURL", scheme),
            (
                json!({"sourceUrl": "\u{FF4A}avascript\u{FF1A}alert(1)"}),
                "/sourceUrl",
                scheme,
            ),
            // A URL parser drops tabs and newlines and trims C0 and
            // spaces (review-b M3); best-fit maps yen and won to `\`.
            (json!({"url": "java\tscript:alert(1)"}), "/url", scheme),
            (json!({"url": "\nfile:///etc/passwd"}), "/url", scheme),
            (json!({"url": " javascript:x"}), "/url", scheme),
            (json!({"url": "\u{3000}file:x"}), "/url", scheme),
            (json!({"id": ".\t./x"}), "/id", traversal),
            (json!({"id": "a\u{A5}..\u{A5}b"}), "/id", traversal),
            (json!({"id": "a\u{20A9}b"}), "/id", traversal),
            // Ignorables a backend may drop (review-b M4).
            (json!({"id": ".\u{FE0F}./x"}), "/id", traversal),
            (json!({"id": ".\u{180B}./x"}), "/id", traversal),
            // A fullwidth member name is the name it folds to.
            (
                json!({"\u{FF49}\u{FF44}": "../x"}),
                "/\u{FF49}\u{FF44}",
                traversal,
            ),
        ];
        for (v, path, rule) in cases {
            let text = v.to_string();
            let e = check(v).expect_err(&text);
            assert_eq!((e.path.as_str(), e.rule), (path, rule), "{text}");
        }
        // The deprecated format characters are hidden characters anywhere.
        assert_eq!(
            check(json!({"q": "a\u{206A}b"})).expect_err("hidden").rule,
            "contains Unicode bidirectional or invisible format characters"
        );
        // Words that only end in "id" or "ids" are no identifier fields.
        for v in [
            json!({"valid": "a:b", "paid": "../x", "kids": ["/x"], "void": "x:y"}),
            json!({"keyword": "\u{2025}/x"}),
        ] {
            assert!(check(v.clone()).is_ok(), "{v}");
        }
        // Configured names match in any case.
        let policy: SanitizePolicy =
            toml::from_str("identifier_fields = [\"keyword\"]").expect("policy");
        assert_eq!(
            policy
                .apply("t", &mut json!({"KeyWord": "x:y"}))
                .expect_err("configured")
                .rule,
            scheme
        );
    }

    /// Member names get the NFC rule values get (review-rt #9 (c)).
    #[test]
    fn member_names_are_nfc_checked_and_normalised_without_collisions() {
        let e = check(json!({"a": {"cafe\u{0301}": 1}})).expect_err("not NFC");
        assert_eq!(
            (e.path.as_str(), e.rule),
            ("/a", "has a member name not in Unicode NFC")
        );
        let policy: SanitizePolicy = toml::from_str("nfc = \"normalize\"").expect("policy");
        let mut v = json!({"cafe\u{0301}": 1, "i\u{0307}d": "x"});
        policy.apply("t", &mut v).expect("normalised");
        assert_eq!(v, json!({"caf\u{e9}": 1, "i\u{0307}d": "x"}));
        let mut twice = json!({"n": {"caf\u{e9}": 1, "cafe\u{0301}": 2}});
        let e = policy.apply("t", &mut twice).expect_err("collision");
        assert_eq!(
            (e.path.as_str(), e.rule),
            ("/n", "has two member names that are equal in Unicode NFC")
        );
    }

    #[test]
    fn nfc_normalize_policy_rewrites() {
        let policy: SanitizePolicy = toml::from_str("nfc = \"normalize\"").expect("policy");
        let mut v = json!({"q": "cafe\u{0301}"});
        policy.apply("t", &mut v).expect("normalised");
        assert_eq!(v, json!({"q": "caf\u{e9}"}));
    }

    #[test]
    fn normalising_never_lifts_a_string_or_the_total_past_its_limit() {
        // Regression (fuzz/regressions/arguments/nfc-expands-past-limits):
        // U+FB2C is one character and three in NFC.
        let policy: SanitizePolicy =
            toml::from_str("nfc = \"normalize\"\nmax_string_chars = 10").expect("policy");
        let mut v = json!({"q": "\u{FB2C}".repeat(4)});
        assert_eq!(
            policy.apply("t", &mut v),
            Err(SanitizeError {
                path: "/q".into(),
                rule: "is longer than the string length limit"
            })
        );
        let policy: SanitizePolicy =
            toml::from_str("nfc = \"normalize\"\nmax_total_bytes = 30").expect("policy");
        // Serialised: 17 bytes, then 26 in NFC (passes); with four and a
        // member more, 26 bytes, then 38 in NFC (refused).
        let mut v = json!({"q": "\u{FB2C}".repeat(3)});
        assert!(policy.apply("t", &mut v.clone()).is_ok());
        let mut v4 = json!({"q": "\u{FB2C}".repeat(4), "r": 1});
        assert_eq!(
            policy.apply("t", &mut v4).expect_err("total").rule,
            "exceeds the total argument size limit"
        );
        assert!(policy.apply("t", &mut v).is_ok());
    }

    #[test]
    fn per_tool_overrides() {
        let policy: SanitizePolicy = toml::from_str(
            "max_string_chars = 100\n[tools.search_documents]\nmax_string_chars = 10\nidentifier_fields = [\"keyword\"]\n",
        )
        .expect("policy");
        let mut long = json!({"q": "x".repeat(50)});
        assert!(policy.apply("get_meps", &mut long).is_ok());
        assert_eq!(
            policy
                .apply("search_documents", &mut long)
                .expect_err("10")
                .rule,
            "is longer than the string length limit"
        );
        let mut kw = json!({"keyword": "http:x"});
        assert_eq!(
            policy
                .apply("search_documents", &mut kw)
                .expect_err("id")
                .rule,
            "in an identifier field carries a URL scheme"
        );
        let mut total: SanitizePolicy = toml::from_str("max_total_bytes = 20").expect("policy");
        total.tools.clear();
        let mut big = json!({"q": "x".repeat(30)});
        assert_eq!(
            total.apply("t", &mut big).expect_err("size").rule,
            "exceeds the total argument size limit"
        );
    }
}
