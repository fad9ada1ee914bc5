//! A supervised MCP server child process over stdio.
//!
//! The gateway starts the child (command, args, working directory and an
//! environment built only from the config: inherited variables by name,
//! plain values, and secrets resolved from the secrets source), performs the
//! MCP initialize handshake, and multiplexes concurrent calls over its stdin
//! and stdout with ids of its own, so ids from different clients never
//! collide. A caller that goes away or passes its deadline is forwarded as
//! `notifications/cancelled`. A child that exits fails its in-flight calls at
//! once with UNAVAILABLE and is restarted with exponential backoff; one that
//! stops answering is probed with `ping` and killed. Its stderr goes to the
//! gateway's log, never to the audit trail.
//!
//! The child runs as its configured account, in its own process group, and
//! (unless `sandbox = "off"`) inside the sandbox of [`crate::sandbox`]: it
//! is started as `sealgate sandbox-exec`, whose first stdout line reports
//! the layers in force (or why the backend could not start) before it
//! executes the backend. That line is read here, before any JSON-RPC.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::FramedRead;

use super::{
    initialize_params, initialized_notification, request_message, Backend, BackendError, Reply,
};
use crate::sandbox::{Egress, Enforcement, Limits, SandboxReport, SandboxSpec, REPORT_METHOD};

mod group;
mod incoming;
mod lines;
mod reader;
mod stderr_tail;

use crate::secrets::{SecretRef, Secrets};
pub(crate) use incoming::{classify, Incoming};
pub(crate) use lines::{Line, MessageLines};
use stderr_tail::StderrTail;

/// Longest line accepted from a child: one JSON-RPC message.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// How long a child that failed to start is given to finish writing its
/// stderr before the start error is written.
const STDERR_WAIT: Duration = Duration::from_secs(2);
/// How long a call waits for a restarting child before it fails.
const READY_WAIT: Duration = Duration::from_secs(10);
/// First wait before a restart; doubled after each failed one.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between restarts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct StdioSpec {
    /// The program, run directly: never through a shell.
    pub command: String,
    /// Its arguments, passed as they are (no shell expansion).
    pub args: Vec<String>,
    /// Its working directory; `None` keeps the gateway's.
    pub cwd: Option<PathBuf>,
    /// Non-secret variables.
    pub env: BTreeMap<String, String>,
    /// Variables whose values come from the secrets source.
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Variables passed through from the gateway's own environment.
    pub inherit_env: Vec<String>,
    /// How long the child may take to answer `initialize`.
    pub init_timeout: Duration,
    /// The user and group ids it runs as; `None`: the gateway's own.
    pub account: Option<(u32, u32)>,
    /// The sandbox it runs in; `None`: only the account and process group.
    pub sandbox: Option<Sandboxing>,
    /// The one directory it may write; passed as `TMPDIR` unless `env`
    /// sets that.
    pub scratch: Option<PathBuf>,
    /// Whether `scratch` was made for this backend and goes with it.
    pub scratch_is_temporary: bool,
}

/// How the sandbox helper is started and what it applies.
#[derive(Debug, Clone)]
pub struct Sandboxing {
    /// The `sealgate` executable that runs `sandbox-exec`.
    pub helper: PathBuf,
    /// Resource limits.
    pub limits: Limits,
    /// Paths it may read and execute besides the system ones and its
    /// command: its install directory and `cwd`.
    pub read: Vec<PathBuf>,
    /// Network access.
    pub egress: Egress,
    /// With egress by host name: addresses that are not public allowed.
    pub egress_private: bool,
    /// Whether a layer the kernel lacks stops it.
    pub enforcement: Enforcement,
}

use reader::Waiter;

struct Conn {
    tx: mpsc::Sender<String>,
    /// `None` once the child is gone: no call may wait on it any more.
    pending: Mutex<Option<HashMap<u64, Waiter>>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    pid: Option<u32>,
    /// Its process group, signalled only while the child is unreaped.
    group: group::Group,
    /// The sandbox helper's failed `execv`: its error number (0: none).
    exec_errno: std::sync::atomic::AtomicI32,
}

impl Conn {
    fn fail_all(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for (_, tx) in pending.into_iter().flatten() {
            let _ = tx.send(Err(BackendError::Unavailable));
        }
    }

