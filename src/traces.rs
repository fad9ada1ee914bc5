//! Request spans and their optional export over OTLP.
//!
//! Every gRPC request runs in a `request` span (made by [`RequestSpanLayer`])
//! whose `request.digest` field, the hex SHA-256 of the signed request
//! bytes that the audit record also carries, is the correlation id: every
//! log line written while the request runs carries it, in text and JSON.
//! Its children are one span per stage and per backend call (see
//! [`crate::metrics::StageTimer`]). Spans carry names, ids, outcomes and
//! reasons: never a payload or an argument value.
//!
//! With `[traces]`, [`install`] exports these spans over OTLP/gRPC (the
//! `opentelemetry` SDK's batch exporter); without it the stage spans are
//! never even created. The export layer sits in the subscriber from the
//! start ([`layer`]) and is filled in once the config is read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use crate::config::TracesConfig;

/// The target of every request and stage span.
pub const TARGET: &str = "sealgate::request";

type Otel = tracing_opentelemetry::OpenTelemetryLayer<Registry, opentelemetry_sdk::trace::Tracer>;

/// The export layer, once [`install`] made it.
static OTEL: OnceLock<Otel> = OnceLock::new();
/// Whether spans are exported (read on every span of [`TARGET`]).
static EXPORTING: AtomicBool = AtomicBool::new(false);
/// The provider, to flush its batch at the stop.
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// The slot for the export layer, first on the registry; it forwards to
/// the OTLP layer once [`install`] has made one and sees only request and
/// stage spans, and only while exporting.
pub fn layer() -> impl Layer<Registry> + Send + Sync {
    Deferred.with_filter(ExportFilter)
}

/// Forwards to [`OTEL`] when it is set.
struct Deferred;

impl Layer<Registry> for Deferred {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_new_span(attrs, id, ctx);
        }
    }
    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_record(span, values, ctx);
        }
    }
    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_follows_from(span, follows, ctx);
        }
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_event(event, ctx);
        }
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_enter(id, ctx);
        }
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_exit(id, ctx);
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, Registry>) {
        if let Some(l) = OTEL.get() {
            l.on_close(id, ctx);
        }
    }
}

/// Request and stage spans (and events inside them), only while
/// exporting; every other callsite is never this layer's concern, so the
/// rest of the process keeps its cached "disabled" fast path.
struct ExportFilter;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for ExportFilter {
    fn enabled(&self, meta: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        EXPORTING.load(Ordering::Relaxed) && meta.target() == TARGET
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.target() == TARGET {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// Starts exporting to `config`'s collector (nothing without `[traces]`).
/// Must run inside the Tokio runtime that serves: the exporter's channel
/// lives on it.
pub fn install(config: Option<&TracesConfig>) -> Result<(), String> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let Some(config) = config else {
        return Ok(());
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .with_timeout(std::time::Duration::from_secs(10));
    if config.otlp_endpoint.starts_with("https://") {
        exporter = exporter.with_tls_config(
            opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_native_roots(),
        );
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("field traces.otlp_endpoint: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("sealgate");
    if OTEL
        .set(tracing_opentelemetry::layer().with_tracer(tracer))
        .is_err()
    {
        return Err("traces: the exporter was already installed".into());
    }
    *PROVIDER.lock().unwrap_or_else(|p| p.into_inner()) = Some(provider);
    EXPORTING.store(true, Ordering::Release);
    tracing::callsite::rebuild_interest_cache();
    tracing::info!(endpoint = %config.otlp_endpoint, sample_ratio = config.sample_ratio, "exporting request traces over OTLP");
    Ok(())
}

/// Exports the spans still batched and stops exporting (at the stop,
/// before the runtime ends). Blocks for at most a few seconds.
pub fn shutdown() {
    EXPORTING.store(false, Ordering::Release);
    let provider = PROVIDER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(p) = provider {
        if let Err(e) = p.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
            tracing::warn!(error = %e, "traces: the last spans could not be exported");
        }
    }
}

/// Names the current request span by its correlation id: the request
/// digest in hex, as in the audit record.
pub fn correlate(digest: &[u8; 32]) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("request.digest", hex::encode(digest));
    }
}

/// A tower layer that runs every gRPC request in a `request` span.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpanLayer;

impl<S> tower::Layer<S> for RequestSpanLayer {
    type Service = RequestSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestSpan { inner }
    }
}

/// The service of [`RequestSpanLayer`].
#[derive(Clone, Debug)]
pub struct RequestSpan<S> {
    inner: S,
}

/// The gRPC method's name for a span: a known route, else `other` (a
/// path a client chose is never written into a span).
fn rpc_name(path: &str) -> &'static str {
    match path {
        "/sealgate.v1.McpGatewayService/Call" => "McpGatewayService/Call",
        "/sealgate.v1.AdminService/Call" => "AdminService/Call",
        "/grpc.health.v1.Health/Check" => "Health/Check",
        "/grpc.health.v1.Health/Watch" => "Health/Watch",
        p if p.starts_with("/grpc.reflection.") => "ServerReflection",
        _ => "other",
    }
}

impl<S, B> tower::Service<http::Request<B>> for RequestSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use tracing::Instrument as _;
        let rpc = rpc_name(request.uri().path());
        let span = tracing::info_span!(
            target: TARGET,
            "request",
            rpc,
            request.digest = tracing::field::Empty,
            client.id = tracing::field::Empty,
            method = tracing::field::Empty,
            outcome = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        self.inner.call(request).instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_routes_name_a_span() {
        assert_eq!(
            rpc_name("/sealgate.v1.McpGatewayService/Call"),
            "McpGatewayService/Call"
        );
        assert_eq!(rpc_name("/x\nforged log line/Call"), "other");
    }
}
