//! The operators' view (issue 28): `deploy/prometheus/sealgate.rules.yml`
//! and `deploy/grafana/sealgate.json` against real components.
//!
//! - Debian's `promtool` checks the rules and runs their unit tests.
//! - A real Prometheus on loopback, with the rules, scrapes a real `sealgate
//!   serve`; the test trips an anomaly block and makes the audit file
//!   immutable, and reads `ALERTS` from Prometheus's HTTP API: both alerts
//!   fire (and the sink's), with the labels the dashboard selects on, and
//!   nothing else does.
//! - Every `sealgate_*` name in the rules and the dashboard is one the
//!   gateway's `/metrics` exposes, and every dashboard query is one that
//!   Prometheus accepts.

#[path = "audit_common.rs"]
mod audit_common;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audit_common::{free_port, Setup};
use common::services::Redis;
use sealgate::client::{Client, ClientError, Profile};
use serde_json::{json, Value};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const RULES: &str = "deploy/prometheus/sealgate.rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/sealgate.rules.test.yml";
const DASHBOARD: &str = "deploy/grafana/sealgate.json";

/// A Debian program (`promtool`, `prometheus`): scripts/test.sh installs
/// them; a machine without them fails here rather than passing silently.
fn program(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed (scripts/test.sh installs Debian's prometheus)")
        })
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let check = Command::new(program("promtool"))
        .args(["check", "rules"])
        .arg(repo(RULES))
        .output()
        .expect("run promtool check rules");
    let text = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 34 rules found"), "{text}");

    let test = Command::new(program("promtool"))
        .args(["test", "rules"])
        .arg(repo(RULE_TESTS))
        .output()
        .expect("run promtool test rules");
    let text =
        String::from_utf8_lossy(&test.stdout).into_owned() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Every alert of the rules: (name, its lines up to the next rule).
fn alerts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo(RULES)).expect("rules");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert: ") {
            out.push((name.trim().to_string(), String::new()));
        } else if t.starts_with("- record: ") || t.starts_with("- name: ") {
            out.push((String::new(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(t);
            body.push('\n');
        }
    }
    out.retain(|(name, _)| !name.is_empty());
    out
}

#[test]
fn every_alert_has_a_severity_and_a_runbook_entry_in_operations_md() {
    let ops = std::fs::read_to_string(repo("docs/OPERATIONS.md")).expect("OPERATIONS.md");
    let headings: BTreeSet<String> = ops
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.trim().to_string())
        .collect();
    let alerts = alerts();
    assert!(alerts.len() >= 20, "{} alerts", alerts.len());
    for (name, body) in &alerts {
        assert!(
            ["severity: critical", "severity: warning", "severity: info"]
                .iter()
                .any(|s| body.contains(s)),
            "{name}: no severity"
        );
        let anchor = format!(
            "runbook_url: \"docs/OPERATIONS.md#{}\"",
            name.to_lowercase()
        );
        assert!(body.contains(&anchor), "{name}: no {anchor}");
        assert!(
            headings.contains(name),
            "{name}: no `### {name}` runbook entry in docs/OPERATIONS.md"
        );
        assert!(body.contains("summary: "), "{name}: no summary");
    }
}

#[test]
fn the_dashboard_is_what_its_generator_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sealgate.json");
    let run = Command::new("python3")
        .arg(repo("deploy/grafana/dashboard.py"))
        .arg(&out)
        .output()
        .expect("run python3");
    assert!(run.status.success(), "{run:?}");
    let generated = std::fs::read_to_string(&out).expect("generated");
    let committed = std::fs::read_to_string(repo(DASHBOARD)).expect("committed");
    assert!(
        generated == committed,
        "{DASHBOARD} differs from what deploy/grafana/dashboard.py writes: run it and commit both"
    );
    let d: Value = serde_json::from_str(&committed).expect("dashboard JSON");
    let rows: Vec<&str> = d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] == "row")
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert_eq!(
        rows,
        [
            "Request path",
            "Admission and anomalies",
            "Audit delivery",
            "Backends",
            "Credentials",
            "Replicas"
        ]
    );
}