    fn take_pending(&self, id: u64) -> Option<Waiter> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|m| m.remove(&id))
    }

    fn kill(&self) {
        if let Some(tx) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(());
        }
    }
}

struct Shared {
    name: String,
    spec: StdioSpec,
    secrets: Arc<Secrets>,
    conn: watch::Sender<Option<Arc<Conn>>>,
    generation: watch::Sender<u64>,
    received: AtomicU64,
    next_id: AtomicU64,
    restarts: AtomicU32,
    probing: AtomicBool,
    /// Lines over [`MAX_LINE`] skipped, over all children.
    too_long: AtomicU64,
    /// The layers the current child's sandbox helper reported.
    sandbox: Mutex<Option<SandboxReport>>,
    /// What its egress relays did (egress by host name).
    egress: Arc<super::egress::Counts>,
}

/// A stdio MCP backend. Dropping it stops the supervisor and kills the child.
pub struct StdioBackend {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl Drop for StdioBackend {
    fn drop(&mut self) {
        if let Some(conn) = self.shared.conn.borrow().as_ref() {
            conn.kill();
            conn.group.kill();
        }
        self.supervisor.abort();
        if let (true, Some(dir)) = (
            self.shared.spec.scratch_is_temporary,
            &self.shared.spec.scratch,
        ) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes a pending call when its caller stops waiting, and tells the
/// child with `notifications/cancelled`.
struct PendingGuard {
    conn: Arc<Conn>,
    id: u64,
    armed: bool,
    reason: &'static str,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let was_pending = self.conn.take_pending(self.id).is_some();
        if was_pending {
            let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": self.id, "reason": self.reason}});
            let _ = self.conn.tx.try_send(note.to_string());
        }
    }
}

impl StdioBackend {
    /// Starts the supervisor and waits for the first successful initialize.
    pub async fn start(
        name: &str,
        spec: StdioSpec,
        secrets: Arc<Secrets>,
    ) -> Result<StdioBackend, String> {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            spec,
            secrets,
            conn: watch::Sender::new(None),
            generation: watch::Sender::new(0),
            received: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            restarts: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            too_long: AtomicU64::new(0),
            sandbox: Mutex::new(None),
            egress: Arc::default(),
        });
        // The first start is done here so that a broken command stops the
        // gateway with a clear message instead of restarting forever.
        let first = spawn_and_initialize(&shared).await?;
        publish(&shared, &first);
        let supervisor = tokio::spawn(supervise(shared.clone(), first));
        Ok(StdioBackend { shared, supervisor })
    }

    /// The child's process id, while it runs.
    pub fn child_pid(&self) -> Option<u32> {
        self.shared.conn.borrow().as_ref().and_then(|c| c.pid)
    }

    /// The sandbox layers in force for the current child, as its helper
    /// reported them; `None` without a sandbox.
    pub fn sandbox_report(&self) -> Option<SandboxReport> {
        self.shared
            .sandbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many times the child was restarted.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// Waits for a child, then sends; with `generation`, only to a child of
    /// that generation (one whose tools the router checked).
    async fn send(
        &self,
        generation: Option<u64>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        let started = tokio::time::Instant::now();
        let conn = self
            .ready(timeout.min(READY_WAIT))
            .await
            .ok_or(BackendError::Unavailable)?;
        if generation.is_some_and(|g| *self.shared.generation.borrow() != g) {
            return Err(BackendError::Unavailable);
        }
        self.shared.received.fetch_add(1, Ordering::Relaxed);
        let remaining = timeout.saturating_sub(started.elapsed());
        let result = call(&conn, &self.shared.next_id, method, params, remaining).await;
        if result == Err(BackendError::Timeout) {
            probe(self.shared.clone(), conn);
        }
        result
    }

    async fn ready(&self, wait: Duration) -> Option<Arc<Conn>> {
        let mut rx = self.shared.conn.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(conn) = rx.borrow_and_update().clone() {
                return Some(conn);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .map_or(true, |r| r.is_err())
            {
                return None;
            }
        }
    }
}

#[tonic::async_trait]
impl Backend for StdioBackend {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        self.send(None, method, params, timeout).await
    }

