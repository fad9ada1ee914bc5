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
    Slot {
        backend: Arc::new(Lister {
            pages,
            generation: tokio::sync::watch::Sender::new(1),
        }),
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