/// Every PromQL expression of the dashboard (panels and annotations).
fn dashboard_queries() -> Vec<String> {
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).expect("dashboard"))
            .expect("dashboard JSON");
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&d, &mut out);
    out
}

/// Every `sealgate_…` metric name in `text` (not the middle of a
/// recording rule's `level:metric:operations` name).
fn metric_names(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bsealgate_[a-z0-9_]+").expect("regex");
    re.find_iter(text)
        .filter(|m| !text[..m.start()].ends_with(':') && !text[m.end()..].starts_with(':'))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// The series names a Prometheus text exposition can hold: every sample's
/// name, and for each family described (also one without rows now) the
/// names its type gives its samples.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                out.insert(format!("{name}{s}"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            out.insert(line[..end].to_string());
        }
    }
    out
}

/// Each series name of an exposition with the labels and values its rows
/// have: name -> label -> values.
fn exposed_labels(
    exposition: &str,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, BTreeSet<String>>> {
    let re = regex::Regex::new(r#"(\w+)="([^"]*)""#).expect("regex");
    let mut out: std::collections::BTreeMap<_, std::collections::BTreeMap<_, BTreeSet<_>>> =
        Default::default();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, _)) = rest.rsplit_once('}') else {
            continue;
        };
        let entry = out.entry(name.to_string()).or_default();
        for c in re.captures_iter(labels) {
            entry
                .entry(c[1].to_string())
                .or_default()
                .insert(c[2].to_string());
        }
    }
    out
}