    async fn request_at(
        &self,
        generation: u64,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Reply, BackendError> {
        self.send(Some(generation), method, params, timeout).await
    }

    fn generation(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    fn messages_received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    fn process_id(&self) -> Option<u32> {
        self.child_pid()
    }

    fn sandbox(&self) -> Option<SandboxReport> {
        self.sandbox_report()
    }

    fn egress_counts(&self) -> super::egress::Totals {
        self.shared.egress.totals()
    }

    fn is_up(&self) -> bool {
        self.child_pid().is_some()
    }

    fn restarts(&self) -> u64 {
        u64::from(StdioBackend::restarts(self))
    }

    fn stop(&self) {
        self.supervisor.abort();
        if let Some(conn) = self.shared.conn.borrow().as_ref() {
            conn.kill();
            conn.group.kill();
        }
    }
}

async fn call(
    conn: &Arc<Conn>,
    next_id: &AtomicU64,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Reply, BackendError> {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    match conn
        .pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
    {
        Some(pending) => pending.insert(id, tx),
        None => return Err(BackendError::Unavailable),
    };
    let mut guard = PendingGuard {
        conn: conn.clone(),
        id,
        armed: true,
        reason: "the gateway's caller went away",
    };
    let line = request_message(id, method, params).to_string();
    // Sending and waiting share one deadline: a child that stops reading
    // its stdin fails the call in time too.
    let exchange = async {
        conn.tx
            .send(line)
            .await
            .map_err(|_| BackendError::Unavailable)?;
        rx.await.unwrap_or(Err(BackendError::Unavailable))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => {
            guard.armed = false;
            result
        }
        Err(_) => {
            guard.reason = "deadline exceeded at the gateway";
            Err(BackendError::Timeout)
        }
    }
}

/// After a timeout: ping the child; if it does not answer, kill it so the
/// supervisor restarts it.
fn probe(shared: Arc<Shared>, conn: Arc<Conn>) {
    if shared.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        // Cleared however this task ends.
        struct Probing<'a>(&'a AtomicBool);
        impl Drop for Probing<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _probing = Probing(&shared.probing);
        let alive = call(
            &conn,
            &shared.next_id,
            "ping",
            json!({}),
            Duration::from_secs(5),
        )
        .await;
        if alive.is_err() {
            tracing::warn!(
                backend = shared.name,
                "backend does not answer ping; restarting it"
            );
            conn.kill();
        }
    });
}

struct Running {
    conn: Arc<Conn>,
    child: Leader,
    kill_rx: oneshot::Receiver<()>,
    /// The egress relay of this child (egress by host name); ends with it.
    relay: Option<super::egress::Relay>,
}

/// A child's handle that ends the child's whole group when dropped, before
/// `kill_on_drop` signals the child and tokio reaps it: wherever it is let
/// go (a start that fails half way, the supervisor aborted at stop or drop
/// while a restart is still starting), no grandchild outlives it, and the
/// group is never signalled after the reaping (review-c L1, L2).
struct Leader {
    child: tokio::process::Child,
    conn: Arc<Conn>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.conn.group.end();
    }
}

