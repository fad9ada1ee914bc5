//! What a backend answers, checked before the gateway signs it.
//!
//! A backend is outside the trust boundary (docs/THREAT-MODEL.md): a
//! compromised one can answer a result of another shape than MCP defines,
//! one that breaks its tool's pinned `outputSchema`, one too large for the
//! clients, secrets it holds (its own API keys, a private key it can read),
//! or text hidden from a human reviewer but read by the model. Rule 2 of
//! the mission (validate schemas) covers both directions; this module is
//! the direction back.
//!
//! Every refusal names the JSON path and the rule, never the value, and
//! replaces the answer: the client gets a clear error, the audit trail the
//! reason.

use std::collections::BTreeMap;

use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;

use super::pins::PinnedTool;
use super::sanitize::{push_index, push_key};

/// What to do with result text that matches a secret pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretAction {
    /// Do not look.
    Off,
    /// Replace each match with `[REDACTED:<pattern name>]` (the default).
    Redact,
    /// Refuse the whole result (`RESULT_REFUSED`).
    Refuse,
}

/// What to do with invisible format and control characters in result text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvisibleAction {
    /// Pass them on (the default: results are data, and some carry them
    /// legitimately).
    Allow,
    /// Remove them.
    Strip,
    /// Refuse the whole result (`RESULT_REFUSED`).
    Refuse,
}

/// One set of rules: the defaults, or a tool's (or method's) overrides.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultRules {
    /// Largest result, serialised, in bytes.
    pub max_bytes: Option<usize>,
    /// Secret patterns: off, redact or refuse.
    pub secrets: Option<SecretAction>,
    /// Invisible characters: allow, strip or refuse.
    pub invisible: Option<InvisibleAction>,
}

/// An operator's own secret pattern.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternFile {
    /// Shown in the redaction marker, the log and the refusal: 1 to 64 of
    /// `[a-z0-9_]`.
    pub name: String,
    /// A Rust `regex` (linear time: no backreferences or look-around).
    pub regex: String,
}

/// `[results]` as written in sealgate.toml.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsFile {
    max_bytes: Option<usize>,
    secrets: Option<SecretAction>,
    invisible: Option<InvisibleAction>,
    #[serde(default)]
    patterns: Vec<PatternFile>,
    #[serde(default)]
    tools: BTreeMap<String, ResultRules>,
}

/// The built-in secret patterns: shapes that are credentials wherever
/// they appear. Names are stable; docs/BACKENDS.md lists them.
const BUILTIN_PATTERNS: &[(&str, &str)] = &[
    (
        "private_key_block",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\z)",
    ),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "github_token",
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
    ),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("vault_token", r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "bearer_credential",
        r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*",
    ),
];

/// Redaction passes over one string before text that still matches a
/// secret pattern is refused (each pass can expose at most what the last
/// marker bordered).
const REDACT_ROUNDS: usize = 8;

/// Default largest result: a quarter of what gRPC clients decode by default
/// (4 MiB), so a signed answer always fits.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;

/// The size of `v` serialised as compact JSON, counted without building
/// the text.
pub fn serialized_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A `Value` always serialises (its keys are strings) and the counter
    // never fails; were it to, the result counts as too large.
    match serde_json::to_writer(&mut count, v) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The checks on results, compiled once at startup.
#[derive(Debug, Clone)]
pub struct ResultPolicy {
    defaults: ResultRules,
    tools: BTreeMap<String, ResultRules>,
    /// Pattern names, index-aligned with `set` and `each`.
    names: Vec<String>,
    set: RegexSet,
    each: Vec<Regex>,
}

impl Default for ResultPolicy {
    fn default() -> Self {
        ResultPolicy::compile(ResultsFile::default()).unwrap_or_else(|e| {
            // The built-in patterns are fixed and tested; this is unreachable
            // unless one of them was broken by an edit.
            panic!("built-in secret patterns do not compile: {e}")
        })
    }
}

impl<'de> Deserialize<'de> for ResultPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = ResultsFile::deserialize(d)?;
        ResultPolicy::compile(file).map_err(serde::de::Error::custom)
    }
}

