//! The operator service (`proto/sealgate/v1/admin.proto`): list and lift
//! what the anomaly detectors imposed.
//!
//! It is no side door: every call goes through the same stages 1 to 3 as a
//! gateway call ([`Gateway::authenticate`]: certificate identity, admission,
//! signed and fresh envelope), then must come from an identity marked
//! `admin = true` in the registry, and its answer is signed and bound to the
//! request like any other. Every call leaves one audit record.

use std::sync::Arc;

use prost::Message as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use crate::audit::AuditRecord;
use crate::error::{Denial, Reason};
use crate::gateway::{Authenticated, Gateway};
use crate::peer::PeerInfo;
use crate::proto::admin_service_server::AdminService as AdminRpc;
use crate::proto::{
    ListBlocksRequest, ListBlocksResponse, SignedEnvelope, UnblockRequest, UnblockResponse,
};

/// The JSON-RPC method of `ListBlocks`.
pub const METHOD_BLOCKS: &str = "admin/blocks";
/// The JSON-RPC method of `Unblock`.
pub const METHOD_UNBLOCK: &str = "admin/unblock";

/// The admin service: a handle on the shared [`Gateway`].
#[derive(Clone)]
pub struct AdminService {
    gateway: Arc<Gateway>,
}

impl AdminService {
    /// The admin service of `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        AdminService { gateway }
    }

    /// Runs one admin call: stages 1 to 3, the admin check, the method,
    /// the signed answer, and its audit record.
    async fn run(
        &self,
        peer: Option<Arc<PeerInfo>>,
        envelope: Option<SignedEnvelope>,
        size: usize,
        method: &'static str,
    ) -> Result<SignedEnvelope, Status> {
        let busy = peer.as_ref().map(|p| p.activity.begin());
        let gw = &self.gateway;
        // The same guard, detectors and refusal summaries as a gateway call.
        let mut audit = gw.audit_guard();
        audit.record.method = Some(method);
        let result = self
            .handle(peer.as_deref(), envelope, size, method, &mut audit.record)
            .await;
        gw.finish_service(peer.as_deref(), audit, result, busy)
            .await
            .map_err(|d| d.to_status())
    }

    async fn handle(
        &self,
        peer: Option<&PeerInfo>,
        envelope: Option<SignedEnvelope>,
        size: usize,
        method: &'static str,
        record: &mut AuditRecord,
    ) -> Result<SignedEnvelope, Denial> {
        let gw = &self.gateway;
        let now = gw.clock.now_ms();
        let Authenticated {
            identity,
            client,
            verified,
            in_flight: _in_flight,
        } = gw.authenticate(peer, envelope, size, record, now).await?;
        if !client.admin {
            return Err(Denial::new(
                Reason::AdminNotAllowed,
                "this identity is not an admin of this gateway",
            ));
        }
        let request = parse(&verified.payload, method)?;
        // Admins are watched like everyone (volume, hours).
        let in_hours = client
            .allowed_hours
            .as_ref()
            .is_none_or(|h| h.contains(now));
        if let crate::policy::Admission::Blocked { detector, until_ms } =
            gw.anomaly
                .observe_call(identity.client_id.as_str(), None, in_hours, now)
        {
            return Err(crate::gateway::blocked(detector, until_ms));
        }
        let result = match method {
            METHOD_BLOCKS => {
                let mut all = gw.anomaly.restrictions(now);
                if let Some(state) = &gw.state {
                    // Those imposed on other replicas too, each once.
                    match state.restrictions().await {
                        Ok(stored) => {
                            for r in stored {
                                if !all.iter().any(|l| {
                                    (l.subject, l.id.as_str(), l.action)
                                        == (r.subject, r.id.as_str(), r.action)
                                }) {
                                    all.push(r);
                                }
                            }
                            all.sort_by(|a, b| {
                                (a.subject, &a.id, a.action).cmp(&(b.subject, &b.id, b.action))
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "admin/blocks: the shared state store did not answer; listing this replica's restrictions only");
                        }
                    }
                }
                let list: Vec<Value> = all
                    .into_iter()
                    .map(|r| {
                        json!({
                            "subject": r.subject,
                            "id": r.id,
                            "action": r.action,
                            "detector": r.detector,
                            "since": crate::audit::rfc3339_ms(r.since_ms),
                            "until": r.until_ms.map(crate::audit::rfc3339_ms),
                        })
                    })
                    .collect();
                json!({ "restrictions": list })
            }
            _ => {
                let target = request
                    .params
                    .as_ref()
                    .and_then(|p| p.get("id"))
                    .and_then(Value::as_str)
                    .filter(|id| valid_target(id))
                    .ok_or_else(|| {
                        Denial::new(
                            Reason::ParamsInvalid,
                            "admin/unblock takes params {\"id\": a client id or an IP address}",
                        )
                    })?;
                // In the shared store first, so every replica lifts it; if
                // it cannot be, nothing is lifted anywhere (an unblock that
                // held on one replica only would be reported done while
                // the others kept refusing, and this one would be lifted
                // behind the store's back).
                let stored = match &gw.state {
                    Some(state) => match state.unblock(target, now).await {
                        Ok(counts) => counts,
                        Err(crate::state::StoreError::Unconfirmed) => {
                            gw.anomaly.record_unconfirmed_unblock(
                                target,
                                identity.client_id.as_str(),
                                now,
                            );
                            tracing::warn!(target, "admin/unblock unconfirmed: the shared state store did not answer by the unblock's deadline");
                            return Err(Denial::new(
                                Reason::StateUnavailable,
                                "the shared state store did not answer by the unblock's deadline; it refuses an unblock after its deadline, so it was most likely not applied (recorded in the audit trail as unblock_unconfirmed). Check with admin/blocks, then retry",
                            )
                            .retry_after(std::time::Duration::from_secs(1)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, target, "admin/unblock refused: the shared state store did not answer; nothing was unblocked");
                            return Err(Denial::new(
                                Reason::StateUnavailable,
                                "the shared state store cannot be reached, so the unblock cannot reach every replica: nothing was unblocked. Retry when the store is back",
                            )
                            .retry_after(std::time::Duration::from_secs(1)));
                        }
                    },
                    None => (0, 0),
                };
                let lifted =
                    gw.anomaly
                        .unblock_with(target, identity.client_id.as_str(), now, stored);
                json!({ "lifted": lifted })
            }
        };
        let body = json!({"jsonrpc": "2.0", "id": request.id, "result": result});
        let payload = serde_json::to_vec(&body)
            .map_err(|_| Denial::new(Reason::Internal, "response could not be encoded"))?;
        Ok(gw.seal_response(identity, payload, verified.digest))
    }
}

/// A client id or an IP address: what an unblock may name.
fn valid_target(id: &str) -> bool {
    crate::identity::ClientId::parse(id).is_ok() || id.parse::<std::net::IpAddr>().is_ok()
}

/// The JSON-RPC request of an admin call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminRequest {
    jsonrpc: String,
    id: Value,
    method: String,
    #[serde(default)]
    params: Option<serde_json::Map<String, Value>>,
}

