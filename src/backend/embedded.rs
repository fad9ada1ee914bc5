//! Embedded MCP backend: a small, offline stand-in for the European Parliament
//! MCP Server (npm package `european-parliament-mcp-server`, v1.1.26).
//!
//! What it owns:
//! - The tool definitions (`name`, `description`, `inputSchema`, `category`) of a
//!   subset of that server's tools, copied verbatim from its `tools/list` answer.
//! - The argument validation for those tools, mirroring the server's Zod schemas
//!   (types, integer-only `limit`/`offset`, ranges, lengths, patterns, enums).
//! - The answers, computed with real filtering and pagination over the bundled
//!   dataset `sample_data.json`, in the same result format as the real server:
//!   a `CallToolResult` whose single text content is pretty-printed JSON.
//!
//! The data is SAMPLE DATA: every MEP, e-mail address, committee membership,
//! document, question, plenary session and vote in `sample_data.json` is
//! fictional and invented for offline use, tests and demos. It is NOT real
//! European Parliament data, and every result says so in its `dataSource` field.
//!
//! What it must never do: present its data as real European Parliament data,
//! reach the network, touch the file system at run time (the dataset is compiled
//! in), or panic on any input: bad arguments and unknown tools become
//! `isError: true` results.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Marker put in every result (success or error) so nobody mistakes it for real data.
const DATA_SOURCE: &str = "sealgate embedded sample data (fictional)";

/// The bundled, fictional dataset.
const SAMPLE_DATA_JSON: &str = include_str!("sample_data.json");

/// Largest integer Zod's `.int()` accepts (JavaScript's `Number.MAX_SAFE_INTEGER`).
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// Longest tool name echoed back in an "Unknown tool" error.
const MAX_ECHOED_NAME: usize = 128;

/// Tool definitions copied verbatim from the `tools/list` answer of
/// `european-parliament-mcp-server` v1.1.26 (same order as the real server).
const TOOL_DEFINITIONS_JSON: &str = r###"[
  {
    "name": "get_meps",
    "description": "Retrieve Members of European Parliament with optional filters (country, political group, committee, active status). Returns paginated results with MEP details including name, country, political group, committees, and contact information.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "country": {
          "type": "string",
          "description": "ISO 3166-1 alpha-2 country code (e.g., \"SE\" for Sweden)",
          "pattern": "^[A-Z]{2}$",
          "minLength": 2,
          "maxLength": 2
        },
        "group": {
          "type": "string",
          "description": "Political group identifier (e.g., \"EPP\", \"S&D\", \"Greens/EFA\")",
          "minLength": 1,
          "maxLength": 50
        },
        "committee": {
          "type": "string",
          "description": "Committee identifier (e.g., \"ENVI\", \"AGRI\")",
          "minLength": 1,
          "maxLength": 100
        },
        "active": {
          "type": "boolean",
          "description": "Filter by active status",
          "default": true
        },
        "limit": {
          "type": "number",
          "description": "Maximum number of results to return (1-100)",
          "minimum": 1,
          "maximum": 100,
          "default": 50
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "minimum": 0,
          "default": 0
        }
      }
    },
    "category": "core"
  },
  {
    "name": "get_mep_details",
    "description": "Retrieve detailed information about a specific Member of European Parliament including biography, contact information, committee memberships, voting statistics, and parliamentary activities. Personal data access is logged for GDPR compliance.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "id": {
          "type": "string",
          "description": "MEP identifier (e.g., \"MEP-124810\")",
          "minLength": 1,
          "maxLength": 100
        }
      },
      "required": [
        "id"
      ]
    },
    "category": "core"
  },
  {
    "name": "get_plenary_sessions",
    "description": "Retrieve European Parliament plenary sessions/meetings. Supports single meeting lookup by eventId or list with year, date, and location filters. Returns session details including date, location, agenda items, voting records, and attendance statistics.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "eventId": {
          "type": "string",
          "description": "Meeting event ID for single meeting lookup"
        },
        "year": {
          "type": "number",
          "description": "Filter by calendar year (recommended for annual counts)",
          "minimum": 1900,
          "maximum": 2100
        },
        "dateFrom": {
          "type": "string",
          "description": "Start date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "dateTo": {
          "type": "string",
          "description": "End date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "location": {
          "type": "string",
          "description": "Session location (e.g., \"Strasbourg\", \"Brussels\")",
          "minLength": 1,
          "maxLength": 100
        },
        "limit": {
          "type": "number",
          "description": "Maximum number of results to return (1-100)",
          "minimum": 1,
          "maximum": 100,
          "default": 50
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "minimum": 0,
          "default": 0
        }
      }
    },
    "category": "core"
  },
  {
    "name": "get_voting_records",
    "description": "Retrieve voting records from European Parliament plenary sessions. Filter by session, MEP, topic, or date range. Returns vote counts (for/against/abstain), final result, and optionally individual MEP votes.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "sessionId": {
          "type": "string",
          "description": "Plenary session identifier",
          "minLength": 1,
          "maxLength": 100
        },
        "mepId": {
          "type": "string",
          "description": "MEP identifier to filter votes by specific MEP",
          "minLength": 1,
          "maxLength": 100
        },
        "topic": {
          "type": "string",
          "description": "Vote topic or keyword to search",
          "minLength": 1,
          "maxLength": 200
        },
        "dateFrom": {
          "type": "string",
          "description": "Start date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "dateTo": {
          "type": "string",
          "description": "End date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "limit": {
          "type": "number",
          "description": "Maximum number of results to return (1-100)",
          "minimum": 1,
          "maximum": 100,
          "default": 50
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "minimum": 0,
          "default": 0
        }
      }
    },
    "category": "core"
  },
  {
    "name": "search_documents",
    "description": "Search European Parliament legislative documents by keyword, or retrieve a single document by docId. Filter by document type (REPORT, RESOLUTION, DECISION, DIRECTIVE, REGULATION, OPINION), date range, and committee. Returns document metadata including title, authors, status, and PDF/XML links.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "docId": {
          "type": "string",
          "description": "Document ID for single document lookup (bypasses keyword search)"
        },
        "keyword": {
          "type": "string",
          "description": "Search keyword or phrase (alphanumeric, spaces, hyphens, underscores only)",
          "minLength": 1,
          "maxLength": 200,
          "pattern": "^[a-zA-Z0-9\\s\\-_]+$"
        },
        "documentType": {
          "type": "string",
          "description": "Filter by document type",
          "enum": [
            "REPORT",
            "RESOLUTION",
            "DECISION",
            "DIRECTIVE",
            "REGULATION",
            "OPINION",
            "AMENDMENT"
          ]
        },
        "dateFrom": {
          "type": "string",
          "description": "Start date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "dateTo": {
          "type": "string",
          "description": "End date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "committee": {
          "type": "string",
          "description": "Committee identifier",
          "minLength": 1,
          "maxLength": 100
        },
        "limit": {
          "type": "number",
          "description": "Maximum number of results to return (1-100)",
          "minimum": 1,
          "maximum": 100,
          "default": 20
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "minimum": 0,
          "default": 0
        }
      }
    },
    "category": "core"
  },
  {
    "name": "get_committee_info",
    "description": "Retrieve detailed information about EP corporate bodies/committees. Query by ID, abbreviation, or set showCurrent=true for all current active bodies. Returns composition, chair, vice-chairs, members, meeting schedules, and areas of responsibility.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "id": {
          "type": "string",
          "description": "Committee identifier",
          "minLength": 1,
          "maxLength": 100
        },
        "abbreviation": {
          "type": "string",
          "description": "Committee abbreviation (e.g., \"ENVI\", \"AGRI\", \"ECON\")",
          "minLength": 1,
          "maxLength": 20
        },
        "showCurrent": {
          "type": "boolean",
          "description": "If true, returns all current active corporate bodies",
          "default": false
        }
      }
    },
    "category": "core"
  },
  {
    "name": "get_parliamentary_questions",
    "description": "Retrieve European Parliament questions (written and oral) submitted by MEPs, or a single question by docId. Filter by question type, author, topic, status (pending/answered), and date range. Returns question text, answers if available, and metadata.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "docId": {
          "type": "string",
          "description": "Document ID for single question lookup"
        },
        "type": {
          "type": "string",
          "description": "Question type",
          "enum": [
            "WRITTEN",
            "ORAL"
          ]
        },
        "author": {
          "type": "string",
          "description": "MEP identifier or name of question author",
          "minLength": 1,
          "maxLength": 100
        },
        "topic": {
          "type": "string",
          "description": "Question topic or keyword to search",
          "minLength": 1,
          "maxLength": 200
        },
        "status": {
          "type": "string",
          "description": "Question status",
          "enum": [
            "PENDING",
            "ANSWERED"
          ]
        },
        "dateFrom": {
          "type": "string",
          "description": "Start date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "dateTo": {
          "type": "string",
          "description": "End date filter (YYYY-MM-DD format)",
          "pattern": "^\\d{4}-\\d{2}-\\d{2}$"
        },
        "limit": {
          "type": "number",
          "description": "Maximum number of results to return (1-100)",
          "minimum": 1,
          "maximum": 100,
          "default": 50
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "minimum": 0,
          "default": 0
        }
      }
    },
    "category": "core"
  },
  {
    "name": "get_current_meps",
    "description": "Get currently active Members of European Parliament (today's date). Returns only MEPs with active mandates. Data source: European Parliament Open Data Portal.",
    "inputSchema": {
      "type": "object",
      "properties": {
        "limit": {
          "type": "number",
          "description": "Maximum results to return (1-100)",
          "default": 50
        },
        "offset": {
          "type": "number",
          "description": "Pagination offset",
          "default": 0
        }
      }
    },
    "category": "phase4"
  }
]"###;