/// Why a result was refused: sent to the client, so it names the path and
/// the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// Not the shape MCP defines, or not what the tool's outputSchema
    /// allows (`RESULT_INVALID`).
    #[error("the backend's result {path} {rule}")]
    Invalid {
        /// JSON Pointer into the result (`/` for the whole result).
        path: String,
        /// The broken rule.
        rule: String,
    },
    /// Larger than allowed (`RESULT_TOO_LARGE`): as received (checked
    /// before any filter runs), or once redaction markers lengthened it.
    #[error(
        "the backend's result is {size} bytes{}, more than the {limit} allowed",
        if *redacted { " once redacted" } else { "" }
    )]
    TooLarge {
        /// Its serialised size (compact JSON, the result or error member).
        size: usize,
        /// The limit that applied.
        limit: usize,
        /// Whether `size` is the size after redaction.
        redacted: bool,
    },
    /// Holds what a filter refuses (`RESULT_REFUSED`).
    #[error("the backend's result {path} holds {what}")]
    Refused {
        /// JSON Pointer of the string.
        path: String,
        /// What was found: a pattern's name, or invisible characters.
        what: String,
    },
}

/// What the filters changed in a result that passed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Names of the secret patterns redacted, each once, in pattern order.
    pub redacted: Vec<String>,
    /// Strings from which invisible characters were removed.
    pub stripped: usize,
}

impl Findings {
    /// Whether the result was changed.
    pub fn any(&self) -> bool {
        !self.redacted.is_empty() || self.stripped > 0
    }
}

struct Effective {
    secrets: SecretAction,
    invisible: InvisibleAction,
}

impl ResultPolicy {
    fn compile(file: ResultsFile) -> Result<ResultPolicy, String> {
        let mut names = Vec::new();
        let mut sources = Vec::new();
        for (name, re) in BUILTIN_PATTERNS {
            names.push((*name).to_string());
            sources.push((*re).to_string());
        }
        for (i, p) in file.patterns.iter().enumerate() {
            let valid = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(format!("patterns[{i}].name must be 1 to 64 of [a-z0-9_]"));
            }
            if names.contains(&p.name) {
                return Err(format!(
                    "patterns[{i}].name {} is already a pattern's name",
                    p.name
                ));
            }
            // Compile each alone first, so the error names the pattern.
            Regex::new(&p.regex).map_err(|e| {
                format!(
                    "patterns[{i}].regex ({}) does not compile: {}",
                    p.name,
                    first_line(&e.to_string())
                )
            })?;
            names.push(p.name.clone());
            sources.push(p.regex.clone());
        }
        if file.max_bytes == Some(0) {
            return Err("max_bytes must be at least 1".into());
        }
        if let Some(name) = file
            .tools
            .iter()
            .find(|(_, r)| r.max_bytes == Some(0))
            .map(|(n, _)| n)
        {
            return Err(format!("tools.{name}.max_bytes must be at least 1"));
        }
        let set = RegexSet::new(&sources).map_err(|e| first_line(&e.to_string()))?;
        let each = sources
            .iter()
            .map(|s| Regex::new(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| first_line(&e.to_string()))?;
        Ok(ResultPolicy {
            defaults: ResultRules {
                max_bytes: file.max_bytes,
                secrets: file.secrets,
                invisible: file.invisible,
            },
            tools: file.tools,
            names,
            set,
            each,
        })
    }

    fn effective(&self, key: &str) -> Effective {
        let t = self.tools.get(key);
        Effective {
            secrets: t
                .and_then(|r| r.secrets)
                .or(self.defaults.secrets)
                .unwrap_or(SecretAction::Redact),
            invisible: t
                .and_then(|r| r.invisible)
                .or(self.defaults.invisible)
                .unwrap_or(InvisibleAction::Allow),
        }
    }

    /// The largest serialised result allowed for `key` (the exposed tool
    /// name, or the method name for resources and prompts).
    pub fn max_bytes(&self, key: &str) -> usize {
        self.tools
            .get(key)
            .and_then(|r| r.max_bytes)
            .or(self.defaults.max_bytes)
            .unwrap_or(DEFAULT_MAX_BYTES)
    }

    /// Checks a backend's result for `method` (and, for `tools/call`, the
    /// pinned tool it answers) and applies the filters of `key`. The
    /// result may be rewritten (redacted, stripped); the findings say how.
    pub fn check(
        &self,
        method: &str,
        tool: Option<&PinnedTool>,
        key: &str,
        result: &mut Value,
    ) -> Result<Findings, ResultError> {
        check_shape(method, tool, result)?;
        self.filter(key, result)
    }

