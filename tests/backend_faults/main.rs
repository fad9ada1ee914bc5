//! Backend faults: every fault a real stdio or Streamable HTTP MCP server
//! can commit, against the real gateway on 127.0.0.1 (issue 24, "Backend
//! faults"). Each test asserts the documented reason and audit record, that
//! the gateway's memory stayed bounded, the restart where that is the
//! policy, and that another backend and another client were served while
//! the fault went on.
//!
//! The fixtures (tests/fixtures/faulty_stdio_server.py and
//! faulty_http_server.py) choose the fault by tool name. The harness runs
//! the gateway inside the test process, so memory is that process's peak
//! resident set (`VmHWM`, reset through `/proc/self/clear_refs` before each
//! fault); the tests of this binary run one at a time so that no other
//! test's allocations count.

#[path = "../common/mod.rs"]
mod common;

mod http;
mod stdio_messages;
mod stdio_process;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::services::repo;
use common::*;
use sealgate::client::{Client, ClientError};
use serde_json::{json, Value};
use tonic::Code;

/// One test at a time: the memory figures are the whole process's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The per-call deadline of both faulty backends, in seconds.
const TIMEOUT_SECS: u64 = 5;

/// How much the gateway's peak memory may grow while one fault goes on:
/// over the 16 MiB a line or body may take (plus the buffer's growth), and
/// well under the 100 MB a backend sends in the largest faults, even with
/// the up to 32 MiB the allocator may keep resident from an earlier test
/// and reuse without growing the resident set: a gateway that kept what a
/// backend floods it with fails it.
const MEMORY_BOUND_MIB: u64 = 48;

