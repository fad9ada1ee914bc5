//! The enrollment harness shared by the enrollment test files: a gateway
//! with `[enrollment]` and its enrollment listener over real TLS 1.3.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::common::*;
use sealgate::client::{Client, ClientError, Profile};
use sealgate::enroll::client::EnrollOptions;
use sealgate::identity::ClientId;
use sealgate::proto::enrollment_service_client::EnrollmentServiceClient;
use serde_json::json;

/// A gateway with `[enrollment]`, its enrollment listener, and a registry
/// entry for "carol" (no keys: she enrolls).
pub struct Setup {
    pub gw: TestGateway,
    pub enroll_addr: std::net::SocketAddr,
    /// What SIGHUP does to a gateway serving enrollment (its listener's
    /// CRLs included).
    pub reloader: sealgate::reload::Reloader,
    /// The enrollment service and its listener's TLS configuration.
    pub parts: sealgate::startup::EnrollmentParts,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn server_parts(
    gw: &TestGateway,
    config: &sealgate::config::Config,
) -> sealgate::server::ServerParts {
    sealgate::server::ServerParts {
        gateway: gw.gateway.clone(),
        tls: Arc::new(arc_swap::ArcSwap::new(
            sealgate::startup::tls_server_config(config).expect("tls"),
        )),
        transport: Default::default(),
        trust_domain: TRUST_DOMAIN.into(),
        stats: gw.stats.clone(),
    }
}

pub const CAROL: &str = r#"
[[client]]
id = "carol"
methods = ["initialize", "ping", "tools/list", "tools/call"]
tools = ["get_meps"]
"#;

pub async fn setup(overlap_secs: u64) -> Setup {
    setup_with(overlap_secs, "").await
}

/// [`setup`] with `extra` config after the `[enrollment]` table.
pub async fn setup_with(overlap_secs: u64, extra: &str) -> Setup {
    let gw = TestGateway::start_with(Options {
        // The first lines land in [registry].
        config_extra: format!(
            "enrolled_keys = \"enrolled-keys.toml\"\n\n[enrollment]\nlisten = \"127.0.0.1:1\"\nca_dir = \"ca\"\ncert_days = 2\nkey_days = 3\nkey_overlap_secs = {overlap_secs}\n{extra}"
        ),
        registry_extra: CAROL.into(),
        ..Default::default()
    })
    .await;
    let config = sealgate::config::Config::load(&gw.path("sealgate.toml")).expect("config");
    let parts = sealgate::startup::build_enrollment(
        &config,
        Some(gw.gateway.clone()),
        Vec::new(),
        Some(gw.audit.clone()),
    )
    .await
    .expect("enrollment builds")
    .expect("configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let enroll_addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sealgate::enroll::listener::serve(
        listener,
        parts.tls.clone(),
        parts.state.clone(),
        async {
            let _ = rx.await;
        },
    ));
    let reloader = sealgate::reload::Reloader::new(&config, &server_parts(&gw, &config))
        .with_config_file(&gw.path("sealgate.toml"))
        .with_enrollment(&parts);
    Setup {
        gw,
        enroll_addr,
        reloader,
        parts,
        _stop: tx,
    }
}

impl Setup {
    pub fn token(&self, id: &str, ttl_secs: u64, now_ms: i64) -> String {
        sealgate::enroll::tokens::create(
            &ca_dir(self.gw.dir.path()),
            &ClientId::parse(id).expect("id"),
            ttl_secs,
            now_ms,
        )
        .expect("token")
        .0
    }

    pub fn enroll_options(&self, id: &str, dir: &str) -> EnrollOptions {
        EnrollOptions {
            enrollment: self.enroll_addr.to_string(),
            endpoint: self.gw.addr.to_string(),
            server_name: "localhost".into(),
            ca: ca_dir(self.gw.dir.path()).join("ca.crt"),
            trust_domain: TRUST_DOMAIN.into(),
            audience: None,
            id: id.into(),
            dir: self.gw.path(dir),
            force: false,
        }
    }

    pub fn issued_count(&self) -> usize {
        std::fs::read_to_string(ca_dir(self.gw.dir.path()).join("issued.toml"))
            .expect("index")
            .matches("kind = \"client\"")
            .count()
    }

    pub fn enrolled_text(&self) -> String {
        std::fs::read_to_string(self.gw.path("enrolled-keys.toml")).unwrap_or_default()
    }

    /// A raw channel to the enrollment listener, anonymous or with a
    /// client certificate.
    pub async fn rpc(
        &self,
        cert: Option<(&Path, &Path)>,
    ) -> EnrollmentServiceClient<tonic::transport::Channel> {
        let ca = ca_dir(self.gw.dir.path()).join("ca.crt");
        let tls = match cert {
            Some((c, k)) => sealgate::tls::client_config(&ca, c, k).expect("tls"),
            None => sealgate::tls::enroll_client_config(&ca).expect("tls"),
        };
        let channel =
            sealgate::tls::connect_channel(&self.enroll_addr.to_string(), "localhost", tls)
                .await
                .expect("connect");
        EnrollmentServiceClient::new(channel)
    }
}

pub fn reason(status: &tonic::Status) -> String {
    sealgate::error::reason_of(status).unwrap_or_default()
}

pub fn assert_refused(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: tonic::Code,
    want: &str,
) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), want, "{status:?}");
    assert!(status.message().starts_with(want), "{}", status.message());
}

pub fn denied_reason(e: &ClientError) -> Option<&str> {
    match e {
        ClientError::Denied { reason, .. } => reason.as_deref(),
        _ => None,
    }
}

pub async fn call_get_meps(profile: &Profile) -> Result<serde_json::Value, ClientError> {
    let client = Client::connect(profile).await?;
    client
        .call_tool("get_meps", json!({"country": "SE", "limit": 1}))
        .await
}

/// A first certificate and key for carol, made on "her machine".
pub async fn enroll_carol(s: &Setup) -> PathBuf {
    let token = s.token("carol", 600, now_ms());
    let done = sealgate::enroll::client::enroll(&s.enroll_options("carol", "carol"), &token)
        .await
        .expect("enroll");
    done.profile
}