    /// Applies the filters of `key` to every string in `value` (a result,
    /// or a backend's error object).
    pub fn filter(&self, key: &str, value: &mut Value) -> Result<Findings, ResultError> {
        let rules = self.effective(key);
        let mut findings = Findings::default();
        if rules.secrets != SecretAction::Off || rules.invisible != InvisibleAction::Allow {
            // Sized at the first redaction: a clean result allocates nothing.
            let mut hits = Vec::new();
            self.walk(value, &mut String::new(), &rules, &mut hits, &mut findings)?;
            findings.redacted = self
                .names
                .iter()
                .zip(hits)
                .filter(|(_, hit)| *hit)
                .map(|(n, _)| n.clone())
                .collect();
        }
        Ok(findings)
    }

    fn walk(
        &self,
        v: &mut Value,
        path: &mut String,
        rules: &Effective,
        hits: &mut Vec<bool>,
        findings: &mut Findings,
    ) -> Result<(), ResultError> {
        match v {
            Value::String(s) => self.filter_string(s, path, rules, hits, findings),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    push_index(path, i);
                    self.walk(item, path, rules, hits, findings)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    self.check_member_name(k, path, rules)?;
                    let len = path.len();
                    push_key(path, k);
                    self.walk(item, path, rules, hits, findings)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Member names are never rewritten (a redacted or stripped name could
    /// collide with another and changes the result's shape): one holding a
    /// hidden character or text matching a secret pattern, when those
    /// filters are on, refuses the result, which names the object that
    /// holds it (never the name itself, which is the secret).
    fn check_member_name(
        &self,
        name: &str,
        path: &str,
        rules: &Effective,
    ) -> Result<(), ResultError> {
        if rules.invisible != InvisibleAction::Allow && name.chars().any(is_hidden) {
            return Err(ResultError::Refused {
                path: shown_pointer(path),
                what: "a member name with invisible format or control characters".into(),
            });
        }
        if rules.secrets != SecretAction::Off {
            if let Some(i) = self.set.matches(name).into_iter().next() {
                return Err(ResultError::Refused {
                    path: shown_pointer(path),
                    what: format!(
                        "a member name matching the secret pattern {}",
                        self.names[i]
                    ),
                });
            }
        }
        Ok(())
    }

    fn filter_string(
        &self,
        s: &mut String,
        path: &str,
        rules: &Effective,
        hits: &mut Vec<bool>,
        findings: &mut Findings,
    ) -> Result<(), ResultError> {
        let at = || shown_pointer(path);
        if rules.invisible != InvisibleAction::Allow && s.chars().any(is_hidden) {
            if rules.invisible == InvisibleAction::Refuse {
                return Err(ResultError::Refused {
                    path: at(),
                    what: "invisible format or control characters".into(),
                });
            }
            s.retain(|c| !is_hidden(c));
            findings.stripped += 1;
        }
        if rules.secrets == SecretAction::Off || !self.set.is_match(s) {
            return Ok(());
        }
        let matched: Vec<usize> = self.set.matches(s).into_iter().collect();
        if rules.secrets == SecretAction::Refuse {
            let first = matched.first().map(|&i| self.names[i].as_str());
            return Err(ResultError::Refused {
                path: at(),
                what: format!("text matching the secret pattern {}", first.unwrap_or("?")),
            });
        }
        hits.resize(self.names.len(), false);
        let mut matched = matched;
        // A marker can expose a secret the redacted text hid (it gives the
        // next one its word boundary: `AIza…` followed by `AKIA…`), so
        // redact until nothing matches; text that still matches after
        // REDACT_ROUNDS passes is refused rather than shown.
        for _ in 0..REDACT_ROUNDS {
            for i in matched {
                let marker = format!("[REDACTED:{}]", self.names[i]);
                let replaced = self.each[i].replace_all(s, marker.as_str());
                if let std::borrow::Cow::Owned(new) = replaced {
                    *s = new;
                    hits[i] = true;
                }
            }
            matched = self.set.matches(s).into_iter().collect();
            if matched.is_empty() {
                return Ok(());
            }
        }
        Err(ResultError::Refused {
            path: at(),
            what: format!(
                "text matching the secret pattern {} after {REDACT_ROUNDS} redactions",
                matched.first().map_or("?", |&i| self.names[i].as_str())
            ),
        })
    }
}

/// Characters hidden from a human reader: the sanitizer's invisible and
/// bidirectional set, and control characters other than tab, CR and LF
/// (terminal escape sequences among them).
fn is_hidden(c: char) -> bool {
    super::sanitize::is_bidi_or_invisible(c) || (c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

/// Longest member name shown as it is in a refusal's JSON Pointer.
const SHOWN_KEY_CHARS: usize = 32;
/// Most segments shown in a refusal's JSON Pointer.
const SHOWN_SEGMENTS: usize = 8;

/// A JSON Pointer into a backend's result, as a refusal may show it to a
/// client (and through a bridge, to a model): member names are the
/// backend's choice, so a segment is shown only when it is an array index
/// or a short plain name (ASCII letters, digits, `_`, `-`, `.`); any other
/// becomes `*`, and a pointer deeper than [`SHOWN_SEGMENTS`] ends in `…`.
/// This bounds what a backend can spell here (no spaces, no control or
/// invisible characters, at most 8 × 32 identifier characters); it does not
/// stop it spelling identifier-shaped words, which is why the bridge never
/// passes a backend-fault denial's message to an MCP host at all.
fn shown_pointer(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".into();
    }
    let mut out = String::new();
    for (i, seg) in path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .enumerate()
    {
        if i == SHOWN_SEGMENTS {
            out.push_str("/…");
            break;
        }
        out.push('/');
        let plain = !seg.is_empty()
            && seg.len() <= SHOWN_KEY_CHARS
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        out.push_str(if plain { seg } else { "*" });
    }
    out
}

fn invalid(path: &str, rule: impl Into<String>) -> ResultError {
    ResultError::Invalid {
        path: shown_pointer(path),
        rule: rule.into(),
    }
}

/// The member each list-like result must carry as an array.
fn required_array(method: &str) -> Option<&'static str> {
    Some(match method {
        "resources/list" => "resources",
        "resources/templates/list" => "resourceTemplates",
        "resources/read" => "contents",
        "prompts/list" => "prompts",
        "prompts/get" => "messages",
        _ => return None,
    })
}

/// The shape MCP 2025-11-25 defines for each result the gateway forwards,
/// and a tool result against its pinned outputSchema.
fn check_shape(method: &str, tool: Option<&PinnedTool>, result: &Value) -> Result<(), ResultError> {
    let Value::Object(map) = result else {
        return Err(invalid("/", "is not an object"));
    };
    if let Some(meta) = map.get("_meta") {
        if !meta.is_object() {
            return Err(invalid("/_meta", "is not an object"));
        }
    }
    if method == "tools/call" {
        let content = map
            .get("content")
            .ok_or_else(|| invalid("/content", "is missing"))?;
        let Value::Array(blocks) = content else {
            return Err(invalid("/content", "is not an array"));
        };
        for (i, block) in blocks.iter().enumerate() {
            if !block.get("type").is_some_and(Value::is_string) {
                return Err(invalid(
                    &format!("/content/{i}"),
                    "is not a content block with a type",
                ));
            }
        }
        let is_error = match map.get("isError") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("/isError", "is not a boolean")),
        };
        let structured = map.get("structuredContent");
        if structured.is_some_and(|s| !s.is_object()) {
            return Err(invalid("/structuredContent", "is not an object"));
        }
        // A tool error need not follow the outputSchema (MCP: servers
        // provide structured results that conform to it when they succeed).
        if let Some(tool) = tool.filter(|_| !is_error) {
            if tool.has_output_schema() {
                let s = structured.ok_or_else(|| {
                    invalid(
                        "/structuredContent",
                        "is missing, though the tool has an outputSchema",
                    )
                })?;
                tool.validate_output(s).map_err(|(path, keyword)| {
                    invalid(
                        &format!("/structuredContent{path}"),
                        format!("fails the outputSchema's \"{keyword}\" rule"),
                    )
                })?;
            }
        }
    } else if let Some(member) = required_array(method) {
        match map.get(member) {
            Some(Value::Array(_)) => {}
            Some(_) => return Err(invalid(&format!("/{member}"), "is not an array")),
            None => return Err(invalid(&format!("/{member}"), "is missing")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