async fn spawn_and_initialize(shared: &Arc<Shared>) -> Result<Running, String> {
    let spec = &shared.spec;
    let mut cmd = match &spec.sandbox {
        Some(sb) => {
            let sandbox = SandboxSpec {
                program: spec.command.clone(),
                args: spec.args.clone(),
                uid: spec.account.map(|(u, _)| u),
                gid: spec.account.map(|(_, g)| g),
                limits: sb.limits,
                read: sb.read.clone(),
                write: spec.scratch.iter().cloned().collect(),
                egress: sb.egress.clone(),
                enforcement: sb.enforcement,
                gateway_pid: std::process::id(),
            };
            let json = serde_json::to_string(&sandbox).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&sb.helper);
            cmd.arg(crate::sandbox::SUBCOMMAND).arg(json);
            cmd
        }
        None => {
            let mut cmd = Command::new(&spec.command);
            cmd.args(&spec.args);
            // std clears the supplementary groups when root switches user.
            if let Some((uid, gid)) = spec.account {
                cmd.uid(uid).gid(gid);
            }
            cmd
        }
    };
    cmd.env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: the whole group (grandchildren started
        // through npx or a shell included) is ended with it.
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    for name in &spec.inherit_env {
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    if let Some(dir) = &spec.scratch {
        cmd.env("TMPDIR", dir);
    }
    cmd.envs(&spec.env);
    // The values this child gets, redacted from its stderr as they are now
    // (a secret refreshed later is not the one it holds).
    let mut secrets = Vec::with_capacity(spec.secret_env.len());
    for (name, reference) in &spec.secret_env {
        let value = shared
            .secrets
            .get(reference)
            .ok_or_else(|| format!("secret {reference} for {name} was not resolved"))?;
        cmd.env(name, value.expose_secret());
        secrets.push(value.clone());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.command))?;
    let pid = child.id();
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        // Not reaped yet (never waited on): its group is still its own.
        group::kill_unreaped(pid);
        return Err("child has no stdio pipes".into());
    };
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let (kill_tx, kill_rx) = oneshot::channel();
    let conn = Arc::new(Conn {
        tx,
        pending: Mutex::new(Some(HashMap::new())),
        kill: Mutex::new(Some(kill_tx)),
        pid,
        group: group::Group::new(pid),
        exec_errno: Default::default(),
    });
    let mut child = Leader {
        child,
        conn: conn.clone(),
    };

    // Writer: one JSON-RPC message per line.
    tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(line) = rx.recv().await {
            if stdin.write_all(line.as_bytes()).await.is_err()
                || stdin.write_all(b"\n").await.is_err()
                || stdin.flush().await.is_err()
            {
                return;
            }
        }
    });
    let mut lines = FramedRead::new(stdout, MessageLines::new(MAX_LINE));
    let mut relay = None;
    if spec.sandbox.is_some() {
        let report = tokio::time::timeout(spec.init_timeout, read_sandbox_report(&mut lines))
            .await
            .map_err(|_| "the sandbox helper did not report".to_string())??;
        tracing::info!(
            backend = shared.name,
            sandbox = %report.summary(),
            "backend sandbox in force"
        );
        for m in &report.missing {
            tracing::warn!(backend = shared.name, layer = %m, "backend sandbox layer not in force");
        }
        if report.netns && matches!(report.egress, Egress::Hosts(_)) {
            relay = start_relay(shared, pid).await?;
            // The helper waits for this empty line before it executes the
            // backend: the relay listens before the backend runs.
            conn.tx
                .send(String::new())
                .await
                .map_err(|_| "the sandbox helper closed its input".to_string())?;
        }
        *shared.sandbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
    // Reader: route responses to their callers.
    reader::spawn(Routed(shared.clone(), conn.clone()), lines);
    // Stderr: to the gateway's log, bounded per line; its last lines are
    // kept to name why the child could not start.
    let tail = StderrTail::default();
    let stderr_done = stderr_tail::spawn_reader(stderr, shared.name.clone(), tail.clone());

    let init = call(
        &conn,
        &shared.next_id,
        "initialize",
        initialize_params(),
        spec.init_timeout,
    )
    .await;
    let failed = match init {
        Ok(Reply::Result(r)) if r.get("protocolVersion").is_some_and(Value::is_string) => None,
        Ok(_) => Some("the backend refused initialize".to_string()),
        Err(e) => Some(format!("initialize failed: {e}")),
    };
    if let Some(failed) = failed {
        // Its last words: end it (its whole group: not reaped yet, never
        // waited on), read what it wrote before (bounded).
        conn.group.end();
        let _ = child.child.start_kill();
        let _ = tokio::time::timeout(STDERR_WAIT, stderr_done).await;
        let exec = match conn.exec_errno.load(std::sync::atomic::Ordering::Relaxed) {
            0 => String::new(),
            errno => stderr_tail::describe_exec_failure(&spec.command, errno),
        };
        let stderr = tail.describe(&secrets, stderr_tail::opted_in());
        return Err(format!("{failed}{exec}{stderr}"));
    }
    conn.tx
        .send(initialized_notification().to_string())
        .await
        .map_err(|_| "the backend closed its input".to_string())?;
    Ok(Running {
        conn,
        child,
        kill_rx,
        relay,
    })
}

