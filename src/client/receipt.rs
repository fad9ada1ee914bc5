//! Receipts on the client side: ask the gateway's `AuditService` for the
//! receipt of one of this client's calls (by the request digest its signed
//! response is bound to) and verify it with [`crate::receipt::verify_receipt`]
//! before anything in it is believed.

use std::time::Duration;

use super::error::ClientError;
use super::Client;
use crate::proto::GetReceiptRequest;
use crate::receipt::{verify_receipt, Receipt, ReceiptKeys, VerifiedReceipt, MAX_WAIT_MS};

impl Client {
    /// The gateway's receipt for this client's call whose signed request
    /// bytes hash to `digest`, waiting up to `wait` (at most 30 s) for a
    /// checkpoint that covers it. Not verified: see
    /// [`Client::verified_receipt`].
    pub async fn receipt(&self, digest: &[u8; 32], wait: Duration) -> Result<Receipt, ClientError> {
        let wait_ms = u32::try_from(wait.as_millis())
            .unwrap_or(MAX_WAIT_MS)
            .min(MAX_WAIT_MS);
        let response = match self
            .audit
            .clone()
            .get_receipt(GetReceiptRequest {
                request_digest: bytes::Bytes::copy_from_slice(digest),
                wait_ms,
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(self.call_error(status).await),
        };
        let receipt = response
            .receipt
            .ok_or_else(|| ClientError::BadResponse("no receipt".into()))?;
        Ok(Receipt::try_from(receipt)?)
    }

    /// [`Client::receipt`], verified against `keys`: the record is this
    /// call's, the checkpoint is signed by the audit log (and cosigned by
    /// the witnesses `keys` requires), and the inclusion proof leads from
    /// the record to the checkpoint's root.
    pub async fn verified_receipt(
        &self,
        digest: &[u8; 32],
        wait: Duration,
        keys: &ReceiptKeys,
    ) -> Result<VerifiedReceipt, ClientError> {
        let receipt = self.receipt(digest, wait).await?;
        Ok(verify_receipt(&receipt, digest, keys)?)
    }
}