/// The gateway's peak resident memory, from the moment it was created:
/// the kernel's `VmHWM` (reset at the start) and, since the kernel updates
/// that figure lazily, `VmRSS` sampled every 2 ms meanwhile.
struct Peak {
    before_kib: u64,
    sampled_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

impl Peak {
    /// Resets the peak to the current resident set (Linux 4.0+); where the
    /// kernel refuses, the earlier peak counts too, which can only make
    /// the bound harder to meet.
    fn start() -> Peak {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before_kib = status_kib("VmRSS");
        let sampled_kib = Arc::new(AtomicU64::new(before_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (sampled_kib, stop) = (sampled_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sampled_kib.fetch_max(status_kib("VmRSS"), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Peak {
            before_kib,
            sampled_kib,
            stop,
            sampler,
        }
    }

    /// Asserts the peak grew by less than [`MEMORY_BOUND_MIB`].
    fn assert_bounded(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().expect("the sampler ends");
        let peak_kib = status_kib("VmHWM").max(self.sampled_kib.load(Ordering::Relaxed));
        let grown_mib = peak_kib.saturating_sub(self.before_kib) / 1024;
        println!("{what}: the gateway's peak memory grew by {grown_mib} MiB");
        assert!(
            grown_mib < MEMORY_BOUND_MIB,
            "{what}: the gateway's peak memory grew by {grown_mib} MiB"
        );
    }
}

/// Kills the HTTP fixture when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gateway with the faulty stdio backend (`f`, tools `f_*`, first, so
/// `gw.backend` is it), the faulty HTTP backend (`h`, tools `h_*`) and the
/// embedded one (bob's `get_meps`).
struct Faulty {
    gw: TestGateway,
    dir: tempfile::TempDir,
    /// Where the HTTP fixture's `redirect` points: nothing may connect.
    redirect: std::net::TcpListener,
    _http: Server,
}

fn fixture(name: &str) -> String {
    repo()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

impl Faulty {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The tools/call requests the HTTP fixture received, by tool name.
    fn http_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("http.calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// How many times the stdio fixture's process started.
    fn stdio_starts(&self) -> usize {
        std::fs::read_to_string(self.path("stdio.starts"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The audit record of the last call of `tool`.
    fn record_of(&self, tool: &str) -> Value {
        self.gw
            .audit
            .lines()
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| r["tool"] == tool)
            .unwrap_or_else(|| panic!("an audit record for {tool}"))
    }

    /// Asserts the call of `tool` failed with `code`/`reason`, and its
    /// audit record: denied at the backend stage, the backend's fault.
    fn assert_failed(
        &self,
        result: Result<Value, ClientError>,
        tool: &str,
        code: Code,
        reason: &str,
    ) {
        match result {
            Err(ClientError::Denied {
                code: c, reason: r, ..
            }) => assert_eq!((c, r.as_deref()), (code, Some(reason)), "{tool}"),
            other => panic!("{tool}: expected {reason}, got {other:?}"),
        }
        let record = self.record_of(tool);
        assert_eq!(record["outcome"], "denied", "{record}");
        assert_eq!(record["reason"], reason, "{record}");
        assert_eq!(record["stage"], "backend", "{record}");
        assert_eq!(record["fault"], "backend", "{record}");
        let backend = if tool.starts_with("f_") { "f" } else { "h" };
        assert_eq!(record["backend"], backend, "{record}");
    }

    /// The stdio child's pid now.
    fn stdio_pid(&self) -> Option<u32> {
        self.gw.backend.process_id()
    }

    /// Waits until the stdio backend runs a child other than `old` and has
    /// it serve `f_ok` (its tools listed and checked again).
    async fn wait_restarted(&self, ops: &Client, old: u32) -> u32 {
        let started = Instant::now();
        loop {
            if let Some(pid) = self.stdio_pid().filter(|p| *p != old) {
                if let Ok(r) = ops.call_tool("f_ok", json!({})).await {
                    assert_eq!(text(&r), format!("ok {pid}"));
                    return pid;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the stdio backend was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a text result: {response}"))
        .to_string()
}

async fn faulty_gateway() -> Faulty {
    faulty_gateway_with(TIMEOUT_SECS).await
}

/// [`faulty_gateway`] with another per-call deadline: reading 100 MB of
/// notifications takes an unoptimised test build longer than
/// [`TIMEOUT_SECS`].
async fn faulty_gateway_with(timeout_secs: u64) -> Faulty {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let redirect = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    redirect.set_nonblocking(true).expect("nonblocking");
    let redirect_port = redirect.local_addr().expect("addr").port();
    let port_file = d.join("http.port");
    let mut child = std::process::Command::new("python3")
        .arg(fixture("faulty_http_server.py"))
        .arg(&port_file)
        .env("RECORD_FILE", d.join("http.calls"))
        .env(
            "REDIRECT_URL",
            format!("http://127.0.0.1:{redirect_port}/elsewhere"),
        )
        .spawn()
        .expect("the HTTP fixture starts");
    let started = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the HTTP fixture exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the HTTP fixture did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let http = Server(child);
    let gw = TestGateway::start_with(Options {
        config_extra: format!(
            "[[backend]]\nname = \"f\"\nkind = \"stdio\"\ncommand = \"python3\"\nargs = [\"{}\"]\nprefix = \"f_\"\n\
             timeout_secs = {timeout_secs}\nenv = {{ START_FILE = \"{}\", GRANDCHILD_PID_FILE = \"{}\", STALL_FILE = \"{}\" }}\n{}\n\
             [[backend]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprefix = \"h_\"\n\
             timeout_secs = {timeout_secs}\nrelist_secs = 0\n\n\
             [[backend]]\nname = \"sample\"\nkind = \"embedded\"\n",
            fixture("faulty_stdio_server.py"),
            d.join("stdio.starts").display(),
            d.join("grandchild.pid").display(),
            d.join("stall").display(),
            unsandboxed(),
        ),
        ..Default::default()
    })
    .await;
    Faulty {
        gw,
        dir,
        redirect,
        _http: http,
    }
}

/// While `fault` goes on, another client (bob, on the embedded backend)
/// and the other faulty backend's healthy tool (`other_ok`) are served;
/// returns the fault's result.
async fn meanwhile<F>(f: &Faulty, other_ok: &str, fault: F) -> Result<Value, ClientError>
where
    F: std::future::Future<Output = Result<Value, ClientError>>,
{
    let bob = f.gw.client(&f.gw.bob).await;
    let ops = f.gw.client(&f.gw.ops).await;
    let others = async {
        // Give the fault a head start, so these run while it goes on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let meps = bob
            .call_tool("get_meps", json!({"limit": 1}))
            .await
            .expect("another client on another backend is served");
        assert!(meps["result"]["content"].is_array(), "{meps}");
        let ok = ops
            .call_tool(other_ok, json!({}))
            .await
            .expect("the other faulty backend's healthy tool is served");
        assert!(text(&ok).starts_with("ok"), "{ok}");
    };
    let (result, ()) = tokio::join!(fault, others);
    result
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}
