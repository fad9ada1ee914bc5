//! The `sealgate.v1.AuditService` (`proto/sealgate/v1/audit.proto`) on the
//! gateway's mTLS port: `GetReceipt`.
//!
//! It is no side door: a call goes through the gateway's own stages 1 and
//! 2 ([`Gateway::admit_request`]: the certificate's identity, revocation,
//! registry entry, blocks, throttles, the client's rate and its calls in
//! flight), is refused exactly as a gateway call would be, and leaves one
//! audit record like every request (method `audit/receipt`, never a
//! request digest: the digest asked about is another request's). There is
//! no envelope: a receipt is public proof about the caller's own record,
//! and the caller's identity is its certificate. A digest that is not the
//! caller's is answered exactly like an unknown one.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::lookup::{receipt_for, Checkpoints, LookupError, MAX_WAIT_MS};
use crate::audit::transparency::Transparency;
use crate::audit::AuditRecord;
use crate::error::{Denial, Reason};
use crate::gateway::Gateway;
use crate::peer::PeerInfo;
use crate::proto::audit_service_server::AuditService as AuditRpc;
use crate::proto::{GetReceiptRequest, GetReceiptResponse};

/// The method a receipt request is recorded under.
pub const METHOD_RECEIPT: &str = "audit/receipt";

/// The audit service: a handle on the shared [`Gateway`].
#[derive(Clone)]
pub struct AuditService {
    gateway: Arc<Gateway>,
}

impl AuditService {
    /// The audit service of `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        AuditService { gateway }
    }

    async fn handle(
        &self,
        peer: Option<&PeerInfo>,
        request: GetReceiptRequest,
        record: &mut AuditRecord,
    ) -> Result<crate::proto::Receipt, Denial> {
        let gw = &self.gateway;
        // 1 identity, 2 admission: as for a gateway call.
        let admitted = gw.admit_request(peer, record, gw.clock.now_ms())?;
        let _in_flight = admitted.in_flight;
        record.stage = "receipt";
        let digest: [u8; 32] = request.request_digest.as_ref().try_into().map_err(|_| {
            Denial::new(
                Reason::ParamsInvalid,
                "request_digest must be the 32-byte SHA-256 of the request's signed bytes",
            )
        })?;
        let log = transparency(gw).ok_or_else(|| {
            Denial::new(
                Reason::ReceiptsUnavailable,
                "this gateway's audit trail is not a transparency log ([audit] signing_key is not set)",
            )
        })?;
        let wait = Duration::from_millis(u64::from(request.wait_ms.min(MAX_WAIT_MS)));
        // With witnesses, a receipt carries a quorum's cosignatures or waits.
        let kind = if gw.witnessing.is_some() {
            Checkpoints::Cosigned
        } else {
            Checkpoints::Signed
        };
        let client_id = admitted.identity.client_id.as_str();
        match receipt_for(&log, &digest, client_id, wait, kind).await {
            Ok(receipt) => Ok(receipt.into()),
            Err(LookupError::NotFound) => Err(Denial::new(
                Reason::ReceiptNotFound,
                "no record of this client bears this request digest (or it left the receipt index; `sealgate audit prove` finds it in the files)",
            )),
            Err(LookupError::Pending) => Err(Denial::new(
                Reason::ReceiptPending,
                "no checkpoint covers this record yet; one was asked for: retry, or wait longer",
            )
            .retry_after(Duration::from_secs(1))),
            Err(LookupError::Log(e)) => {
                tracing::error!(error = %e, "receipt: the audit log's stored tree did not answer");
                Err(Denial::new(
                    Reason::Internal,
                    "the audit log could not prove this record now",
                ))
            }
        }
    }
}

/// The gateway's transparency log, if its trail is one.
fn transparency(gw: &Gateway) -> Option<Arc<Transparency>> {
    gw.audit.transparency()
}

#[tonic::async_trait]
impl AuditRpc for AuditService {
    async fn get_receipt(
        &self,
        request: Request<GetReceiptRequest>,
    ) -> Result<Response<GetReceiptResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let busy = peer.as_ref().map(|p| p.activity.begin());
        let gw = &self.gateway;
        // The same guard, detectors and refusal summaries as a gateway call.
        let mut audit = gw.audit_guard();
        audit.record.method = Some(METHOD_RECEIPT);
        let result = self
            .handle(peer.as_deref(), request.into_inner(), &mut audit.record)
            .await;
        gw.finish_service(peer.as_deref(), audit, result, busy)
            .await
            .map(|receipt| {
                Response::new(GetReceiptResponse {
                    receipt: Some(receipt),
                })
            })
            .map_err(|d| d.to_status())
    }
}
