//! The tools' answers: each tool's arguments validated in the real server's
//! order, then real filtering and pagination over the bundled [`Dataset`].
//! A lookup by id answers one record; a search answers one [`Page`]. Queries
//! must never panic and never answer without `dataSource` (both the page and
//! [`tagged`] add it).

use serde::Serialize;
use serde_json::Value;

use super::args::{is_js_whitespace, Args};
use super::call_result::{tagged, to_values, CallError};
use super::dataset::{Dataset, Mep};
use super::page::Page;

/// The `documentType` options of `search_documents`.
const DOCUMENT_TYPES: [&str; 7] = [
    "REPORT",
    "RESOLUTION",
    "DECISION",
    "DIRECTIVE",
    "REGULATION",
    "OPINION",
    "AMENDMENT",
];

/// The `type` options of `get_parliamentary_questions`.
const QUESTION_TYPES: [&str; 2] = ["WRITTEN", "ORAL"];

/// The `status` options of `get_parliamentary_questions`.
const QUESTION_STATUSES: [&str; 2] = ["PENDING", "ANSWERED"];

/// Case-insensitive substring test.
fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Case-insensitive equality (after trimming, like the real server's group filter).
fn eq_ci(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Canonical MEP id: accepts `person/900001`, `MEP-900001` or `900001`, like the real server.
fn canonical_mep_id(id: &str) -> String {
    let bare = id
        .strip_prefix("MEP-")
        .or_else(|| id.strip_prefix("person/"))
        .unwrap_or(id);
    format!("person/{bare}")
}

/// The record a lookup found, tagged; or `Failed` under the tool's `context`
/// with the `not_found` message.
fn lookup<T: Serialize>(
    found: Option<&T>,
    context: &'static str,
    not_found: impl FnOnce() -> String,
) -> Result<Value, CallError> {
    found.map(tagged).ok_or_else(|| CallError::Failed {
        context,
        message: not_found(),
    })
}

impl Dataset {
    /// One page of MEPs `keep` accepts, in the list form.
    fn mep_page(&self, page: Page, keep: impl Fn(&Mep) -> bool) -> Value {
        page.apply(
            self.meps
                .iter()
                .filter(|m| keep(m))
                .map(Mep::summary)
                .collect(),
        )
    }

    /// `get_meps`: `active` true (default) keeps serving MEPs only; false lists all
    /// MEPs, serving and former (the real server maps it to EP status `all`).
    pub(super) fn get_meps(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let country = args.country("country")?;
        let group = args.string("group", 1, 50)?;
        let committee = args.string("committee", 1, 100)?;
        let active = args.boolean("active")?.unwrap_or(true);
        let page = args.page(50)?;
        Ok(self.mep_page(page, |m| {
            (!active || m.active)
                && country.is_none_or(|c| m.country == c)
                && group.is_none_or(|g| eq_ci(&m.political_group, g))
                && committee.is_none_or(|c| m.committees.iter().any(|mc| eq_ci(mc, c)))
        }))
    }

    /// `get_mep_details`: one MEP, by any id form.
    pub(super) fn get_mep_details(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let id = args.required_string("id", 1, 100)?;
        let wanted = canonical_mep_id(id);
        lookup(
            self.meps.iter().find(|m| m.id == wanted),
            "Failed to retrieve MEP details",
            || format!("MEP with ID {id} not found"),
        )
    }

    /// `get_plenary_sessions`: `eventId` returns one session; otherwise all
    /// filters are ANDed.
    pub(super) fn get_plenary_sessions(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let event_id = args.string("eventId", 1, 200)?;
        let year = args.integer("year", 1900, 2100)?;
        let dates = args.date_range()?;
        let location = args.string("location", 1, 100)?;
        let page = args.page(50)?;
        if let Some(event_id) = event_id {
            return lookup(
                self.plenary_sessions.iter().find(|s| s.id == event_id),
                "Failed to retrieve plenary sessions",
                || format!("Meeting not found: {event_id}"),
            );
        }
        let year_prefix = year.map(|y| format!("{y:04}-"));
        let sessions = self
            .plenary_sessions
            .iter()
            .filter(|s| year_prefix.as_deref().is_none_or(|p| s.date.starts_with(p)))
            .filter(|s| dates.contains(&s.date))
            .filter(|s| location.is_none_or(|l| contains_ci(&s.location, l)))
            .collect();
        Ok(page.apply(to_values(sessions)))
    }

    /// `get_voting_records`: all filters are ANDed; `mepId` keeps votes that MEP cast.
    pub(super) fn get_voting_records(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let session_id = args.string("sessionId", 1, 100)?;
        let mep_id = args.string("mepId", 1, 100)?.map(canonical_mep_id);
        let topic = args.string("topic", 1, 200)?;
        let dates = args.date_range()?;
        let page = args.page(50)?;
        let records = self
            .voting_records
            .iter()
            .filter(|v| session_id.is_none_or(|s| v.session_id == s))
            .filter(|v| mep_id.as_ref().is_none_or(|m| v.mep_votes.contains_key(m)))
            .filter(|v| topic.is_none_or(|t| contains_ci(&v.topic, t)))
            .filter(|v| dates.contains(&v.date))
            .collect();
        Ok(page.apply(to_values(records)))
    }

    /// `search_documents`: `docId` returns one document; otherwise all filters are
    /// ANDed. `keyword` is an optional phrase matched (case-insensitively) against
    /// title, summary and id; the real server requires it unless `docId` is given.
    pub(super) fn search_documents(&self, args: &Args<'_>) -> Result<Value, CallError> {
        const CONTEXT: &str = "Failed to search documents";
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
        let document_type = args.one_of("documentType", &DOCUMENT_TYPES)?;
        let dates = args.date_range()?;
        let committee = args.string("committee", 1, 100)?;
        let page = args.page(20)?;
        if let Some(doc_id) = doc_id {
            return lookup(
                self.documents.iter().find(|d| d.id == doc_id),
                CONTEXT,
                || format!("Document not found: {doc_id}"),
            );
        }
        let keyword = match keyword {
            Some(k) if k.trim_matches(is_js_whitespace).is_empty() => {
                return Err(CallError::Failed {
                    context: CONTEXT,
                    message: "keyword must not be blank".into(),
                })
            }
            Some(k) => Some(k.trim_matches(is_js_whitespace)),
            None => None,
        };
        let documents = self
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
            .filter(|d| dates.contains(&d.date))
            .filter(|d| {
                committee.is_none_or(|c| d.committee.as_deref().is_some_and(|dc| eq_ci(dc, c)))
            })
            .collect();
        Ok(page.apply(to_values(documents)))
    }

    /// `get_committee_info`: `showCurrent: true` lists all current bodies (first
    /// page of 50, like the real server); else `abbreviation` (preferred) or `id`
    /// selects one committee.
    pub(super) fn get_committee_info(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let id = args.string("id", 1, 100)?;
        let abbreviation = args.string("abbreviation", 1, 20)?;
        let show_current = args.boolean("showCurrent")?.unwrap_or(false);
        if show_current {
            return Ok(Page::new(50, 0).apply(to_values(self.committees.iter().collect())));
        }
        let found = match (abbreviation, id) {
            (Some(a), _) => self
                .committees
                .iter()
                .find(|c| eq_ci(&c.abbreviation, a) || eq_ci(&c.id, a)),
            (None, Some(i)) => self
                .committees
                .iter()
                .find(|c| eq_ci(&c.id, i) || eq_ci(&c.abbreviation, i)),
            (None, None) => None,
        };
        lookup(found, "Failed to retrieve committee information", || {
            format!(
                "Committee not found: {}",
                abbreviation.or(id).unwrap_or("unknown")
            )
        })
    }

    /// `get_parliamentary_questions`: `docId` returns one question; otherwise
    /// all filters are ANDed. `author` matches the MEP id or name, `topic` the
    /// topic or question text (both case-insensitive substrings).
    pub(super) fn get_parliamentary_questions(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let doc_id = args.string("docId", 1, 200)?;
        let question_type = args.one_of("type", &QUESTION_TYPES)?;
        let author = args.string("author", 1, 100)?;
        let topic = args.string("topic", 1, 200)?;
        let status = args.one_of("status", &QUESTION_STATUSES)?;
        let dates = args.date_range()?;
        let page = args.page(50)?;
        if let Some(doc_id) = doc_id {
            return lookup(
                self.parliamentary_questions.iter().find(|q| q.id == doc_id),
                "Failed to retrieve parliamentary questions",
                || format!("Question not found: {doc_id}"),
            );
        }
        let author_id = author.map(canonical_mep_id);
        let questions = self
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
            .filter(|q| dates.contains(&q.date))
            .collect();
        Ok(page.apply(to_values(questions)))
    }

    /// `get_current_meps`: serving MEPs only, in the list form.
    pub(super) fn get_current_meps(&self, args: &Args<'_>) -> Result<Value, CallError> {
        let page = args.page(50)?;
        Ok(self.mep_page(page, |m| m.active))
    }
}
