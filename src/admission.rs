//! Stages 1 and 2 ahead of the body: a tower layer in front of the gateway's
//! gRPC service that checks the connection's identity and admits the call
//! (blocks, throttles, the client's rate, its calls in flight) from the
//! request's headers alone, before tonic reads or decodes the message.
//!
//! A flood from one identity is then refused for the price of HTTP/2 and
//! its status: no protobuf decoding, no allocation of the body, no
//! envelope. The refusal is audited exactly as the service would audit it
//! (the first of each identity and reason in full, then counted summaries,
//! [`crate::gateway::Gateway::finish`]), so this layer changes what a
//! refusal costs, never what it records.
//!
//! A request on a connection the request path marked for closing is not
//! processed at all: it waits, unanswered, for the transport's GOAWAY.
//!
//! An admitted call carries a [`Ticket`] in its request extensions (which a
//! client cannot set: they are the server's own) so the service does not
//! run the stages, or charge the rate, a second time; the call's permit for
//! `max_concurrent_calls` is held by this layer's future until the answer
//! is ready.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::audit::AuditRecord;
use crate::gateway::{Gateway, Ticket};
use crate::peer::PeerInfo;

/// The one route this layer admits: the gateway's `Call`. The admin
/// service, health and reflection pass through untouched.
pub const CALL_PATH: &str = "/sealgate.v1.McpGatewayService/Call";

/// The layer; see the module documentation.
#[derive(Clone)]
pub struct EarlyAdmissionLayer {
    gateway: Arc<Gateway>,
}

impl EarlyAdmissionLayer {
    /// The layer for `gateway`.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        EarlyAdmissionLayer { gateway }
    }
}

impl<S> tower::Layer<S> for EarlyAdmissionLayer {
    type Service = EarlyAdmission<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EarlyAdmission {
            inner,
            gateway: self.gateway.clone(),
        }
    }
}

/// The service of [`EarlyAdmissionLayer`].
#[derive(Clone)]
pub struct EarlyAdmission<S> {
    inner: S,
    gateway: Arc<Gateway>,
}

/// Whether the request's connection is marked for closing.
fn closing<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<Arc<PeerInfo>>()
        .is_some_and(|p| p.close_requested())
}

impl<S, B, RB> tower::Service<http::Request<B>> for EarlyAdmission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if closing(&request) {
            // The connection was marked for closing (its Nth identity
            // denial in a row, or a certificate revoked or expired under
            // it): a call that arrives now is not processed and never
            // answered. The transport closes the connection with a GOAWAY
            // whose last stream id precedes it, so the client knows it was
            // not acted on; until then it costs a parked future, bounded by
            // the connection's concurrent streams.
            return Box::pin(std::future::pending());
        }
        if request.uri().path() != CALL_PATH {
            return Box::pin(self.inner.call(request));
        }
        let started = Instant::now();
        let peer = request.extensions().get::<Arc<PeerInfo>>().cloned();
        let gateway = &self.gateway;
        let now = gateway.clock.now_ms();
        let mut record = AuditRecord::new();
        let admitted = gateway
            .admit_request(peer.as_deref(), &mut record, now)
            .map(|a| (a.client, a.in_flight));
        match admitted {
            Ok((client, permit)) => {
                request.extensions_mut().insert(Ticket::new(client));
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let _permit = permit;
                    answer.await
                })
            }
            // Past the connection's identity-denial limit (decided from
            // the denial's own place in the run, so calls refused at once
            // on several threads are no exception): not answered, as above.
            Err(denial) if denial.unanswered => Box::pin(std::future::pending()),
            Err(denial) => {
                let gateway = gateway.clone();
                Box::pin(async move {
                    let _busy = peer.as_ref().map(|p| p.activity.begin());
                    let status = gateway
                        .refuse(peer.as_deref(), record, started, denial)
                        .await;
                    Ok(status.into_http())
                })
            }
        }
    }
}