// ---------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VotingStatistics {
    total_votes: u64,
    votes_for: u64,
    votes_against: u64,
    abstentions: u64,
    attendance_rate: f64,
}

/// An MEP with the fields of the real server's `MEPDetailsSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Mep {
    id: String,
    name: String,
    country: String,
    political_group: String,
    committees: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    active: bool,
    term_start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    term_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    biography: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    roles: Vec<String>,
    voting_statistics: VotingStatistics,
}

impl Mep {
    /// The list form (`MEPSchema`) used by `get_meps` and `get_current_meps`.
    fn summary(&self) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), json!(self.id));
        out.insert("name".into(), json!(self.name));
        out.insert("country".into(), json!(self.country));
        out.insert("politicalGroup".into(), json!(self.political_group));
        out.insert("committees".into(), json!(self.committees));
        if let Some(email) = &self.email {
            out.insert("email".into(), json!(email));
        }
        out.insert("active".into(), json!(self.active));
        out.insert("termStart".into(), json!(self.term_start));
        if let Some(end) = &self.term_end {
            out.insert("termEnd".into(), json!(end));
        }
        Value::Object(out)
    }
}

/// A committee with the fields of the real server's `CommitteeSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Committee {
    id: String,
    name: String,
    abbreviation: String,
    members: Vec<String>,
    chair: String,
    vice_chairs: Vec<String>,
    meeting_schedule: Vec<String>,
    responsibilities: Vec<String>,
}

/// A plenary session with the fields of the real server's `PlenarySessionSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PlenarySession {
    id: String,
    date: String,
    location: String,
    agenda_items: Vec<String>,
    voting_records: Vec<String>,
    attendance_count: u64,
    documents: Vec<String>,
}

/// A vote with the fields of the real server's `VotingRecordSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VotingRecord {
    id: String,
    session_id: String,
    topic: String,
    date: String,
    votes_for: u64,
    votes_against: u64,
    abstentions: u64,
    result: String,
    mep_votes: BTreeMap<String, String>,
}

/// A document with the fields of the real server's `LegislativeDocumentSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    id: String,
    #[serde(rename = "type")]
    doc_type: String,
    title: String,
    date: String,
    authors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committee: Option<String>,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

/// A question with the fields of the real server's `ParliamentaryQuestionSchema`
/// plus `authorName` (the real server only gives the author's identifier).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Question {
    id: String,
    #[serde(rename = "type")]
    question_type: String,
    author: String,
    author_name: String,
    date: String,
    topic: String,
    question_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer_date: Option<String>,
    status: String,
}

/// The parsed `sample_data.json` (its `_notice` and `dataSource` fields are
/// checked by the unit tests, not needed at run time).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dataset {
    meps: Vec<Mep>,
    committees: Vec<Committee>,
    plenary_sessions: Vec<PlenarySession>,
    voting_records: Vec<VotingRecord>,
    documents: Vec<Document>,
    parliamentary_questions: Vec<Question>,
}

// ---------------------------------------------------------------------------
// Errors and argument validation
// ---------------------------------------------------------------------------

/// Why a call failed; rendered as the real server does: `{"error", "toolName"}`.
#[derive(Debug)]
enum CallError {
    UnknownTool,
    /// Argument rejected by the schema: field (JSON path) and Zod-like message.
    InvalidArgument {
        field: String,
        message: String,
    },
    /// Valid arguments but nothing to answer (e.g. unknown MEP id).
    Failed {
        context: &'static str,
        message: String,
    },
}

impl CallError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        CallError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn render(&self, tool: &str) -> String {
        match self {
            CallError::UnknownTool => format!("Unknown tool: {tool}"),
            CallError::InvalidArgument { field, message } => {
                format!("Invalid arguments: {field}: {message}")
            }
            CallError::Failed { context, message } => format!("{context}: {message}"),
        }
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JavaScript's `\s` (WhiteSpace and LineTerminator), as used by the real keyword regex.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{000B}' | '\u{000C}' | '\r' | ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

/// `^\d{4}-\d{2}-\d{2}$` (JavaScript `\d` is ASCII only).
fn is_date_string(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Case-insensitive substring test.
fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Case-insensitive equality (after trimming, like the real server's group filter).
fn eq_ci(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Within an inclusive `YYYY-MM-DD` range (string order is date order for this format).
fn in_date_range(date: &str, from: Option<&str>, to: Option<&str>) -> bool {
    from.is_none_or(|f| date >= f) && to.is_none_or(|t| date <= t)
}

/// Canonical MEP id: accepts `person/900001`, `MEP-900001` or `900001`, like the real server.
fn canonical_mep_id(id: &str) -> String {
    let bare = id
        .strip_prefix("MEP-")
        .or_else(|| id.strip_prefix("person/"))
        .unwrap_or(id);
    format!("person/{bare}")
}

/// Validated view of a tool's `arguments`. Keys not in the schema are ignored,
/// as the real server's (non-strict) Zod objects do.
struct Args<'a>(&'a Map<String, Value>);

impl<'a> Args<'a> {
    /// Optional string with length bounds counted in UTF-16 units (as JavaScript does).
    fn string(&self, key: &str, min: usize, max: usize) -> Result<Option<&'a str>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let len = s.encode_utf16().count();
                if len < min {
                    Err(CallError::invalid(
                        key,
                        format!("Too small: expected string to have >={min} characters"),
                    ))
                } else if len > max {
                    Err(CallError::invalid(
                        key,
                        format!("Too big: expected string to have <={max} characters"),
                    ))
                } else {
                    Ok(Some(s.as_str()))
                }
            }
            Some(other) => Err(CallError::invalid(
                key,
                format!(
                    "Invalid input: expected string, received {}",
                    json_type_name(other)
                ),
            )),
        }
    }

