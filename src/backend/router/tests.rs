//! A hostile backend's listing: its text reaches the audit trail and the
//! log bounded and escaped, and a listing has a total bound.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{PinMode, Router, Slot};
use crate::audit::AuditLog;
use crate::backend::{Backend, BackendError, Reply};

/// A backend that answers `tools/list` page by page with `pages`.
struct Lister {
    pages: Vec<Value>,
    generation: tokio::sync::watch::Sender<u64>,
    /// How many `tools/list` requests were answered.
    lists: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl Backend for Lister {
    fn name(&self) -> &str {
        "hostile"
    }
    async fn request(
        &self,
        method: &str,
        params: Value,
        _timeout: Duration,
    ) -> Result<Reply, BackendError> {
        if method != "tools/list" {
            return Err(BackendError::Protocol);
        }
        self.lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let page = params
            .get("cursor")
            .and_then(Value::as_str)
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0);
        let mut result = self
            .pages
            .get(page)
            .cloned()
            .unwrap_or(json!({"tools": []}));
        if page + 1 < self.pages.len() {
            result["nextCursor"] = json!((page + 1).to_string());
        }
        Ok(Reply::Result(result))
    }
    fn generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }
    fn messages_received(&self) -> u64 {
        0
    }
}

fn slot(pages: Vec<Value>) -> Slot {
    slot_of(Arc::new(Lister {
        pages,
        generation: tokio::sync::watch::Sender::new(1),
        lists: Arc::default(),
    }))
}

fn slot_of(lister: Arc<Lister>) -> Slot {
    Slot {
        backend: lister,
        prefix: "h_".into(),
        timeout: Duration::from_secs(5),
        pins: PinMode::Builtin,
        relist: None,
    }
}

fn tool(name: &str) -> Value {
    json!({"name": name, "inputSchema": {"type": "object"}})
}

#[tokio::test]
async fn a_tool_listed_twice_with_a_huge_name_is_recorded_bounded_and_escaped() {
    let name = format!("\u{202e}\n{}", "x".repeat(2 * 1024 * 1024));
    let audit = Arc::new(AuditLog::memory());
    let listing = json!({"tools": [tool(&name), tool(&name), tool("fine")]});
    let router = Router::start(vec![slot(vec![listing])], audit.clone())
        .await
        .expect("started: the bad tool is refused, not the backend");
    drop(router);
    let lines = audit.lines();
    let twice: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"tool_listed_twice\""))
        .collect();
    assert_eq!(twice.len(), 1, "{lines:?}");
    assert!(twice[0].len() < 2048, "{} bytes", twice[0].len());
    let v: Value = serde_json::from_str(twice[0]).expect("json");
    let recorded = v["tool"].as_str().expect("tool");
    assert!(recorded.starts_with("\\u{202e}\\u{a}xxx"), "{recorded}");
    assert!(recorded.ends_with(" bytes)"), "{recorded}");
}

#[tokio::test]
async fn a_listing_over_its_total_bound_is_refused() {
    // 40 pages of one tool with a 512 KiB description: 20 MiB in all,
    // each page well under the transport's 16 MiB.
    let pages: Vec<Value> = (0..40)
        .map(|i| {
            let mut t = tool(&format!("t{i}"));
            t["description"] = json!("d".repeat(512 * 1024));
            json!({"tools": [t]})
        })
        .collect();
    let audit = Arc::new(AuditLog::memory());
    let e = Router::start(vec![slot(pages)], audit)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        e,
        "backend hostile: tools/list holds more than 16 MiB of definitions in all pages together"
    );
}

#[tokio::test]
async fn a_listing_of_many_invalid_or_duplicated_tools_makes_a_bounded_number_of_events() {
    // 8_000 `{}` (no name), 500 names listed twice, one good tool.
    let mut tools: Vec<Value> = (0..8_000).map(|_| json!({})).collect();
    for i in 0..500 {
        tools.push(tool(&format!("d{i}")));
        tools.push(tool(&format!("d{i}")));
    }
    tools.push(tool("fine"));
    let audit = Arc::new(AuditLog::memory());
    let router = Router::start(vec![slot(vec![json!({ "tools": tools })])], audit.clone())
        .await
        .expect("started: the bad tools are refused, not the backend");
    let report_fine = router.list(|_| true).len();
    drop(router);
    assert_eq!(report_fine, 1);
    let lines = audit.lines();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &Value| v["type"] == "event")
        .collect();
    let about_tools = events
        .iter()
        .filter(|v| {
            ["tool_definition_invalid", "tool_listed_twice"]
                .contains(&v["event"].as_str().unwrap_or(""))
        })
        .count();
    assert_eq!(about_tools, super::DETAILED_REFUSALS, "{events:#?}");
    let summary: Vec<&Value> = events
        .iter()
        .filter(|v| v["event"] == "tool_refusals_summarised")
        .collect();
    assert_eq!(summary.len(), 1, "{events:#?}");
    // 8_000 invalid + 500 duplicated names, less those recorded in full.
    assert_eq!(
        summary[0]["count"],
        json!(8_500 - super::DETAILED_REFUSALS as u64)
    );
}

#[tokio::test]
async fn a_listing_of_more_tools_than_the_bound_is_refused() {
    let tools: Vec<Value> = (0..super::MAX_LISTED_TOOLS + 1)
        .map(|_| json!({}))
        .collect();
    let audit = Arc::new(AuditLog::memory());
    let e = Router::start(vec![slot(vec![json!({ "tools": tools })])], audit.clone())
        .await
        .err()
        .expect("refused");
    assert_eq!(
        e,
        "backend hostile: tools/list holds more than 10000 tools in all pages together"
    );
    assert!(
        !audit
            .lines()
            .iter()
            .any(|l| l.contains("tool_definition_invalid")),
        "nothing recorded per tool"
    );
}

#[tokio::test]
async fn list_changed_in_a_loop_re_lists_at_most_once_a_second() {
    let lister = Arc::new(Lister {
        pages: vec![json!({"tools": [tool("fine")]})],
        generation: tokio::sync::watch::Sender::new(1),
        lists: Arc::default(),
    });
    let audit = Arc::new(AuditLog::memory());
    let router = Router::start(vec![slot_of(lister.clone())], audit)
        .await
        .expect("started");
    let lists = |l: &Lister| l.lists.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(lists(&lister), 1);
    let started = std::time::Instant::now();
    // A backend announcing list_changed as fast as it can, while clients
    // call its tools (each resolve of a stale backend may re-list).
    let mut g = 1u64;
    while started.elapsed() < Duration::from_millis(1500) {
        g += 1;
        lister.generation.send_replace(g);
        let _ = router.resolve("h_fine").await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs();
    let n = lists(&lister);
    // One at start, then at most one per started second.
    assert!(
        n <= 2 + elapsed as usize,
        "{n} listings in {elapsed} s ({g} list_changed)"
    );
    assert!(n >= 2, "the change is still picked up: {n}");
}