/// Egress by host name: the gateway's relay listens inside the backend's
/// network namespace before the backend gets any call. Without it the
/// backend has no network: fatal when the sandbox is required, else a
/// warning.
async fn start_relay(
    shared: &Shared,
    pid: Option<u32>,
) -> Result<Option<super::egress::Relay>, String> {
    let Some(sb) = shared.spec.sandbox.as_ref() else {
        return Ok(None);
    };
    let pid = pid.ok_or("the backend exited before its egress relay started")?;
    match super::egress::start(
        &shared.name,
        pid,
        &sb.egress,
        sb.egress_private,
        shared.egress.clone(),
    )
    .await
    {
        Ok(r) => Ok(Some(r)),
        Err(e) if sb.enforcement == Enforcement::Required => Err(format!("egress relay: {e}")),
        Err(e) => {
            tracing::warn!(backend = shared.name, error = %e, "egress relay not started: the backend has no network");
            Ok(None)
        }
    }
}

/// The helper's first line: the layers in force, or why the backend could
/// not be started. Written before the backend runs, so the backend cannot
/// forge it.
async fn read_sandbox_report(
    lines: &mut FramedRead<tokio::process::ChildStdout, MessageLines>,
) -> Result<SandboxReport, String> {
    let line = match lines.next().await {
        Some(Ok(Line::Message(line))) => line,
        Some(Ok(Line::TooLong { .. })) => {
            return Err("the sandbox helper's first line is not its report".into())
        }
        _ => return Err("the sandbox helper exited without a report".into()),
    };
    let msg: Value = serde_json::from_slice(&line)
        .map_err(|_| "the sandbox helper's first line is not its report".to_string())?;
    if msg.get("method").and_then(Value::as_str) != Some(REPORT_METHOD) {
        return Err("the sandbox helper's first line is not its report".into());
    }
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    if let Some(e) = params.get("error").and_then(Value::as_str) {
        return Err(format!("sandbox: {e}"));
    }
    serde_json::from_value(params.get("report").cloned().unwrap_or(Value::Null))
        .map_err(|e| format!("the sandbox helper's report is unreadable: {e}"))
}

/// The reader's view of one child.
struct Routed(Arc<Shared>, Arc<Conn>);

impl reader::Routes for Routed {
    fn backend(&self) -> &str {
        &self.0.name
    }
    fn take_pending(&self, id: u64) -> Option<Waiter> {
        self.1.take_pending(id)
    }
    fn write(&self, line: String) {
        let _ = self.1.tx.try_send(line);
    }
    fn list_changed(&self) {
        self.0.generation.send_modify(|g| *g += 1);
    }
    fn exec_failed(&self, errno: i32) {
        self.1.exec_errno.store(errno, Ordering::Relaxed);
    }
    fn skipped(&self) -> u64 {
        self.0.too_long.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn ended(&self) {
        self.1.kill();
        self.1.fail_all();
    }
}

/// Makes a freshly initialized child the one calls go to, and bumps the
/// generation so the router re-lists its tools before routing to it.
fn publish(shared: &Shared, running: &Running) {
    // The generation first: whoever sees the new child also sees that it
    // is a new generation, not yet listed and checked.
    shared.generation.send_modify(|g| *g += 1);
    shared.conn.send_replace(Some(running.conn.clone()));
}

/// Watches the published child; when it exits (or is killed), fails its
/// calls and starts a new one with backoff.
async fn supervise(shared: Arc<Shared>, first: Running) {
    let mut running = Some(first);
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Some(Running {
            conn,
            mut child,
            kill_rx,
            relay,
        }) = running.take()
        {
            let up = Instant::now();
            let exited = tokio::select! {
                () = group::exited(conn.pid) => true,
                _ = kill_rx => false,
            };
            // Whatever the child left behind in its group goes with it,
            // before the child is reaped (see `group`), and so does its
            // egress relay.
            conn.group.end();
            let _ = child.child.start_kill();
            let status = child.child.wait().await;
            if exited {
                tracing::warn!(backend = shared.name, status = ?status.ok(), "backend process exited");
            }
            drop(relay);
            // Gone: calls waiting for a child must not reach the next one
            // before its tools are re-listed and checked.
            shared.generation.send_modify(|g| *g += 1);
            shared.conn.send_replace(None);
            conn.fail_all();
            if up.elapsed() >= STABLE {
                backoff = BACKOFF_MIN;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        match spawn_and_initialize(&shared).await {
            Ok(r) => {
                shared.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(backend = shared.name, "backend process restarted");
                publish(&shared, &r);
                running = Some(r);
            }
            Err(e) => tracing::warn!(backend = shared.name, error = %e, "backend restart failed"),
        }
    }
}