    fn required_string(&self, key: &str, min: usize, max: usize) -> Result<&'a str, CallError> {
        self.string(key, min, max)?.ok_or_else(|| {
            CallError::invalid(key, "Invalid input: expected string, received undefined")
        })
    }

    /// Optional ISO 3166-1 alpha-2 code: length 2, then `^[A-Z]{2}$`.
    fn country(&self, key: &str) -> Result<Option<&'a str>, CallError> {
        match self.string(key, 2, 2)? {
            None => Ok(None),
            Some(s) if s.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Some(s)),
            Some(_) => Err(CallError::invalid(
                key,
                "Country code must be 2 uppercase letters",
            )),
        }
    }

    /// Optional `YYYY-MM-DD` date.
    fn date(&self, key: &str) -> Result<Option<&'a str>, CallError> {
        match self.string(key, 0, usize::MAX)? {
            None => Ok(None),
            Some(s) if is_date_string(s) => Ok(Some(s)),
            Some(_) => Err(CallError::invalid(key, "Date must be in YYYY-MM-DD format")),
        }
    }

    /// Optional string that must be one of `allowed` (case-sensitive).
    fn one_of(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(value) => match value
                .as_str()
                .and_then(|s| allowed.iter().find(|a| **a == s))
            {
                Some(found) => Ok(Some(*found)),
                None => Err(CallError::invalid(
                    key,
                    format!(
                        "Invalid option: expected one of {}",
                        allowed
                            .iter()
                            .map(|a| format!("\"{a}\""))
                            .collect::<Vec<_>>()
                            .join("|")
                    ),
                )),
            },
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, CallError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(CallError::invalid(
                key,
                format!(
                    "Invalid input: expected boolean, received {}",
                    json_type_name(other)
                ),
            )),
        }
    }

    /// Optional integer (Zod `.int()`: a JSON number with no fractional part,
    /// within JavaScript's safe-integer range) in `min..=max`.
    fn integer(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, CallError> {
        let number = match self.0.get(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n,
            Some(other) => {
                return Err(CallError::invalid(
                    key,
                    format!(
                        "Invalid input: expected number, received {}",
                        json_type_name(other)
                    ),
                ))
            }
        };
        let not_int = || CallError::invalid(key, "Invalid input: expected int, received number");
        let too_big = || {
            CallError::invalid(
                key,
                format!("Too big: expected int to be <={MAX_SAFE_INTEGER}"),
            )
        };
        let too_small = || {
            CallError::invalid(
                key,
                format!("Too small: expected int to be >=-{MAX_SAFE_INTEGER}"),
            )
        };
        let value = if let Some(i) = number.as_i64() {
            i
        } else if number.is_u64() {
            return Err(too_big());
        } else {
            let f = number.as_f64().unwrap_or(f64::NAN);
            if !f.is_finite() || f.fract() != 0.0 {
                return Err(not_int());
            }
            if f > MAX_SAFE_INTEGER as f64 {
                return Err(too_big());
            }
            if f < -(MAX_SAFE_INTEGER as f64) {
                return Err(too_small());
            }
            // |f| <= 2^53 - 1 here, so the cast is exact.
            f as i64
        };
        if value > MAX_SAFE_INTEGER {
            return Err(too_big());
        }
        if value < -MAX_SAFE_INTEGER {
            return Err(too_small());
        }
        if value < min {
            return Err(CallError::invalid(
                key,
                format!("Too small: expected number to be >={min}"),
            ));
        }
        if value > max {
            return Err(CallError::invalid(
                key,
                format!("Too big: expected number to be <={max}"),
            ));
        }
        Ok(Some(value))
    }

    /// `limit` (1..=100, default `default_limit`) and `offset` (>= 0, default 0).
    fn page(&self, default_limit: i64) -> Result<Page, CallError> {
        let limit = self.integer("limit", 1, 100)?.unwrap_or(default_limit);
        let offset = self.integer("offset", 0, MAX_SAFE_INTEGER)?.unwrap_or(0);
        Ok(Page { limit, offset })
    }
}

#[derive(Debug, Clone, Copy)]
struct Page {
    limit: i64,
    offset: i64,
}

impl Page {
    /// One page of `items` in the real server's `PaginatedResponseSchema` shape
    /// (`data`, `total`, `limit`, `offset`, `hasMore`) plus `dataSource`.
    fn apply(self, items: Vec<Value>) -> Value {
        let total = items.len();
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(self.limit).unwrap_or(0);
        let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
        let has_more = offset.saturating_add(data.len()) < total;
        json!({
            "data": data,
            "total": total,
            "limit": self.limit,
            "offset": self.offset,
            "hasMore": has_more,
            "dataSource": DATA_SOURCE,
        })
    }
}

/// Serializes a dataset record and tags it with `dataSource`.
fn tagged<T: Serialize>(record: &T) -> Value {
    match serde_json::to_value(record) {
        Ok(Value::Object(mut map)) => {
            map.insert("dataSource".into(), json!(DATA_SOURCE));
            Value::Object(map)
        }
        Ok(other) => other,
        Err(_) => json!({ "dataSource": DATA_SOURCE }),
    }
}

