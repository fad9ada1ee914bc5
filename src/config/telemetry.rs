//! `[metrics]` and `[traces]`: the plain-HTTP metrics listener and the
//! OpenTelemetry trace export, with their defaults and checks.

use std::net::SocketAddr;

use serde::Deserialize;

/// `[metrics]`: `/metrics` (Prometheus text), `/healthz` and `/readyz` on a
/// plain-HTTP listener of their own, never on the mTLS port. It serves
/// figures only (no payload, argument, key or client certificate, and
/// client ids only with `client_labels`), yet it is unauthenticated:
/// loopback unless `allow_remote` says otherwise.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to listen, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
    /// A non-loopback `listen` must be asked for explicitly (a pod's
    /// Prometheus and kubelet probes reach it on the pod address).
    #[serde(default)]
    pub allow_remote: bool,
    /// The most registry client ids that get a `client` label value of
    /// their own in `sealgate_client_requests_total`, first come first
    /// served for the life of the process; later ones are counted as
    /// `client="_other"`. 0 (the default): no per-client family at all,
    /// and no client id on the listener. At most [`MAX_CLIENT_LABELS`].
    #[serde(default)]
    pub client_labels: u32,
}

/// The largest `[metrics] client_labels`: each labelled client adds a
/// time series per outcome and reason it meets.
pub const MAX_CLIENT_LABELS: u32 = 1000;

/// `[traces]`: one span per request with a child per stage and per backend
/// call (names and outcomes, never argument values), exported over
/// OTLP/gRPC.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`
    /// (`https://` verifies the collector against the system roots).
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The fraction of requests traced, 0.0 to 1.0.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl MetricsConfig {
    /// Checks the section; `listen` and `enrollment_listen` are the other
    /// listeners of the file, which it must not share a port with.
    pub(super) fn validate(
        &self,
        listen: SocketAddr,
        enrollment_listen: Option<SocketAddr>,
    ) -> Result<(), String> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "field metrics.listen: {} is not a loopback address; the listener is unauthenticated, so set metrics.allow_remote = true to serve it there on purpose",
                self.listen
            ));
        }
        let clash = std::iter::once(("listen", listen))
            .chain(enrollment_listen.map(|l| ("enrollment.listen", l)));
        for (field, addr) in clash {
            if addr == self.listen && addr.port() != 0 {
                return Err(format!("field metrics.listen: must differ from {field}"));
            }
        }
        if self.client_labels > MAX_CLIENT_LABELS {
            return Err(format!(
                "field metrics.client_labels: {} is more than {MAX_CLIENT_LABELS}; each labelled client adds a time series per outcome and reason, so keep the cap to the clients worth watching one by one",
                self.client_labels
            ));
        }
        Ok(())
    }
}

impl TracesConfig {
    /// Checks the section.
    pub(super) fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.otlp_endpoint)
            .map_err(|e| format!("field traces.otlp_endpoint: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(
                "field traces.otlp_endpoint: must be http://HOST:PORT or https://HOST:PORT".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err("field traces.sample_ratio: must be 0.0..=1.0".into());
        }
        if self.service_name.is_empty() {
            return Err("field traces.service_name: must not be empty".into());
        }
        Ok(())
    }
}

fn default_service_name() -> String {
    "sealgate".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}
