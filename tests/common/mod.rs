//! Shared test harness: a real gateway on 127.0.0.1:0 over real TLS, with a
//! freshly generated CA, server certificate, gateway key and clients.
#![allow(dead_code)]

pub mod cli;
pub mod logs;
pub mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use sealgate::audit::AuditLog;
use sealgate::backend::Backend;
use sealgate::ca::{Ca, CaAlgorithm, ClientRequest, GatewayInfo, IssuedClient};
use sealgate::client::{Client, Profile};
use sealgate::config::Config;
use sealgate::envelope::{self, Direction, Seal};
use sealgate::peer::AcceptStats;
use sealgate::proto::mcp_gateway_service_client::McpGatewayServiceClient;
use sealgate::proto::{CallRequest, CallResponse, SignedEnvelope};
use tokio::sync::oneshot;

pub const TRUST_DOMAIN: &str = "sealgate.test";
pub const AUDIENCE: &str = "spiffe://sealgate.test/gateway";

/// All six required tools of the embedded backend plus get_current_meps.
pub const ALICE_TOOLS: &[&str] = &[
    "get_meps",
    "get_mep_details",
    "get_plenary_sessions",
    "get_committee_info",
    "search_documents",
    "get_parliamentary_questions",
    "get_current_meps",
];

#[derive(Default)]
pub struct Options {
    /// Extra TOML appended to the gateway config.
    pub config_extra: String,
    /// Extra TOML appended to the client registry.
    pub registry_extra: String,
    /// Replaces the generated registry entry of bob (to set a rate limit, say).
    pub bob_rate_limit: Option<(u32, u32)>,
    /// Replaces `[signing] key` (a path by default) with this value.
    pub signing_key: Option<String>,
    /// Clients issued, registered, then revoked in the CRL before start.
    pub revoked_clients: Vec<&'static str>,
    /// Extra TOML lines in alice's registry entry (a connection cap, say).
    pub alice_entry_extra: String,
    /// How often the server logs its counted summaries; 60 s when `None`.
    pub summary_interval: Option<std::time::Duration>,
    /// Extra TOML lines in the `[tls]` table.
    pub tls_extra: String,
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub backend: Arc<dyn Backend>,
    backend_baseline: u64,
    pub audit: Arc<AuditLog>,
    pub stats: Arc<AcceptStats>,
    /// What SIGHUP would do.
    pub reloader: Arc<sealgate::reload::Reloader>,
    /// The running gateway's shared state (registry swaps in tests).
    pub gateway: Arc<sealgate::gateway::Gateway>,
    /// alice may call every embedded tool; bob only get_meps and no ping.
    pub alice: IssuedClient,
    pub bob: IssuedClient,
    pub ops: IssuedClient,
    pub gateway_pub: GatewayInfo,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn ca_dir(dir: &Path) -> PathBuf {
    dir.join("ca")
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> TestGateway {
        match Self::try_start_with(opts).await {
            Ok(gw) => gw,
            Err(e) => panic!("gateway did not start: {e}"),
        }
    }

    /// Starts a gateway, or returns why it refused to start.
    pub async fn try_start_with(opts: Options) -> Result<TestGateway, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = sealgate::ca::init(&ca_dir(d), TRUST_DOMAIN, CaAlgorithm::EcdsaP256, 365, false)
            .expect("ca init");
        ca.issue_server(
            &["localhost".into(), "127.0.0.1".into()],
            30,
            &d.join("server.crt"),
            &d.join("server.key"),
            false,
        )
        .expect("server cert");
        let gkey = sealgate::keys::generate_signing_key();
        sealgate::keys::write_private(
            &d.join("gateway.signing.key"),
            sealgate::keys::signing_key_pem(&gkey)
                .expect("pem")
                .as_bytes(),
            false,
        )
        .expect("gateway key");
        let listener = sealgate::server::bind_listener(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gateway_pub = GatewayInfo {
            endpoint: addr.to_string(),
            server_name: "localhost".into(),
            key_id: sealgate::identity::key_id_for(&gkey.verifying_key()),
            public_key: sealgate::keys::public_key_b64(&gkey.verifying_key()),
        };
        let alice_tools: Vec<String> = ALICE_TOOLS.iter().map(|s| s.to_string()).collect();
        let alice = issue(&ca, d, "alice", &alice_tools, &gateway_pub);
        let bob = issue(&ca, d, "bob", &["get_meps".to_string()], &gateway_pub);
        // ops may call every tool any backend offers.
        let ops = issue(&ca, d, "ops", &["*".to_string()], &gateway_pub);
        // bob may not ping: rewrite his methods.
        let mut bob_entry = bob.registry_toml.replace("\"ping\", ", "");
        if let Some((per_second, burst)) = opts.bob_rate_limit {
            bob_entry = bob_entry.replace(
                "enabled = true\n",
                &format!("enabled = true\nrate_limit = {{ per_second = {per_second}, burst = {burst} }}\n"),
            );
        }
        let alice_entry = alice.registry_toml.replacen(
            "enabled = true\n",
            &format!("enabled = true\n{}", opts.alice_entry_extra),
            1,
        );
        let mut registry = format!(
            "{}\n{}\n{}\n{}",
            alice_entry, bob_entry, ops.registry_toml, opts.registry_extra
        );
        ca.write_crl_now(sealgate::ca::DEFAULT_CRL_DAYS)
            .expect("empty CRL");
        for id in &opts.revoked_clients {
            let c = issue(&ca, d, id, &["get_meps".to_string()], &gateway_pub);
            registry.push_str(&c.registry_toml);
            ca.revoke(&c.cert, 7).expect("revoke");
        }
        std::fs::write(d.join("clients.toml"), registry).expect("registry");
        // The test binary is not sealgate: name the helper that applies a
        // stdio backend's sandbox.
        let config = format!(
            "listen = \"{addr}\"\ntrust_domain = \"{TRUST_DOMAIN}\"\n\n[tls]\ncert = \"server.crt\"\nkey = \"server.key\"\nclient_ca = \"ca/ca.crt\"\ncrls = [\"ca/crl.pem\"]\n{}\n\n[sandbox]\nhelper = \"{}\"\n\n[signing]\nkey = \"{}\"\n\n[registry]\npath = \"clients.toml\"\n\n{}\n",
            opts.tls_extra,
            env!("CARGO_BIN_EXE_sealgate"),
            opts.signing_key.as_deref().unwrap_or("gateway.signing.key"),
            opts.config_extra
        );
        std::fs::write(d.join("sealgate.toml"), config).expect("config");
        let config = Config::load(&d.join("sealgate.toml")).map_err(|e| e.to_string())?;
        let audit = Arc::new(AuditLog::memory());
        let parts = sealgate::startup::build(&config, Some(audit.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let backend = parts.gateway.router.slots()[0].backend.clone();
        // Startup traffic (tools/list for pinning) is not a client's.
        let backend_baseline = backend.messages_received();
        let stats = parts.stats.clone();
        let reloader = Arc::new(
            sealgate::reload::Reloader::new(&config, &parts)
                .with_config_file(&d.join("sealgate.toml")),
        );
        let gateway = parts.gateway.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let summary_interval = opts
            .summary_interval
            .unwrap_or(sealgate::server::SUMMARY_INTERVAL);
        tokio::spawn(async move {
            let _ = sealgate::server::run_summarizing(listener, parts, summary_interval, async {
                let _ = rx.await;
            })
            .await;
        });
        Ok(TestGateway {
            addr,
            dir,
            ca,
            backend,
            backend_baseline,
            reloader,
            audit,
            stats,
            gateway,
            alice,
            bob,
            ops,
            gateway_pub,
            shutdown: Some(tx),
        })
    }

    /// Issues `id` with a tier (and admin flag), appends it to the
    /// registry and reloads, as an operator would.
    pub async fn enroll(
        &self,
        id: &str,
        tier: Option<&str>,
        tools: &[&str],
        admin: bool,
    ) -> IssuedClient {
        let tools: Vec<String> = tools.iter().map(|t| t.to_string()).collect();
        let issued = self
            .ca
            .issue_client_with(
                &ClientRequest {
                    id,
                    days: 30,
                    tools: &tools,
                    out_dir: &self.path("clients"),
                    gateway: Some(GatewayInfo {
                        endpoint: self.gateway_pub.endpoint.clone(),
                        server_name: self.gateway_pub.server_name.clone(),
                        key_id: self.gateway_pub.key_id.clone(),
                        public_key: self.gateway_pub.public_key.clone(),
                    }),
                    force: false,
                },
                &sealgate::ca::EntryOptions { tier, admin },
            )
            .expect("issue client");
        let registry = self.path("clients.toml");
        let mut text = std::fs::read_to_string(&registry).expect("registry");
        text.push('\n');
        text.push_str(&issued.registry_toml);
        std::fs::write(&registry, text).expect("registry written");
        self.reloader.reload().await;
        assert!(
            self.gateway
                .registry
                .load()
                .get(&sealgate::identity::ClientId::parse(id).expect("id"))
                .is_some(),
            "{id} was loaded"
        );
        issued
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A second gateway from the same folder (CA, keys, registry, pins and
    /// config) on its own port: another replica of this one.
    pub async fn replica(&self) -> Replica {
        let listener = sealgate::server::bind_listener(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let text = std::fs::read_to_string(self.path("sealgate.toml")).expect("config");
        let text = text.replacen(
            &format!("listen = \"{}\"", self.addr),
            &format!("listen = \"{addr}\""),
            1,
        );
        let file = self.path(&format!("sealgate-{}.toml", addr.port()));
        std::fs::write(&file, text).expect("replica config");
        let config = Config::load(&file).expect("replica config loads");
        let audit = Arc::new(AuditLog::memory());
        let parts = sealgate::startup::build(&config, Some(audit.clone()))
            .await
            .unwrap_or_else(|e| panic!("replica did not start: {e}"));
        let backend = parts.gateway.router.slots()[0].backend.clone();
        let backend_baseline = backend.messages_received();
        let gateway = parts.gateway.clone();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = sealgate::server::run(listener, parts, async {
                let _ = rx.await;
            })
            .await;
        });
        Replica {
            addr,
            gateway,
            audit,
            backend,
            backend_baseline,
            shutdown: Some(tx),
        }
    }

    /// A low-level client of `who` connected to `addr` (a replica, a load
    /// balancer) instead of this gateway.
    pub async fn raw_to(&self, who: &IssuedClient, addr: SocketAddr) -> RawClient {
        let p = self.profile(who);
        let tls =
            sealgate::tls::client_config(&ca_dir(self.dir.path()).join("ca.crt"), &p.cert, &p.key)
                .expect("tls config");
        let channel = sealgate::tls::connect_channel(&addr.to_string(), "localhost", tls)
            .await
            .expect("connect");
        RawClient {
            rpc: McpGatewayServiceClient::new(channel),
            key: sealgate::keys::load_signing_key(&p.signing_key).expect("signing key"),
            key_id: p.key_id.clone(),
        }
    }

    /// The client SDK of `who`, connected to `addr`.
    pub async fn client_to(&self, who: &IssuedClient, addr: SocketAddr) -> Client {
        let mut p = self.profile(who);
        p.endpoint = addr.to_string();
        Client::connect(&p).await.expect("client connects")
    }

    /// Requests that reached the backend `name` (including startup listing).
    pub fn router_calls(&self, name: &str) -> u64 {
        self.gateway
            .router
            .backend(name)
            .expect("backend")
            .messages_received()
    }

    /// Requests that reached the first backend since startup.
    pub fn backend_calls(&self) -> u64 {
        self.backend.messages_received() - self.backend_baseline
    }

    pub fn last_audit(&self) -> serde_json::Value {
        let lines = self.audit.lines();
        let line = lines.last().expect("an audit record was written");
        serde_json::from_str(line).expect("audit line is JSON")
    }

    pub fn profile(&self, who: &IssuedClient) -> Profile {
        Profile::load(&who.profile).expect("profile")
    }

    pub async fn client(&self, who: &IssuedClient) -> Client {
        Client::connect(&self.profile(who))
            .await
            .expect("client connects")
    }

    /// A low-level client that sends hand-made envelopes.
    pub async fn raw(&self, who: &IssuedClient) -> RawClient {
        let p = self.profile(who);
        self.raw_with(&p.cert, &p.key, &p.signing_key, &p.key_id)
            .await
    }

    pub async fn raw_with(
        &self,
        cert: &Path,
        key: &Path,
        signing_key: &Path,
        key_id: &str,
    ) -> RawClient {
        let tls = sealgate::tls::client_config(&ca_dir(self.dir.path()).join("ca.crt"), cert, key)
            .expect("tls config");
        let channel = sealgate::tls::connect_channel(&self.addr.to_string(), "localhost", tls)
            .await
            .expect("connect");
        RawClient {
            rpc: McpGatewayServiceClient::new(channel),
            key: sealgate::keys::load_signing_key(signing_key).expect("signing key"),
            key_id: key_id.to_string(),
        }
    }
}

/// Another gateway process's worth of state, serving from a
/// [`TestGateway`]'s folder ([`TestGateway::replica`]); stopped on drop.
pub struct Replica {
    pub addr: SocketAddr,
    pub gateway: Arc<sealgate::gateway::Gateway>,
    pub audit: Arc<AuditLog>,
    backend: Arc<dyn Backend>,
    backend_baseline: u64,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Replica {
    /// Requests that reached its first backend since it started.
    pub fn backend_calls(&self) -> u64 {
        self.backend.messages_received() - self.backend_baseline
    }

    pub fn last_audit(&self) -> serde_json::Value {
        let lines = self.audit.lines();
        let line = lines.last().expect("an audit record was written");
        serde_json::from_str(line).expect("audit line is JSON")
    }
}

fn issue(ca: &Ca, dir: &Path, id: &str, tools: &[String], gw: &GatewayInfo) -> IssuedClient {
    ca.issue_client(&ClientRequest {
        id,
        days: 30,
        tools,
        out_dir: &dir.join("clients"),
        gateway: Some(GatewayInfo {
            endpoint: gw.endpoint.clone(),
            server_name: gw.server_name.clone(),
            key_id: gw.key_id.clone(),
            public_key: gw.public_key.clone(),
        }),
        force: false,
    })
    .expect("issue client")
}

/// Backend keys for a stdio backend whose test is not about isolation: it
/// runs as the test's own user without a sandbox, so fixtures may write
/// where the test tells them (tests/hostile_backend.rs tests the sandbox).
pub fn unsandboxed() -> String {
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("the test's own account has a name");
    format!("user = \"{me}\"\nsandbox = \"off\"\n")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

pub struct RawClient {
    pub rpc: McpGatewayServiceClient<tonic::transport::Channel>,
    pub key: SigningKey,
    pub key_id: String,
}

impl RawClient {
    /// A correctly sealed request envelope for `payload`.
    pub fn seal(&self, payload: &[u8]) -> SignedEnvelope {
        self.seal_at(payload, now_ms(), envelope::random_nonce())
    }

    pub fn seal_at(&self, payload: &[u8], ts: i64, nonce: Bytes) -> SignedEnvelope {
        envelope::seal(
            &self.key,
            Seal {
                direction: Direction::Request,
                audience: AUDIENCE,
                key_id: &self.key_id,
                timestamp_unix_ms: ts,
                nonce,
                payload: Bytes::copy_from_slice(payload),
                request_digest: None,
            },
        )
        .0
    }

    pub async fn send(&self, env: SignedEnvelope) -> Result<CallResponse, tonic::Status> {
        self.rpc
            .clone()
            .call(CallRequest {
                envelope: Some(env),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn send_payload(&self, payload: &[u8]) -> Result<CallResponse, tonic::Status> {
        self.send(self.seal(payload)).await
    }
}

pub const GET_MEPS: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_meps","arguments":{"country":"SE","limit":2}}}"#;

/// Asserts a denial: gRPC code, sealgate reason, the backend untouched, and
/// an audit record with that reason.
pub fn assert_denied(
    gw: &TestGateway,
    result: Result<CallResponse, tonic::Status>,
    code: tonic::Code,
    reason: &str,
    backend_before: u64,
) {
    let status = match result {
        Ok(_) => panic!("expected {reason}, but the request was allowed"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "code for {reason}: {status:?}");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some(reason),
        "{status:?}"
    );
    assert!(
        status.message().starts_with(reason),
        "message names the reason: {}",
        status.message()
    );
    assert_eq!(
        gw.backend_calls(),
        backend_before,
        "{reason}: the backend must not be reached"
    );
    let audit = gw.last_audit();
    assert_eq!(audit["outcome"], "denied");
    assert_eq!(audit["reason"], reason);
}

/// Asserts a refusal's gRPC code and sealgate reason; returns the status.
pub fn refused(
    result: Result<CallResponse, tonic::Status>,
    code: tonic::Code,
    reason: &str,
) -> tonic::Status {
    let status = match result {
        Ok(_) => panic!("expected {reason}, but the request was allowed"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "code for {reason}: {status:?}");
    assert_eq!(
        sealgate::error::reason_of(&status).as_deref(),
        Some(reason),
        "{status:?}"
    );
    status
}