/// How deep an admin payload may nest: `{"params":{"id":"…"}}` needs 2.
const ADMIN_MAX_DEPTH: usize = 8;

/// Parses the signed payload strictly, as `jsonrpc::parse` does a call's:
/// the nesting depth measured before anything is built (JSON_TOO_DEEP),
/// no repeated key at any depth (JSON_INVALID: two parsers could read two
/// different requests from the signed bytes), then JSON-RPC 2.0, an id,
/// and the method of the RPC it came on.
fn parse(payload: &[u8], method: &str) -> Result<AdminRequest, Denial> {
    if crate::jsonrpc::nesting_depth_exceeds(payload, ADMIN_MAX_DEPTH) {
        return Err(Denial::new(
            Reason::JsonTooDeep,
            format!("an admin payload nests at most {ADMIN_MAX_DEPTH} levels"),
        ));
    }
    let value = crate::jsonrpc::strict::from_slice_unique(payload).map_err(|_| {
        Denial::new(
            Reason::JsonInvalid,
            "the payload is not one JSON value without repeated keys",
        )
    })?;
    let request: AdminRequest = serde_json::from_value(value).map_err(|_| {
        Denial::new(
            Reason::JsonRpcInvalid,
            "the payload is not an admin JSON-RPC request",
        )
    })?;
    if request.jsonrpc != "2.0" || !(request.id.is_string() || request.id.is_i64()) {
        return Err(Denial::new(
            Reason::JsonRpcInvalid,
            "jsonrpc must be \"2.0\" and id a string or an integer",
        ));
    }
    if request.method != method {
        return Err(Denial::new(
            Reason::MethodUnknown,
            format!("this RPC takes method {method}"),
        ));
    }
    Ok(request)
}

#[tonic::async_trait]
impl AdminRpc for AdminService {
    async fn list_blocks(
        &self,
        request: Request<ListBlocksRequest>,
    ) -> Result<Response<ListBlocksResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let inner = request.into_inner();
        let size = inner.encoded_len();
        let envelope = self.run(peer, inner.envelope, size, METHOD_BLOCKS).await?;
        Ok(Response::new(ListBlocksResponse {
            envelope: Some(envelope),
        }))
    }

    async fn unblock(
        &self,
        request: Request<UnblockRequest>,
    ) -> Result<Response<UnblockResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let inner = request.into_inner();
        let size = inner.encoded_len();
        let envelope = self.run(peer, inner.envelope, size, METHOD_UNBLOCK).await?;
        Ok(Response::new(UnblockResponse {
            envelope: Some(envelope),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(payload: &str) -> (Reason, String) {
        match parse(payload.as_bytes(), "admin/unblock") {
            Ok(_) => panic!("accepted: {payload}"),
            Err(d) => (d.reason, d.message.into_owned()),
        }
    }

    #[test]
    fn an_admin_payload_is_parsed_as_strictly_as_a_call() {
        let ok = r#"{"jsonrpc":"2.0","id":1,"method":"admin/unblock","params":{"id":"alice"}}"#;
        let request = parse(ok.as_bytes(), "admin/unblock").expect("a plain admin request");
        assert_eq!(request.method, "admin/unblock");

        // A repeated key: serde_json alone would keep the last "id".
        let twice = r#"{"jsonrpc":"2.0","id":1,"method":"admin/unblock","params":{"id":"alice","id":"bob"}}"#;
        assert_eq!(
            reason(twice),
            (
                Reason::JsonInvalid,
                "the payload is not one JSON value without repeated keys".into()
            )
        );
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"admin/unblock","params":{{"x":{}1{}}}}}"#,
            "[".repeat(20),
            "]".repeat(20)
        );
        assert_eq!(
            reason(&deep),
            (
                Reason::JsonTooDeep,
                "an admin payload nests at most 8 levels".into()
            )
        );
        assert_eq!(
            reason(r#"{"jsonrpc":"2.0","id":1,"method":"admin/blocks"}"#),
            (
                Reason::MethodUnknown,
                "this RPC takes method admin/unblock".into()
            )
        );
        assert_eq!(
            reason(r#"{"jsonrpc":"2.0","id":1,"method":"admin/unblock","extra":1}"#).0,
            Reason::JsonRpcInvalid
        );
    }
}