fn to_values<T: Serialize>(records: Vec<&T>) -> Vec<Value> {
    records
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn success(result: &Value) -> Value {
    json!({ "content": [{ "type": "text", "text": pretty(result) }] })
}

fn failure(tool: &str, error: &CallError) -> Value {
    let tool: String = tool.chars().take(MAX_ECHOED_NAME).collect();
    let body = json!({
        "error": error.render(&tool),
        "toolName": tool,
        "dataSource": DATA_SOURCE,
    });
    json!({ "content": [{ "type": "text", "text": pretty(&body) }], "isError": true })
}

// ---------------------------------------------------------------------------
// The tools
// ---------------------------------------------------------------------------

/// The embedded backend: parsed sample dataset and tool definitions, built once.
pub struct EmbeddedTools {
    tools: Vec<Value>,
    data: Dataset,
}

impl Default for EmbeddedTools {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedTools {
    /// Loads the bundled sample dataset (`include_str!("sample_data.json")`) and tool definitions.
    pub fn new() -> Self {
        // Both are compiled into the binary and covered by unit tests, so a
        // failure here is a build defect, never a consequence of input.
        let tools: Vec<Value> = serde_json::from_str(TOOL_DEFINITIONS_JSON)
            .expect("embedded tool definitions are valid JSON");
        let data: Dataset = serde_json::from_str(SAMPLE_DATA_JSON)
            .expect("bundled sample_data.json matches the embedded dataset schema");
        Self { tools, data }
    }

    /// MCP Tool objects (`name`, `description`, `inputSchema`, `category`), in the real server's order.
    pub fn tool_definitions(&self) -> &[Value] {
        &self.tools
    }

    /// Runs one tool and returns an MCP `CallToolResult`:
    /// `{"content":[{"type":"text","text":<pretty JSON>}]}` on success, and
    /// `{"content":[{"type":"text","text":<pretty JSON {"error","toolName","dataSource"}>}],"isError":true}`
    /// for an unknown tool, invalid arguments or nothing found. Never panics.
    pub fn call(&self, name: &str, arguments: &Map<String, Value>) -> Value {
        let args = Args(arguments);
        let result = match name {
            "get_meps" => self.get_meps(&args),
            "get_mep_details" => self.get_mep_details(&args),
            "get_plenary_sessions" => self.get_plenary_sessions(&args),
            "get_voting_records" => self.get_voting_records(&args),
            "search_documents" => self.search_documents(&args),
            "get_committee_info" => self.get_committee_info(&args),
            "get_parliamentary_questions" => self.get_parliamentary_questions(&args),
            "get_current_meps" => self.get_current_meps(&args),
            _ => Err(CallError::UnknownTool),
        };
        match result {
            Ok(value) => success(&value),
            Err(error) => failure(name, &error),
        }
    }

    /// `get_meps`: `active` true (default) keeps serving MEPs only; false lists all
    /// MEPs, serving and former (the real server maps it to EP status `all`).
    fn get_meps(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let country = args.country("country")?;
        let group = args.string("group", 1, 50)?;
        let committee = args.string("committee", 1, 100)?;
        let active = args.boolean("active")?.unwrap_or(true);
        let page = args.page(50)?;
        let items = self
            .data
            .meps
            .iter()
            .filter(|m| !active || m.active)
            .filter(|m| country.is_none_or(|c| m.country == c))
            .filter(|m| group.is_none_or(|g| eq_ci(&m.political_group, g)))
            .filter(|m| committee.is_none_or(|c| m.committees.iter().any(|mc| eq_ci(mc, c))))
            .map(Mep::summary)
            .collect();
        Ok(page.apply(items))
    }

    fn get_mep_details(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let id = args.required_string("id", 1, 100)?;
        let wanted = canonical_mep_id(id);
        self.data
            .meps
            .iter()
            .find(|m| m.id == wanted)
            .map(tagged)
            .ok_or_else(|| CallError::Failed {
                context: "Failed to retrieve MEP details",
                message: format!("MEP with ID {id} not found"),
            })
    }

    fn get_plenary_sessions(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let event_id = args.string("eventId", 1, 200)?;
        let year = args.integer("year", 1900, 2100)?;
        let date_from = args.date("dateFrom")?;
        let date_to = args.date("dateTo")?;
        let location = args.string("location", 1, 100)?;
        let page = args.page(50)?;
        if let Some(event_id) = event_id {
            return self
                .data
                .plenary_sessions
                .iter()
                .find(|s| s.id == event_id)
                .map(tagged)
                .ok_or_else(|| CallError::Failed {
                    context: "Failed to retrieve plenary sessions",
                    message: format!("Meeting not found: {event_id}"),
                });
        }
        let year_prefix = year.map(|y| format!("{y:04}-"));
        let sessions = self
            .data
            .plenary_sessions
            .iter()
            .filter(|s| year_prefix.as_deref().is_none_or(|p| s.date.starts_with(p)))
            .filter(|s| in_date_range(&s.date, date_from, date_to))
            .filter(|s| location.is_none_or(|l| contains_ci(&s.location, l)))
            .collect();
        Ok(page.apply(to_values(sessions)))
    }

    fn get_voting_records(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let session_id = args.string("sessionId", 1, 100)?;
        let mep_id = args.string("mepId", 1, 100)?.map(canonical_mep_id);
        let topic = args.string("topic", 1, 200)?;
        let date_from = args.date("dateFrom")?;
        let date_to = args.date("dateTo")?;
        let page = args.page(50)?;
        let records = self
            .data
            .voting_records
            .iter()
            .filter(|v| session_id.is_none_or(|s| v.session_id == s))
            .filter(|v| mep_id.as_ref().is_none_or(|m| v.mep_votes.contains_key(m)))
            .filter(|v| topic.is_none_or(|t| contains_ci(&v.topic, t)))
            .filter(|v| in_date_range(&v.date, date_from, date_to))
            .collect();
        Ok(page.apply(to_values(records)))
    }

    /// `search_documents`: `docId` returns one document; otherwise all filters are
    /// ANDed. `keyword` is an optional phrase matched (case-insensitively) against
    /// title, summary and id; the real server requires it unless `docId` is given.
    fn search_documents(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let doc_id = args.string("docId", 1, 200)?;
        let keyword = args.string("keyword", 1, 200)?;
        if let Some(k) = keyword {
            if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || is_js_whitespace(c))
            {
                return Err(CallError::invalid(
                    "keyword",
                    "Invalid characters in keyword",
                ));
            }
        }
        let document_type = args.one_of(
            "documentType",
            &[
                "REPORT",
                "RESOLUTION",
                "DECISION",
                "DIRECTIVE",
                "REGULATION",
                "OPINION",
                "AMENDMENT",
            ],
        )?;
        let date_from = args.date("dateFrom")?;
        let date_to = args.date("dateTo")?;
        let committee = args.string("committee", 1, 100)?;
        let page = args.page(20)?;
        if let Some(doc_id) = doc_id {
            return self
                .data
                .documents
                .iter()
                .find(|d| d.id == doc_id)
                .map(tagged)
                .ok_or_else(|| CallError::Failed {
                    context: "Failed to search documents",
                    message: format!("Document not found: {doc_id}"),
                });
        }
        let keyword = match keyword {
            Some(k) if k.trim_matches(is_js_whitespace).is_empty() => {
                return Err(CallError::Failed {
                    context: "Failed to search documents",
                    message: "keyword must not be blank".into(),
                })
            }
            Some(k) => Some(k.trim_matches(is_js_whitespace)),
            None => None,
        };
        let documents = self
            .data
            .documents
            .iter()
            .filter(|d| {
                keyword.is_none_or(|k| {
                    contains_ci(&d.title, k)
                        || d.summary.as_deref().is_some_and(|s| contains_ci(s, k))
                        || contains_ci(&d.id, k)
                })
            })
            .filter(|d| document_type.is_none_or(|t| d.doc_type == t))
            .filter(|d| in_date_range(&d.date, date_from, date_to))
            .filter(|d| {
                committee.is_none_or(|c| d.committee.as_deref().is_some_and(|dc| eq_ci(dc, c)))
            })
            .collect();
        Ok(page.apply(to_values(documents)))
    }

    /// `get_committee_info`: `showCurrent: true` lists all current bodies (first
    /// page of 50, like the real server); else `abbreviation` (preferred) or `id`
    /// selects one committee.
    fn get_committee_info(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let id = args.string("id", 1, 100)?;
        let abbreviation = args.string("abbreviation", 1, 20)?;
        let show_current = args.boolean("showCurrent")?.unwrap_or(false);
        if show_current {
            let page = Page {
                limit: 50,
                offset: 0,
            };
            return Ok(page.apply(to_values(self.data.committees.iter().collect())));
        }
        let found = match (abbreviation, id) {
            (Some(a), _) => self
                .data
                .committees
                .iter()
                .find(|c| eq_ci(&c.abbreviation, a) || eq_ci(&c.id, a)),
            (None, Some(i)) => self
                .data
                .committees
                .iter()
                .find(|c| eq_ci(&c.id, i) || eq_ci(&c.abbreviation, i)),
            (None, None) => None,
        };
        found.map(tagged).ok_or_else(|| CallError::Failed {
            context: "Failed to retrieve committee information",
            message: format!(
                "Committee not found: {}",
                abbreviation.or(id).unwrap_or("unknown")
            ),
        })
    }

    /// `get_parliamentary_questions`: `author` matches the MEP id or name,
    /// `topic` the topic or question text (both case-insensitive substrings).
    fn get_parliamentary_questions(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let doc_id = args.string("docId", 1, 200)?;
        let question_type = args.one_of("type", &["WRITTEN", "ORAL"])?;
        let author = args.string("author", 1, 100)?;
        let topic = args.string("topic", 1, 200)?;
        let status = args.one_of("status", &["PENDING", "ANSWERED"])?;
        let date_from = args.date("dateFrom")?;
        let date_to = args.date("dateTo")?;
        let page = args.page(50)?;
        if let Some(doc_id) = doc_id {
            return self
                .data
                .parliamentary_questions
                .iter()
                .find(|q| q.id == doc_id)
                .map(tagged)
                .ok_or_else(|| CallError::Failed {
                    context: "Failed to retrieve parliamentary questions",
                    message: format!("Question not found: {doc_id}"),
                });
        }
        let author_id = author.map(canonical_mep_id);
        let questions = self
            .data
            .parliamentary_questions
            .iter()
            .filter(|q| question_type.is_none_or(|t| q.question_type == t))
            .filter(|q| {
                author.is_none_or(|a| {
                    contains_ci(&q.author, a)
                        || contains_ci(&q.author_name, a)
                        || author_id.as_deref() == Some(q.author.as_str())
                })
            })
            .filter(|q| {
                topic.is_none_or(|t| contains_ci(&q.topic, t) || contains_ci(&q.question_text, t))
            })
            .filter(|q| status.is_none_or(|s| q.status == s))
            .filter(|q| in_date_range(&q.date, date_from, date_to))
            .collect();
        Ok(page.apply(to_values(questions)))
    }

    fn get_current_meps(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let page = args.page(50)?;
        let items = self
            .data
            .meps
            .iter()
            .filter(|m| m.active)
            .map(Mep::summary)
            .collect();
        Ok(page.apply(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("test arguments must be an object, got {other}"),
        }
    }

    /// The JSON inside the single text content item of a result.
    fn body(result: &Value) -> Value {
        let content = result["content"]
            .as_array()
            .expect("result has a content array");
        assert_eq!(content.len(), 1, "one content item: {result}");
        assert_eq!(content[0]["type"], "text");
        let text = content[0]["text"].as_str().expect("text content");
        serde_json::from_str(text).expect("text content is JSON")
    }

    fn ok(tools: &EmbeddedTools, name: &str, arguments: Value) -> Value {
        let result = tools.call(name, &obj(arguments));
        assert!(result.get("isError").is_none(), "{name} failed: {result}");
        assert!(result.get("structuredContent").is_none());
        let body = body(&result);
        assert_eq!(body["dataSource"], DATA_SOURCE, "{name} result is marked");
        body
    }

    fn err(tools: &EmbeddedTools, name: &str, arguments: Value) -> String {
        let result = tools.call(name, &obj(arguments));
        assert_eq!(
            result["isError"],
            json!(true),
            "{name} should fail: {result}"
        );
        let body = body(&result);
        assert_eq!(body["dataSource"], DATA_SOURCE);
        assert_eq!(body["toolName"], name);
        body["error"].as_str().expect("error message").to_string()
    }

    fn ids(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .expect("paginated data array")
            .iter()
            .map(|item| item["id"].as_str().expect("item id").to_string())
            .collect()
    }

    fn raw_dataset() -> Value {
        serde_json::from_str(SAMPLE_DATA_JSON).expect("sample_data.json is JSON")
    }

    #[test]
    fn bundled_data_and_definitions_parse() {
        let tools = EmbeddedTools::new();
        assert_eq!(tools.tool_definitions().len(), 8);
        assert_eq!(tools.data.meps.len(), 30);
        let _ = EmbeddedTools::default();
    }

    #[test]
    fn dataset_is_labelled_as_fictional_sample_data() {
        let raw = raw_dataset();
        let notice = raw["_notice"]
            .as_str()
            .expect("_notice present")
            .to_lowercase();
        assert!(notice.contains("fictional sample data"));
        assert!(notice.contains("not real european parliament data"));
        assert_eq!(raw["dataSource"], DATA_SOURCE);
        let tools = EmbeddedTools::new();
        for mep in &tools.data.meps {
            assert!(mep.name.starts_with("Sample MEP "), "{}", mep.name);
            assert!(mep
                .email
                .as_deref()
                .is_some_and(|e| e.ends_with(".invalid")));
        }
        let countries: std::collections::BTreeSet<_> =
            tools.data.meps.iter().map(|m| m.country.as_str()).collect();
        let groups: std::collections::BTreeSet<_> = tools
            .data
            .meps
            .iter()
            .map(|m| m.political_group.as_str())
            .collect();
        assert!(countries.len() >= 10 && groups.len() >= 6);
    }

    #[test]
    fn dataset_is_consistent() {
        let tools = EmbeddedTools::new();
        let d = &tools.data;
        let mep = |id: &str| d.meps.iter().find(|m| m.id == id);
        for m in &d.meps {
            assert!(m.country.len() == 2 && is_date_string(&m.term_start));
        }
        for c in &d.committees {
            assert!(c.members.contains(&c.chair));
            for member in c.members.iter().chain(&c.vice_chairs) {
                let m = mep(member).expect("committee member is an MEP");
                assert!(m.committees.contains(&c.abbreviation));
            }
        }
        for m in d.meps.iter().filter(|m| m.active) {
            for abbr in &m.committees {
                let c = d.committees.iter().find(|c| &c.abbreviation == abbr);
                assert!(c.expect("known committee").members.contains(&m.id));
            }
        }
        for s in &d.plenary_sessions {
            assert!(is_date_string(&s.date));
            for v in &s.voting_records {
                assert!(d
                    .voting_records
                    .iter()
                    .any(|r| &r.id == v && r.session_id == s.id));
            }
            for doc in &s.documents {
                assert!(d.documents.iter().any(|x| &x.id == doc), "{doc}");
            }
        }
        for v in &d.voting_records {
            let count = |what: &str| v.mep_votes.values().filter(|x| *x == what).count() as u64;
            assert_eq!(
                (count("FOR"), count("AGAINST"), count("ABSTAIN")),
                (v.votes_for, v.votes_against, v.abstentions)
            );
            assert!(v.mep_votes.keys().all(|k| mep(k).is_some()));
            assert_eq!(v.result == "ADOPTED", v.votes_for > v.votes_against);
        }
        let doc_types = [
            "REPORT",
            "RESOLUTION",
            "DECISION",
            "DIRECTIVE",
            "REGULATION",
            "OPINION",
            "AMENDMENT",
        ];
        for doc in &d.documents {
            assert!(doc_types.contains(&doc.doc_type.as_str()) && is_date_string(&doc.date));
            assert!(doc.authors.iter().all(|a| mep(a).is_some()));
        }
        for q in &d.parliamentary_questions {
            let author = mep(&q.author).expect("question author is an MEP");
            assert_eq!(author.name, q.author_name);
            assert_eq!(q.status == "ANSWERED", q.answer_text.is_some());
        }
    }

    #[test]
    fn tool_definitions_match_the_real_server() {
        let tools = EmbeddedTools::new();
        let defs = tools.tool_definitions();
        let names: Vec<_> = defs
            .iter()
            .map(|d| d["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "get_meps",
                "get_mep_details",
                "get_plenary_sessions",
                "get_voting_records",
                "search_documents",
                "get_committee_info",
                "get_parliamentary_questions",
                "get_current_meps"
            ]
        );
        for def in defs {
            let keys: Vec<_> = def
                .as_object()
                .expect("tool object")
                .keys()
                .cloned()
                .collect();
            assert_eq!(keys.len(), 4, "{keys:?}");
            assert!(def["description"].as_str().is_some_and(|d| d.len() > 40));
            assert_eq!(def["inputSchema"]["type"], "object");
            assert!(def["inputSchema"]["properties"].is_object());
        }
        let by_name = |n: &str| {
            defs.iter()
                .find(|d| d["name"] == n)
                .expect("tool defined")
                .clone()
        };
        let meps = by_name("get_meps");
        assert_eq!(meps["category"], "core");
        assert!(meps["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Retrieve Members of European Parliament")));
        let p = &meps["inputSchema"]["properties"];
        assert_eq!(p["country"]["pattern"], "^[A-Z]{2}$");
        assert_eq!(p["country"]["maxLength"], 2);
        assert_eq!(p["group"]["maxLength"], 50);
        assert_eq!(p["active"]["default"], true);
        assert_eq!(
            p["limit"],
            json!({"type": "number", "description": "Maximum number of results to return (1-100)",
                   "minimum": 1, "maximum": 100, "default": 50})
        );
        assert_eq!(
            by_name("get_mep_details")["inputSchema"]["required"],
            json!(["id"])
        );
        let docs = by_name("search_documents");
        let p = &docs["inputSchema"]["properties"];
        assert_eq!(p["keyword"]["pattern"], "^[a-zA-Z0-9\\s\\-_]+$");
        assert_eq!(p["limit"]["default"], 20);
        assert_eq!(p["documentType"]["enum"].as_array().map(Vec::len), Some(7));
        assert_eq!(p["dateFrom"]["pattern"], "^\\d{4}-\\d{2}-\\d{2}$");
        let committee = by_name("get_committee_info");
        assert_eq!(
            committee["inputSchema"]["properties"]["abbreviation"]["maxLength"],
            20
        );
        let questions = by_name("get_parliamentary_questions");
        assert_eq!(
            questions["inputSchema"]["properties"]["status"]["enum"],
            json!(["PENDING", "ANSWERED"])
        );
        assert_eq!(by_name("get_current_meps")["category"], "phase4");
        // Every tool in the definitions is answered (no "Unknown tool").
        for name in names {
            let result = tools.call(name, &Map::new());
            let text = body(&result)["error"].as_str().unwrap_or("").to_string();
            assert!(!text.starts_with("Unknown tool"), "{name}");
        }
    }

    #[test]
    fn get_meps_filters() {
        let tools = EmbeddedTools::new();
        let all = ok(&tools, "get_meps", json!({}));
        assert_eq!(all["total"], 27, "active MEPs by default");
        assert_eq!(
            (all["limit"].clone(), all["offset"].clone()),
            (json!(50), json!(0))
        );
        assert_eq!(all["hasMore"], false);
        let first = &all["data"][0];
        assert_eq!(first["id"], "person/900001");
        assert_eq!(first["name"], "Sample MEP Anna Lindqvist");
        assert_eq!(first["politicalGroup"], "EPP");
        assert!(first.get("biography").is_none(), "list form, not details");

        let se = ok(&tools, "get_meps", json!({"country": "SE"}));
        assert_eq!(
            ids(&se),
            ["person/900001", "person/900002", "person/900003"]
        );
        let se_all = ok(
            &tools,
            "get_meps",
            json!({"country": "SE", "active": false}),
        );
        assert_eq!(se_all["total"], 4, "active=false includes former MEPs");
        assert!(se_all["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["active"] == false)));

        let epp = ok(&tools, "get_meps", json!({"group": "epp"}));
        assert_eq!(epp["total"], 5);
        assert!(epp["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|m| m["politicalGroup"] == "EPP")));
        let greens = ok(
            &tools,
            "get_meps",
            json!({"group": "Greens/EFA", "country": "DE"}),
        );
        assert_eq!(ids(&greens), ["person/900006"]);

        let envi = ok(&tools, "get_meps", json!({"committee": "ENVI"}));
        assert_eq!(envi["total"], 8);
        assert!(envi["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|m| m["committees"]
                .as_array()
                .is_some_and(|c| c.contains(&json!("ENVI"))))));
        let none = ok(&tools, "get_meps", json!({"country": "LU"}));
        assert_eq!(
            (none["total"].clone(), none["hasMore"].clone()),
            (json!(0), json!(false))
        );
        // Keys outside the schema are ignored, as the real server's Zod objects do.
        assert_eq!(ok(&tools, "get_meps", json!({"bogus": 1}))["total"], 27);
    }

    #[test]
    fn get_meps_paginates() {
        let tools = EmbeddedTools::new();
        let p1 = ok(&tools, "get_meps", json!({"limit": 10}));
        let p2 = ok(&tools, "get_meps", json!({"limit": 10, "offset": 10}));
        let p3 = ok(&tools, "get_meps", json!({"limit": 10.0, "offset": 20}));
        assert_eq!(
            (p1["total"].clone(), p1["hasMore"].clone()),
            (json!(27), json!(true))
        );
        assert_eq!(p2["hasMore"], true);
        assert_eq!(
            (
                p3["hasMore"].clone(),
                p3["offset"].clone(),
                p3["limit"].clone()
            ),
            (json!(false), json!(20), json!(10))
        );
        let (a, b, c) = (ids(&p1), ids(&p2), ids(&p3));
        assert_eq!((a.len(), b.len(), c.len()), (10, 10, 7));
        let mut joined = [a, b, c].concat();
        let all = ids(&ok(&tools, "get_meps", json!({})));
        assert_eq!(joined, all);
        joined.dedup();
        assert_eq!(joined.len(), 27);
        let past = ok(&tools, "get_meps", json!({"offset": 1000}));
        assert_eq!((ids(&past).len(), past["total"].clone()), (0, json!(27)));
        let huge = ok(&tools, "get_meps", json!({"offset": MAX_SAFE_INTEGER}));
        assert_eq!(huge["hasMore"], false);
    }

    #[test]
    fn get_mep_details_looks_up_by_any_id_form() {
        let tools = EmbeddedTools::new();
        for id in ["person/900015", "MEP-900015", "900015"] {
            let mep = ok(&tools, "get_mep_details", json!({ "id": id }));
            assert_eq!(mep["id"], "person/900015");
            assert_eq!(mep["name"], "Sample MEP Nuria Peñacastro");
            assert_eq!(mep["country"], "ES");
            assert_eq!(mep["committees"], json!(["LIBE", "AFET"]));
            assert!(mep["votingStatistics"]["totalVotes"]
                .as_u64()
                .is_some_and(|n| n > 0));
            assert!(mep["biography"]
                .as_str()
                .is_some_and(|b| b.contains("Fictional")));
        }
        let former = ok(&tools, "get_mep_details", json!({"id": "person/900007"}));
        assert_eq!(
            (former["active"].clone(), former["termEnd"].clone()),
            (json!(false), json!("2024-07-15"))
        );
        assert_eq!(
            err(&tools, "get_mep_details", json!({"id": "MEP-124810"})),
            "Failed to retrieve MEP details: MEP with ID MEP-124810 not found"
        );
    }

    #[test]
    fn get_plenary_sessions_filters_and_looks_up() {
        let tools = EmbeddedTools::new();
        let all = ok(&tools, "get_plenary_sessions", json!({}));
        assert_eq!(all["total"], 6);
        let y2025 = ok(&tools, "get_plenary_sessions", json!({"year": 2025}));
        assert_eq!(
            ids(&y2025),
            [
                "MTG-PL-2025-01-20",
                "MTG-PL-2025-03-10",
                "MTG-PL-2025-04-02",
                "MTG-PL-2025-06-16"
            ]
        );
        let brussels = ok(
            &tools,
            "get_plenary_sessions",
            json!({"location": "brussels"}),
        );
        assert_eq!(ids(&brussels), ["MTG-PL-2024-11-13", "MTG-PL-2025-04-02"]);
        let range = ok(
            &tools,
            "get_plenary_sessions",
            json!({"dateFrom": "2024-11-13", "dateTo": "2025-03-10", "location": "Strasbourg"}),
        );
        assert_eq!(ids(&range), ["MTG-PL-2025-01-20", "MTG-PL-2025-03-10"]);
        let paged = ok(
            &tools,
            "get_plenary_sessions",
            json!({"limit": 4, "offset": 4}),
        );
        assert_eq!(
            (ids(&paged).len(), paged["hasMore"].clone()),
            (2, json!(false))
        );
        let one = ok(
            &tools,
            "get_plenary_sessions",
            json!({"eventId": "MTG-PL-2025-03-10"}),
        );
        assert_eq!(one["location"], "Strasbourg");
        assert_eq!(
            one["votingRecords"],
            json!(["VOTE-2025-03-10-001", "VOTE-2025-03-10-002"])
        );
        assert!(one.get("data").is_none(), "single lookup is not paginated");
        assert_eq!(
            err(
                &tools,
                "get_plenary_sessions",
                json!({"eventId": "MTG-PL-1999-01-01"})
            ),
            "Failed to retrieve plenary sessions: Meeting not found: MTG-PL-1999-01-01"
        );
    }

    #[test]
    fn get_voting_records_filters() {
        let tools = EmbeddedTools::new();
        assert_eq!(ok(&tools, "get_voting_records", json!({}))["total"], 7);
        let session = ok(
            &tools,
            "get_voting_records",
            json!({"sessionId": "MTG-PL-2025-03-10"}),
        );
        assert_eq!(
            ids(&session),
            ["VOTE-2025-03-10-001", "VOTE-2025-03-10-002"]
        );
        assert_eq!(session["data"][1]["result"], "REJECTED");
        let topic = ok(
            &tools,
            "get_voting_records",
            json!({"topic": "PRESS freedom"}),
        );
        assert_eq!(ids(&topic), ["VOTE-2025-04-02-001"]);
        let former = ok(&tools, "get_voting_records", json!({"mepId": "MEP-900007"}));
        assert_eq!(former["total"], 0, "former MEPs cast no sample votes");
        let voter = ok(
            &tools,
            "get_voting_records",
            json!({"mepId": "900001", "dateFrom": "2025-01-01"}),
        );
        assert_eq!(voter["total"], 5);
    }

    #[test]
    fn search_documents_filters_and_looks_up() {
        let tools = EmbeddedTools::new();
        let all = ok(&tools, "search_documents", json!({}));
        assert_eq!(
            (all["total"].clone(), all["limit"].clone()),
            (json!(12), json!(20))
        );
        let payment = ok(
            &tools,
            "search_documents",
            json!({"keyword": "payment fees"}),
        );
        assert_eq!(ids(&payment), ["A10-9004/2025", "A10-9008/2025"]);
        let regulation = ok(
            &tools,
            "search_documents",
            json!({"keyword": "payment", "documentType": "REGULATION"}),
        );
        assert_eq!(ids(&regulation), ["A10-9004/2025"]);
        let envi = ok(&tools, "search_documents", json!({"committee": "envi"}));
        assert_eq!(ids(&envi), ["A10-9001/2024", "A10-9006/2025"]);
        let dated = ok(
            &tools,
            "search_documents",
            json!({"dateFrom": "2025-06-01", "dateTo": "2025-07-01"}),
        );
        assert_eq!(ids(&dated), ["A10-9007/2025", "A10-9009/2025"]);
        let by_id = ok(&tools, "search_documents", json!({"keyword": "B10"}));
        assert_eq!(by_id["total"], 2);
        let paged = ok(
            &tools,
            "search_documents",
            json!({"limit": 5, "offset": 10}),
        );
        assert_eq!(
            (ids(&paged).len(), paged["hasMore"].clone()),
            (2, json!(false))
        );
        let one = ok(
            &tools,
            "search_documents",
            json!({"docId": "A10-9003/2025"}),
        );
        assert_eq!(
            (one["type"].clone(), one["committee"].clone()),
            (json!("DIRECTIVE"), json!("ITRE"))
        );
        assert_eq!(one["authors"], json!(["person/900014", "person/900006"]));
        assert_eq!(
            err(&tools, "search_documents", json!({"docId": "nope"})),
            "Failed to search documents: Document not found: nope"
        );
        assert_eq!(
            err(&tools, "search_documents", json!({"keyword": "   "})),
            "Failed to search documents: keyword must not be blank"
        );
    }

    #[test]
    fn get_committee_info_by_abbreviation_id_and_current() {
        let tools = EmbeddedTools::new();
        let envi = ok(
            &tools,
            "get_committee_info",
            json!({"abbreviation": "ENVI"}),
        );
        assert_eq!(envi["id"], "COM-ENVI");
        assert_eq!(envi["chair"], "person/900001");
        assert_eq!(envi["members"].as_array().map(Vec::len), Some(8));
        let econ = ok(&tools, "get_committee_info", json!({"id": "COM-ECON"}));
        assert_eq!(
            (econ["abbreviation"].clone(), econ["chair"].clone()),
            (json!("ECON"), json!("person/900004"))
        );
        let current = ok(
            &tools,
            "get_committee_info",
            json!({"showCurrent": true, "abbreviation": "ENVI"}),
        );
        assert_eq!(
            (current["total"].clone(), current["hasMore"].clone()),
            (json!(6), json!(false))
        );
        assert_eq!(ids(&current)[0], "COM-ENVI");
        assert_eq!(
            err(&tools, "get_committee_info", json!({})),
            "Failed to retrieve committee information: Committee not found: unknown"
        );
        assert_eq!(
            err(
                &tools,
                "get_committee_info",
                json!({"abbreviation": "PECH", "id": "COM-ENVI"})
            ),
            "Failed to retrieve committee information: Committee not found: PECH"
        );
    }

    #[test]
    fn get_parliamentary_questions_filters_and_looks_up() {
        let tools = EmbeddedTools::new();
        assert_eq!(
            ok(&tools, "get_parliamentary_questions", json!({}))["total"],
            10
        );
        let oral = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"type": "ORAL"}),
        );
        assert_eq!(
            ids(&oral),
            ["O-000901/2024", "O-000902/2025", "O-000903/2025"]
        );
        let pending = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"status": "PENDING"}),
        );
        assert_eq!(pending["total"], 4);
        assert!(pending["data"]
            .as_array()
            .is_some_and(|d| d.iter().all(|q| q.get("answerText").is_none())));
        let topic = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"topic": "microplastics"}),
        );
        assert_eq!(ids(&topic), ["E-009001/2024", "E-009007/2025"]);
        let by_name = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"author": "anna lindqvist"}),
        );
        assert_eq!(ids(&by_name), ["E-009007/2025"]);
        let by_id = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"author": "MEP-900003"}),
        );
        assert_eq!(ids(&by_id), ["E-009001/2024"]);
        let combined = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"type": "WRITTEN", "status": "ANSWERED", "dateFrom": "2025-01-01", "dateTo": "2025-12-31"}),
        );
        assert_eq!(ids(&combined), ["E-009004/2025", "E-009005/2025"]);
        let paged = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"limit": 3, "offset": 3}),
        );
        assert_eq!(
            ids(&paged),
            ["E-009003/2025", "E-009004/2025", "O-000902/2025"]
        );
        assert_eq!(paged["hasMore"], true);
        let one = ok(
            &tools,
            "get_parliamentary_questions",
            json!({"docId": "O-000901/2024"}),
        );
        assert_eq!(
            (one["status"].clone(), one["author"].clone()),
            (json!("ANSWERED"), json!("person/900005"))
        );
        assert_eq!(
            err(
                &tools,
                "get_parliamentary_questions",
                json!({"docId": "E-000000/2020"})
            ),
            "Failed to retrieve parliamentary questions: Question not found: E-000000/2020"
        );
    }

    #[test]
    fn get_current_meps_lists_serving_meps() {
        let tools = EmbeddedTools::new();
        let page = ok(&tools, "get_current_meps", json!({"limit": 25}));
        assert_eq!(
            (page["total"].clone(), page["hasMore"].clone()),
            (json!(27), json!(true))
        );
        assert!(page["data"]
            .as_array()
            .is_some_and(|d| d.len() == 25 && d.iter().all(|m| m["active"] == true)));
        assert_eq!(
            err(&tools, "get_current_meps", json!({"limit": 101})),
            "Invalid arguments: limit: Too big: expected number to be <=100"
        );
    }

    #[test]
    fn invalid_arguments_are_reported() {
        let tools = EmbeddedTools::new();
        let cases = [
            ("get_meps", json!({"country": "se"}), "Invalid arguments: country: Country code must be 2 uppercase letters"),
            ("get_meps", json!({"limit": 0}), "Invalid arguments: limit: Too small: expected number to be >=1"),
            ("get_meps", json!({"limit": 1.5}), "Invalid arguments: limit: Invalid input: expected int, received number"),
            ("get_meps", json!({"limit": "10"}), "Invalid arguments: limit: Invalid input: expected number, received string"),
            ("get_meps", json!({"offset": -1}), "Invalid arguments: offset: Too small: expected number to be >=0"),
            ("get_meps", json!({"active": "yes"}), "Invalid arguments: active: Invalid input: expected boolean, received string"),
            ("get_meps", json!({"group": null}), "Invalid arguments: group: Invalid input: expected string, received null"),
            ("get_mep_details", json!({}), "Invalid arguments: id: Invalid input: expected string, received undefined"),
            ("get_mep_details", json!({"id": ""}), "Invalid arguments: id: Too small: expected string to have >=1 characters"),
            ("get_mep_details", json!({"id": 900001}), "Invalid arguments: id: Invalid input: expected string, received number"),
            ("get_plenary_sessions", json!({"dateFrom": "2024/01/01"}), "Invalid arguments: dateFrom: Date must be in YYYY-MM-DD format"),
            ("get_plenary_sessions", json!({"year": 1899}), "Invalid arguments: year: Too small: expected number to be >=1900"),
            ("get_voting_records", json!({"topic": ""}), "Invalid arguments: topic: Too small: expected string to have >=1 characters"),
            ("search_documents", json!({"keyword": "a;b"}), "Invalid arguments: keyword: Invalid characters in keyword"),
            ("search_documents", json!({"documentType": "MEMO"}), "Invalid arguments: documentType: Invalid option: expected one of \"REPORT\"|\"RESOLUTION\"|\"DECISION\"|\"DIRECTIVE\"|\"REGULATION\"|\"OPINION\"|\"AMENDMENT\""),
            ("get_committee_info", json!({"abbreviation": "X".repeat(21)}), "Invalid arguments: abbreviation: Too big: expected string to have <=20 characters"),
            ("get_committee_info", json!({"showCurrent": 1}), "Invalid arguments: showCurrent: Invalid input: expected boolean, received number"),
            ("get_parliamentary_questions", json!({"type": "written"}), "Invalid arguments: type: Invalid option: expected one of \"WRITTEN\"|\"ORAL\""),
            ("get_parliamentary_questions", json!({"limit": 1e300}), "Invalid arguments: limit: Too big: expected int to be <=9007199254740991"),
            ("get_plenary_sessions", json!({"offset": 2.5}), "Invalid arguments: offset: Invalid input: expected int, received number"),
            ("get_meps", json!({"country": "SWE"}), "Invalid arguments: country: Too big: expected string to have <=2 characters"),
            ("get_current_meps", json!({"offset": u64::MAX}), "Invalid arguments: offset: Too big: expected int to be <=9007199254740991"),
            ("get_voting_records", json!({"offset": -1e300}), "Invalid arguments: offset: Too small: expected int to be >=-9007199254740991"),
            ("get_parliamentary_questions", json!({"status": true}), "Invalid arguments: status: Invalid option: expected one of \"PENDING\"|\"ANSWERED\""),
        ];
        for (tool, arguments, expected) in cases {
            assert_eq!(
                err(&tools, tool, arguments.clone()),
                expected,
                "{tool} {arguments}"
            );
        }
    }

    #[test]
    fn unknown_tool_is_an_error_result() {
        let tools = EmbeddedTools::new();
        assert_eq!(
            err(&tools, "get_weather", json!({})),
            "Unknown tool: get_weather"
        );
        assert_eq!(err(&tools, "", json!({})), "Unknown tool: ");
        let long = "x".repeat(10_000);
        let result = tools.call(&long, &Map::new());
        assert_eq!(result["isError"], true);
        assert!(body(&result)["error"]
            .as_str()
            .is_some_and(|e| e.len() < 200));
    }

    /// Every constraint the advertised inputSchemas state is enforced, and
    /// boundary values are accepted.
    #[test]
    fn schema_constraints_are_enforced() {
        let tools = EmbeddedTools::new();
        for def in tools.tool_definitions() {
            let name = def["name"].as_str().expect("name");
            let schema = &def["inputSchema"];
            let rejects = |arguments: Value| {
                let result = tools.call(name, &obj(arguments.clone()));
                assert_eq!(result["isError"], true, "{name} accepted {arguments}");
                let error = body(&result)["error"].as_str().unwrap_or("").to_string();
                assert!(
                    error.starts_with("Invalid arguments: "),
                    "{name} {arguments}: {error}"
                );
            };
            if let Some(required) = schema["required"].as_array() {
                assert!(!required.is_empty());
                rejects(json!({}));
            }
            let props = schema["properties"].as_object().expect("properties");
            for (key, prop) in props {
                match prop["type"].as_str() {
                    Some("number") => {
                        rejects(json!({ key: 1.5 }));
                        rejects(json!({ key: "1" }));
                        rejects(json!({ key: null }));
                        if let Some(min) = prop["minimum"].as_i64() {
                            rejects(json!({ key: min - 1 }));
                            ok(&tools, name, json!({ key: min }));
                        }
                        if let Some(max) = prop["maximum"].as_i64() {
                            rejects(json!({ key: max + 1 }));
                            ok(&tools, name, json!({ key: max }));
                        }
                        if let Some(default) = prop.get("default") {
                            ok(&tools, name, json!({ key: default }));
                        }
                    }
                    Some("string") => {
                        rejects(json!({ key: 5 }));
                        rejects(json!({ key: [] }));
                        if let Some(max) = prop["maxLength"].as_u64() {
                            let too_long = "A".repeat(usize::try_from(max).unwrap_or(0) + 1);
                            rejects(json!({ key: too_long }));
                        }
                        if prop["minLength"].as_u64().is_some_and(|m| m >= 1) {
                            rejects(json!({ key: "" }));
                        }
                        if prop.get("pattern").is_some() {
                            rejects(json!({ key: "!!" }));
                        }
                        if let Some(options) = prop["enum"].as_array() {
                            rejects(json!({ key: "NOT_AN_OPTION" }));
                            for option in options {
                                ok(&tools, name, json!({ key: option }));
                            }
                        }
                    }
                    Some("boolean") => {
                        rejects(json!({ key: "true" }));
                        ok(&tools, name, json!({ key: true }));
                    }
                    other => panic!("{name}.{key}: unexpected type {other:?}"),
                }
            }
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        let tools = EmbeddedTools::new();
        let values = [
            json!(null),
            json!(true),
            json!(-1),
            json!(0),
            json!(-0.0),
            json!(1e308),
            json!(-1e308),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(9_007_199_254_740_992_i64),
            json!(0.5),
            json!(""),
            json!(" "),
            json!("\u{0}"),
            json!("ÄÖ\u{2028}\u{FEFF}"),
            json!("😀".repeat(60)),
            json!("A".repeat(100_000)),
            json!("person/"),
            json!("MEP-"),
            json!("../../etc/passwd"),
            json!("9999-99-99"),
            json!([1, 2]),
            json!({"nested": {"x": 1}}),
        ];
        let mut names: Vec<String> = tools
            .tool_definitions()
            .iter()
            .filter_map(|d| d["name"].as_str().map(str::to_string))
            .collect();
        names.push("unknown\u{0}tool".into());
        for name in &names {
            let mut keys = vec!["unexpected".to_string(), "id".to_string()];
            if let Some(props) = tools
                .tool_definitions()
                .iter()
                .find(|d| d["name"] == name.as_str())
                .and_then(|d| d["inputSchema"]["properties"].as_object())
            {
                keys.extend(props.keys().cloned());
            }
            for key in &keys {
                for value in &values {
                    let mut arguments = Map::new();
                    arguments.insert(key.clone(), value.clone());
                    let result = tools.call(name, &arguments);
                    let parsed = body(&result);
                    assert_eq!(parsed["dataSource"], DATA_SOURCE);
                    if result.get("isError").is_some() {
                        assert_eq!(result["isError"], true);
                        assert!(parsed["error"].is_string());
                    }
                }
            }
        }
    }

    #[test]
    fn result_text_is_pretty_printed_like_the_real_server() {
        let tools = EmbeddedTools::new();
        let result = tools.call("get_mep_details", &obj(json!({"id": "MEP-900001"})));
        let text = result["content"][0]["text"].as_str().expect("text");
        assert!(text.starts_with("{\n  \""), "{text}");
        let keys: Vec<_> = result
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["content"]);
    }
}
