//! The two doors into the gateway: [`GatewayService`], the tonic service
//! whose `call` runs the stages under an audit guard and answers once the
//! record is committed, and [`TransportAuditLayer`], which records a
//! request the gRPC layer refused before any handler ran.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::admitted::Ticket;
use super::parts::Gateway;
use crate::peer::PeerInfo;
use crate::proto::mcp_gateway_service_server::McpGatewayService;
use crate::proto::{CallRequest, CallResponse};

/// The tonic service: a cheap handle on the shared [`Gateway`].
#[derive(Clone)]
pub struct GatewayService {
    gateway: Arc<Gateway>,
}

impl GatewayService {
    /// The service for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        GatewayService { gateway }
    }
}

#[tonic::async_trait]
impl McpGatewayService for GatewayService {
    async fn call(&self, request: Request<CallRequest>) -> Result<Response<CallResponse>, Status> {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let early = request.extensions().get::<Ticket>().cloned();
        let _busy = peer.as_ref().map(|p| p.activity.begin());
        let _in_flight = self.gateway.metrics.in_flight();
        // Written when this future ends, however it ends: a client that
        // resets its stream, or the transport's request timeout, drops the
        // future mid-call and still leaves a record.
        let mut audit = self.gateway.audit_guard();
        let result = self
            .gateway
            .process_admitted(
                peer.as_deref(),
                early.as_ref(),
                request.into_inner(),
                &mut audit.record,
            )
            .await;
        // Answered only once its record is committed.
        let result = self.gateway.finish(peer.as_deref(), audit, result).await;
        result.map(Response::new).map_err(|d| d.to_status())
    }
}

/// A tower layer around the gRPC services: a request the gRPC layer itself
/// refuses before any handler runs (a message over the decoding limit,
/// answered OUT_OF_RANGE) still leaves its record, with the peer and the
/// certificate, stage `transport`.
#[derive(Clone)]
pub struct TransportAuditLayer {
    gateway: Arc<Gateway>,
}

impl TransportAuditLayer {
    /// The layer for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        TransportAuditLayer { gateway }
    }
}

impl<S> tower::Layer<S> for TransportAuditLayer {
    type Service = TransportAudit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TransportAudit {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// The service of [`TransportAuditLayer`].
#[derive(Clone)]
pub struct TransportAudit<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for TransportAudit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let gateway = self.gateway.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // 11: OUT_OF_RANGE, sent by tonic for an oversized message; no
            // sealgate reason uses that code, so this is only that refusal.
            if response
                .headers()
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == b"11")
            {
                gateway
                    .record_transport_refusal(peer.as_deref(), started)
                    .await;
            }
            Ok(response)
        })
    }
}
