//! What stage 6 (arguments) leaves for the backend stage: the gateway's
//! own answer, nothing (a notification), a tool call with checked
//! arguments, or a request forwarded to the primary backend.

use std::sync::Arc;

use serde_json::Value;

use crate::backend::Reply;

/// What stage 6 left for the backend stage.
pub(super) enum Prepared {
    /// The gateway answers itself.
    Answer(Reply),
    /// A notification: nothing to answer.
    Nothing,
    /// A tool call with checked arguments, to its routed backend.
    Tool {
        route: crate::backend::router::Route,
        arguments: Value,
    },
    /// Resources and prompts, to the primary backend.
    Forward { method: &'static str, params: Value },
}

/// A reply that comes from a backend, and the pinned tool it answers.
pub(super) struct FromBackend {
    pub(super) tool: Option<Arc<crate::policy::PinnedTool>>,
}

impl Prepared {
    /// `Some` when a backend answers what was prepared: its reply is then
    /// checked at stage 9.
    pub(super) fn answered_by_backend(&self) -> Option<FromBackend> {
        match self {
            Prepared::Tool { route, .. } => Some(FromBackend {
                tool: Some(route.tool.clone()),
            }),
            Prepared::Forward { .. } => Some(FromBackend { tool: None }),
            Prepared::Answer(_) | Prepared::Nothing => None,
        }
    }
}
