//! The bundled dataset: the records of `sample_data.json`, typed after the real
//! server's schemas. Every record is FICTIONAL sample data; this module must
//! never hold or load real European Parliament data, and never reads the file
//! system at run time (the file is compiled in).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Marker put in every result (success or error) so nobody mistakes it for real data.
pub(super) const DATA_SOURCE: &str = "sealgate embedded sample data (fictional)";

/// The bundled, fictional dataset.
pub(super) const SAMPLE_DATA_JSON: &str = include_str!("sample_data.json");

/// An MEP's vote counts, as in the real server's `MEPDetailsSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct VotingStatistics {
    /// Roll-call votes the MEP took part in.
    pub(super) total_votes: u64,
    /// Of those, votes in favour.
    pub(super) votes_for: u64,
    /// Of those, votes against.
    pub(super) votes_against: u64,
    /// Of those, abstentions.
    pub(super) abstentions: u64,
    /// Share of votes attended, in percent.
    pub(super) attendance_rate: f64,
}

/// An MEP with the fields of the real server's `MEPDetailsSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Mep {
    /// Canonical id, `person/<number>`.
    pub(super) id: String,
    /// Display name, always prefixed `Sample MEP`.
    pub(super) name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub(super) country: String,
    /// Political group abbreviation (e.g. `EPP`).
    pub(super) political_group: String,
    /// Abbreviations of the committees the MEP sits on.
    pub(super) committees: Vec<String>,
    /// Contact address, always under `.invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) email: Option<String>,
    /// Whether the MEP is serving now.
    pub(super) active: bool,
    /// First day of the mandate, `YYYY-MM-DD`.
    pub(super) term_start: String,
    /// Last day of the mandate, for former MEPs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) term_end: Option<String>,
    /// Short fictional biography (details only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) biography: Option<String>,
    /// Fictional office address (details only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) address: Option<String>,
    /// Roles held (details only).
    pub(super) roles: Vec<String>,
    /// Vote counts (details only).
    pub(super) voting_statistics: VotingStatistics,
}

impl Mep {
    /// The list form (`MEPSchema`) used by `get_meps` and `get_current_meps`.
    pub(super) fn summary(&self) -> Value {
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
pub(super) struct Committee {
    /// Committee id, `COM-<abbreviation>`.
    pub(super) id: String,
    /// Full name.
    pub(super) name: String,
    /// Short name (e.g. `ENVI`).
    pub(super) abbreviation: String,
    /// Ids of the member MEPs.
    pub(super) members: Vec<String>,
    /// Id of the chairing MEP, one of `members`.
    pub(super) chair: String,
    /// Ids of the vice-chairing MEPs.
    pub(super) vice_chairs: Vec<String>,
    /// When the committee meets, as prose.
    pub(super) meeting_schedule: Vec<String>,
    /// Policy areas the committee covers.
    pub(super) responsibilities: Vec<String>,
}

/// A plenary session with the fields of the real server's `PlenarySessionSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PlenarySession {
    /// Meeting event id, `MTG-PL-<date>`.
    pub(super) id: String,
    /// Day of the session, `YYYY-MM-DD`.
    pub(super) date: String,
    /// City the session was held in.
    pub(super) location: String,
    /// Agenda item titles.
    pub(super) agenda_items: Vec<String>,
    /// Ids of the votes held in the session.
    pub(super) voting_records: Vec<String>,
    /// How many MEPs attended.
    pub(super) attendance_count: u64,
    /// Ids of the documents discussed.
    pub(super) documents: Vec<String>,
}

/// A vote with the fields of the real server's `VotingRecordSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct VotingRecord {
    /// Vote id, `VOTE-<date>-<number>`.
    pub(super) id: String,
    /// Id of the plenary session the vote was held in.
    pub(super) session_id: String,
    /// What was voted on.
    pub(super) topic: String,
    /// Day of the vote, `YYYY-MM-DD`.
    pub(super) date: String,
    /// Votes in favour.
    pub(super) votes_for: u64,
    /// Votes against.
    pub(super) votes_against: u64,
    /// Abstentions.
    pub(super) abstentions: u64,
    /// `ADOPTED` or `REJECTED`.
    pub(super) result: String,
    /// Each voting MEP's id and vote (`FOR`, `AGAINST`, `ABSTAIN`).
    pub(super) mep_votes: BTreeMap<String, String>,
}

/// A document with the fields of the real server's `LegislativeDocumentSchema`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Document {
    /// Document id (e.g. `A10-9001/2024`).
    pub(super) id: String,
    /// One of the `documentType` options of `search_documents`.
    #[serde(rename = "type")]
    pub(super) doc_type: String,
    /// Title.
    pub(super) title: String,
    /// Day of the document, `YYYY-MM-DD`.
    pub(super) date: String,
    /// Ids of the authoring MEPs.
    pub(super) authors: Vec<String>,
    /// Abbreviation of the responsible committee, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) committee: Option<String>,
    /// Procedure status (e.g. `ADOPTED`).
    pub(super) status: String,
    /// Short summary, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) summary: Option<String>,
}

/// A question with the fields of the real server's `ParliamentaryQuestionSchema`
/// plus `authorName` (the real server only gives the author's identifier).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Question {
    /// Question id (e.g. `E-009001/2024`).
    pub(super) id: String,
    /// `WRITTEN` or `ORAL`.
    #[serde(rename = "type")]
    pub(super) question_type: String,
    /// Id of the asking MEP.
    pub(super) author: String,
    /// Name of the asking MEP.
    pub(super) author_name: String,
    /// Day the question was asked, `YYYY-MM-DD`.
    pub(super) date: String,
    /// What the question is about.
    pub(super) topic: String,
    /// The question itself.
    pub(super) question_text: String,
    /// The answer, once `status` is `ANSWERED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) answer_text: Option<String>,
    /// Day of the answer, once answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) answer_date: Option<String>,
    /// `PENDING` or `ANSWERED`.
    pub(super) status: String,
}

/// The parsed `sample_data.json` (its `_notice` and `dataSource` fields are
/// checked by the unit tests, not needed at run time).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Dataset {
    /// Serving and former MEPs.
    pub(super) meps: Vec<Mep>,
    /// Committees (all current).
    pub(super) committees: Vec<Committee>,
    /// Plenary sessions.
    pub(super) plenary_sessions: Vec<PlenarySession>,
    /// Roll-call votes.
    pub(super) voting_records: Vec<VotingRecord>,
    /// Legislative documents.
    pub(super) documents: Vec<Document>,
    /// Written and oral questions.
    pub(super) parliamentary_questions: Vec<Question>,
}

impl Dataset {
    /// Parses the compiled-in `sample_data.json`. It is covered by the unit
    /// tests, so a failure is a build defect, never a consequence of input.
    pub(super) fn bundled() -> Self {
        serde_json::from_str(SAMPLE_DATA_JSON)
            .expect("bundled sample_data.json matches the embedded dataset schema")
    }
}