/// Every `label="value"` (and `label!=`, `=~`, `!~`) matcher on a
/// `sealgate_…` series in `text`: (series, label, operator, value).
fn selectors(text: &str) -> Vec<(String, String, String, String)> {
    let sel = regex::Regex::new(r"\b(sealgate_[a-z0-9_]+)\{([^}]*)\}").expect("regex");
    let matcher =
        regex::Regex::new(r#"(\w+)\s*(=~|!~|!=|=)\s*\\?"((?:[^"\\]|\\.)*?)\\?""#).expect("regex");
    let mut out = Vec::new();
    for c in sel.captures_iter(text) {
        let Some(m) = c.get(1) else { continue };
        if text[..m.start()].ends_with(':') {
            continue;
        }
        for mc in matcher.captures_iter(&c[2]) {
            out.push((
                c[1].to_string(),
                mc[1].to_string(),
                mc[2].to_string(),
                mc[3].to_string(),
            ));
        }
    }
    out
}

/// `GET` on loopback, the body as text.
async fn get_text(url: &str) -> Result<String, String> {
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// A real Prometheus on a free loopback port, scraping one target every
/// second and evaluating `rules` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Prometheus {
    async fn start(target_port: u16, rules: &Path) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: sealgate\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
                rules.display()
            ),
        )
        .expect("prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let child = Command::new(program("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            child,
            port,
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while get_text(&p.url("/-/ready")).await.is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited: {status}\n{}", p.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready\n{}",
                p.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        p
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query: its result vector, or Prometheus's error.
    async fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(&self.url("/api/v1/query"), &[("query", promql)])
            .map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&get_text(url.as_str()).await?).map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(v.to_string());
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The firing alerts' label sets, as `ALERTS` holds them.
    async fn firing(&self) -> Vec<serde_json::Map<String, Value>> {
        self.query("ALERTS{alertstate=\"firing\"}")
            .await
            .unwrap_or_else(|e| panic!("ALERTS: {e}"))
            .into_iter()
            .filter_map(|s| s["metric"].as_object().cloned())
            .collect()
    }

    /// Polls the firing alerts until `done` holds them, for `secs` at most.
    async fn wait_firing(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&[serde_json::Map<String, Value>]) -> bool,
    ) -> Vec<serde_json::Map<String, Value>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let firing = self.firing().await;
            if done(&firing) {
                return firing;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {secs} s; firing: {firing:?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clears the immutable flag it set, whatever the test did.
struct Immutable(PathBuf);

impl Immutable {
    fn set(file: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(file)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Immutable(file.to_path_buf()))
    }

    fn clear(&self) {
        let ok = Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chattr -i {}", self.0.display());
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// A second client, `analyst`, that may call get_meps, with a profile.
fn add_client(s: &Setup) -> PathBuf {
    let ca = sealgate::ca::Ca::load(&s.path("ca")).expect("dev CA");
    let demo = Profile::load(&s.path("clients/demo.profile.toml")).expect("demo profile");
    let key = demo.gateway_keys.first().expect("a gateway key");
    let issued = ca
        .issue_client_with(
            &sealgate::ca::ClientRequest {
                id: "analyst",
                days: 30,
                tools: &["get_meps".to_string()],
                out_dir: &s.path("clients"),
                gateway: Some(sealgate::ca::GatewayInfo {
                    endpoint: demo.endpoint.clone(),
                    server_name: demo.server_name.clone(),
                    key_id: key.key_id.clone(),
                    public_key: key.public_key.clone(),
                }),
                force: false,
            },
            &sealgate::ca::EntryOptions {
                tier: None,
                admin: false,
            },
        )
        .expect("issue analyst");
    let registry = s.path("clients.toml");
    let text = std::fs::read_to_string(&registry).expect("registry") + "\n" + &issued.registry_toml;
    std::fs::write(&registry, text).expect("registry");
    issued.profile
}

fn label<'a>(alert: &'a serde_json::Map<String, Value>, name: &str) -> &'a str {
    alert.get(name).and_then(Value::as_str).unwrap_or("")
}

fn names(firing: &[serde_json::Map<String, Value>]) -> BTreeSet<String> {
    firing
        .iter()
        .map(|a| label(a, "alertname").to_string())
        .collect()
}

/// The issue's end-to-end check, and the names check on the same gateway
/// (configured so that every optional family is exported: client labels, a
/// shared state store, a witness, a memory limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_fires_the_audit_and_anomaly_alerts_of_a_real_gateway() {
    let redis = Redis::start();
    let witness_key = sealgate::tlog::SignerKey::generate(
        sealgate::tlog::KeyName::new("w.example").expect("name"),
        sealgate::tlog::SignatureType::CosignatureV1,
    );
    // The shared store is fresh: `persistent = true` trusts it at once
    // (else the first skew window is refused). A witness that is never reachable: its metrics exist, its quorum
    // waits (an hour may pass before that alerts).
    let setup = Setup::new(&format!(
        "path = \"audit.jsonl\"\nsigning_key = \"file:audit.signing.key\"\n\n\
         [audit.witness]\nmax_unwitnessed_secs = 3600\n\
         [[audit.witness.peer]]\nurl = \"https://127.0.0.1:{}/\"\nkey = \"{}\"\nca_file = \"{{dir}}/ca/ca.crt\"\n",
        free_port(),
        witness_key.verifier()
    ));
    let metrics_port = free_port();
    let config = setup.path("sealgate.toml");
    let text = std::fs::read_to_string(&config).expect("config")
        + &format!(
            "\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\nclient_labels = 5\n\n\
             [anomaly.denials]\nthreshold = 3\ncooldown_secs = 0\n\n\
             [state]\nkind = \"redis\"\nurl = \"{}\"\ntimeout_ms = 2000\npersistent = true\n",
            redis.url()
        );
    std::fs::write(&config, text).expect("config");
    let analyst_profile = add_client(&setup);

    let gw = setup.serve();
    // A memory limit far above what it uses: the memory gauges appear.
    let limit = Command::new("prlimit")
        .arg(format!("--pid={}", gw.pid()))
        .arg("--as=68719476736:")
        .status()
        .expect("prlimit");
    assert!(limit.success(), "prlimit");
    let prometheus = Prometheus::start(metrics_port, &repo(RULES)).await;
    let instance = format!("127.0.0.1:{metrics_port}");

    let demo = gw.client().await;
    let analyst = Client::connect(&Profile::load(&analyst_profile).expect("profile"))
        .await
        .expect("analyst connects");
    if let Err(e) = audit_common::call(&analyst).await {
        panic!("not served: {e:?}\n{}", gw.log_text());
    }
    // Scraped, and nothing fires on a healthy gateway.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prometheus
        .query(&format!("sealgate_ready{{instance=\"{instance}\"}} == 1"))
        .await
        .map_or(true, |r| r.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "never scraped ready\n{}",
            prometheus.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let firing = prometheus.firing().await;
    assert!(firing.is_empty(), "healthy, yet firing: {firing:?}");

    // Three refusals for something demo did: the denials detector blocks it.
    for _ in 0..3 {
        match demo.call_tool("get_voting_records", json!({})).await {
            Err(ClientError::Denied { reason, .. }) => {
                assert_eq!(reason.as_deref(), Some("TOOL_NOT_ALLOWED"))
            }
            other => panic!("expected TOOL_NOT_ALLOWED, got {other:?}"),
        }
    }
    match demo.call_tool("get_meps", json!({})).await {
        Err(ClientError::Denied { reason, .. }) => {
            assert_eq!(reason.as_deref(), Some("IDENTITY_BLOCKED"))
        }
        other => panic!("expected IDENTITY_BLOCKED, got {other:?}"),
    }

    // The audit file cannot be written: analyst's calls are refused.
    let file = setup.path("audit.jsonl");
    let Some(immutable) = Immutable::set(&file) else {
        assert!(
            std::env::var_os("SEALGATE_TEST_NO_CHATTR").is_some(),
            "chattr +i failed: run as root on a filesystem with that flag, or set SEALGATE_TEST_NO_CHATTR=1"
        );
        eprintln!("NOT RUN: chattr +i unsupported and SEALGATE_TEST_NO_CHATTR is set");
        return;
    };
    // The first call's answer is withheld (its record could not be
    // committed), the next ones are refused before any work.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    while refused < 3 {
        match audit_common::call(&analyst).await {
            Err((code, reason)) if reason.as_deref() == Some("AUDIT_UNAVAILABLE") => {
                assert_eq!(code, tonic::Code::Unavailable);
                refused += 1;
            }
            other => {
                assert!(Instant::now() < deadline, "never refused: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let expected = BTreeSet::from([
        "SealgateAnomalyBlock".to_string(),
        "SealgateAuditSinkDown".to_string(),
        "SealgateAuditUnavailable".to_string(),
    ]);
    let firing = prometheus
        .wait_firing(60, "the audit and anomaly alerts firing", |f| {
            names(f).is_superset(&expected)
        })
        .await;
    assert_eq!(names(&firing), expected, "{firing:?}");
    for alert in &firing {
        // The dashboard's variables select on job and instance.
        assert_eq!(label(alert, "job"), "sealgate", "{alert:?}");
        assert_eq!(label(alert, "instance"), instance, "{alert:?}");
        match label(alert, "alertname") {
            "SealgateAuditUnavailable" => {
                assert_eq!(label(alert, "severity"), "critical", "{alert:?}")
            }
            "SealgateAuditSinkDown" => {
                assert_eq!(label(alert, "severity"), "warning", "{alert:?}");
                assert_eq!(label(alert, "sink"), "0", "{alert:?}");
                assert_eq!(label(alert, "kind"), "file", "{alert:?}");
            }
            _ => {
                assert_eq!(label(alert, "severity"), "warning", "{alert:?}");
                assert_eq!(label(alert, "detector"), "denials", "{alert:?}");
            }
        }
    }

    // Every name the rules and the dashboard use is exposed, and every
    // dashboard query is one Prometheus accepts (and, for the panels the
    // state above fills, answers).
    let exposition = get_text(&format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("scrape /metrics");
    let exposed = exposed_names(&exposition);
    // The limits alerts compare with, as configured (defaults, and the
    // witness's hour).
    for row in [
        "sealgate_credential_expiry_warning_seconds 1209600",
        "sealgate_audit_queue_capacity 8192",
        "sealgate_audit_max_unwitnessed_seconds 3600",
        "sealgate_audit_sink_up{sink=\"0\",kind=\"file\"} 0",
        "sealgate_clients_without_valid_key 0",
    ] {
        assert!(exposition.contains(row), "{row} in:\n{exposition}");
    }
    // Each AUDIT_UNAVAILABLE the client saw is counted once: refused, or
    // withheld (which one depends on whether the writer failed before the
    // first call came).
    let answered: u64 = ["refused", "withheld"]
        .iter()
        .map(|how| {
            let row = format!("sealgate_audit_unavailable_answers_total{{how=\"{how}\"}} ");
            exposition
                .lines()
                .find_map(|l| l.strip_prefix(row.as_str()))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {row} in:\n{exposition}"))
        })
        .sum();
    assert_eq!(answered, 3, "{exposition}");
    let rules_text = std::fs::read_to_string(repo(RULES)).expect("rules");
    let dashboard_text = std::fs::read_to_string(repo(DASHBOARD)).expect("dashboard");
    for (what, text) in [("rules", &rules_text), ("dashboard", &dashboard_text)] {
        let used = metric_names(text);
        assert!(used.len() > 15, "{what}: {used:?}");
        let missing: Vec<_> = used.difference(&exposed).collect();
        assert!(
            missing.is_empty(),
            "{what} uses names /metrics does not expose: {missing:?}\n{exposition}"
        );
    }
    // Every label a rule or a query selects on is one its series has, and
    // every value it names (=, !=, and each alternative of a =~ or !~
    // list) is one a row has, but for the values this gateway's state
    // cannot show (named here with their label, so a misspelt one fails;
    // src/policy/anomaly/tests count those rows).
    let labels = exposed_labels(&exposition);
    let not_shown_here: BTreeSet<(&str, &str, &str)> = BTreeSet::from([
        ("sealgate_anomaly_restrictions", "subject", "source"),
        ("sealgate_anomaly_restrictions", "action", "throttle"),
    ]);
    let mut checked = 0;
    for (what, text) in [("rules", &rules_text), ("dashboard", &dashboard_text)] {
        for (series, label, op, value) in selectors(text) {
            if ["job", "instance", "alertname", "alertstate", "severity"].contains(&label.as_str())
            {
                continue;
            }
            let Some(have) = labels.get(&series) else {
                panic!("{what}: {series} has no rows to check {label} against");
            };
            let Some(values) = have.get(&label) else {
                panic!(
                    "{what}: {series} has no label {label} (it has {:?})",
                    have.keys()
                );
            };
            let named: Vec<&str> = match op.as_str() {
                "=" | "!=" => vec![value.as_str()],
                // A list of alternatives (`a|b`); a pattern (`.*`, `$job`)
                // names nothing to check.
                _ if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_|".contains(c)) =>
                {
                    value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for v in named {
                if not_shown_here.contains(&(series.as_str(), label.as_str(), v)) {
                    continue;
                }
                assert!(
                    values.contains(v),
                    "{what}: {series}{{{label}{op}\"{value}\"}}: no row has {label}=\"{v}\" (values: {values:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} matchers checked");

    let queries = dashboard_queries();
    assert!(queries.len() > 40, "{} queries", queries.len());
    for q in &queries {
        let promql = q
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        if let Err(e) = prometheus.query(&promql).await {
            panic!("dashboard query refused by Prometheus: {q}\n{e}");
        }
    }
    for (q, label_name) in [
        (
            "sum by (subject, action, detector) (sealgate_anomaly_restrictions)",
            "detector",
        ),
        ("sealgate_audit_sink_up == 0", "kind"),
    ] {
        let r = prometheus.query(q).await.expect("query");
        assert!(
            r.iter().any(|s| s["metric"][label_name].is_string()),
            "{q}: {r:?}"
        );
    }

    // Writable again: served, and Prometheus sees the trail and the sink
    // back. (The audit alerts stay for 5 minutes after the last refusal
    // and the last failed delivery, so that a flapping sink is seen: not
    // waited for here, the unit tests cover their end.)
    immutable.clear();
    let deadline = Instant::now() + Duration::from_secs(30);
    while audit_common::call(&analyst).await.is_err() {
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = format!(
        "sealgate_audit_available{{instance=\"{instance}\"}} == 1 and on (instance) sealgate_audit_sink_up{{instance=\"{instance}\", sink=\"0\"}} == 1"
    );
    while prometheus.query(&back).await.map_or(true, |r| r.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the trail never seen back\n{}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop((demo, analyst));
    gw.stop();
}
