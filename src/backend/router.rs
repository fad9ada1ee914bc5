//! The router: which backend answers which tool, and which tool definitions
//! are accepted.
//!
//! On every (re)connection of a backend the router lists its tools, compiles
//! each inputSchema once and compares each definition's digest with the
//! backend's pin file. A tool whose definition changed, or that was not
//! pinned, is refused (and recorded as a security event) until an operator
//! accepts it with `sealgate tools accept`. With no pin file yet, the first
//! listing is pinned (trust on first use) and written. Exposed names carry
//! the backend's prefix; two backends exposing one name is a startup error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{json, Value};

use super::{Backend, BackendError, Reply};
use crate::audit::{AuditLog, SecurityEvent};
use crate::policy::{PinFile, PinnedTool};

/// How a backend's tool definitions are trusted.
#[derive(Debug, Clone)]
pub enum PinMode {
    /// Built into the gateway (the embedded backend): nothing to pin.
    Builtin,
    /// Pinned in this file (created on first use).
    File(PathBuf),
}

/// One configured backend.
pub struct Slot {
    pub backend: Arc<dyn Backend>,
    /// Prepended to every tool name this backend offers.
    pub prefix: String,
    /// How long one call may take.
    pub timeout: Duration,
    pub pins: PinMode,
}

/// A routable tool.
#[derive(Clone)]
pub struct Route {
    pub slot: usize,
    pub tool: Arc<PinnedTool>,
}

/// Why a tool cannot be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Unknown,
    /// The backend offers a definition that differs from the accepted pin.
    Changed,
}

#[derive(Default)]
struct Table {
    routes: HashMap<String, Route>,
    /// Exposed names whose current definition is refused.
    refused: HashMap<String, usize>,
    /// (exposed name, definition with the exposed name), in backend order.
    listing: Vec<(String, usize, Value)>,
}

pub struct Router {
    slots: Vec<Slot>,
    table: ArcSwap<Table>,
    audit: Arc<AuditLog>,
    /// Serialises syncs, so two reconnections never interleave table updates.
    sync_lock: Mutex<()>,
}

/// What listing a backend's tools found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub accepted: Vec<String>,
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub pinned_now: bool,
}

impl Router {
    /// Lists and pins every backend's tools; fails on a backend that cannot
    /// be listed, a tool whose schema does not compile, or a name collision.
    pub async fn start(slots: Vec<Slot>, audit: Arc<AuditLog>) -> Result<Arc<Router>, String> {
        let router = Arc::new(Router::unsynced(slots, audit));
        for i in 0..router.slots.len() {
            router
                .sync(i, false)
                .await
                .map_err(|e| format!("backend {}: {e}", router.slots[i].backend.name()))?;
        }
        for i in 0..router.slots.len() {
            let weak = Arc::downgrade(&router);
            let mut generation = router.slots[i].backend.generation();
            generation.borrow_and_update();
            tokio::spawn(async move {
                while generation.changed().await.is_ok() {
                    let Some(router) = weak.upgrade() else { return };
                    if let Err(e) = router.sync(i, false).await {
                        tracing::warn!(backend = router.slots[i].backend.name(), error = %e, "re-listing tools failed");
                    }
                }
            });
        }
        Ok(router)
    }

    /// A router that has listed nothing yet and watches nothing (for
    /// `sealgate tools accept`, which syncs explicitly).
    pub fn unsynced(slots: Vec<Slot>, audit: Arc<AuditLog>) -> Router {
        Router {
            slots,
            table: ArcSwap::from_pointee(Table::default()),
            audit,
            sync_lock: Mutex::new(()),
        }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.slots
            .iter()
            .map(|s| &s.backend)
            .find(|b| b.name() == name)
    }

    async fn list_tools(&self, slot: usize) -> Result<Vec<Value>, String> {
        let s = &self.slots[slot];
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let reply = s
                .backend
                .request("tools/list", params, s.timeout)
                .await
                .map_err(|e| e.to_string())?;
            let Reply::Result(result) = reply else {
                return Err("tools/list answered with an error".into());
            };
            let page = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or("tools/list result has no tools array")?;
            tools.extend(page.iter().cloned());
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                return Ok(tools);
            }
        }
        Err("tools/list pagination did not end after 100 pages".into())
    }

    /// Lists a backend's tools and rebuilds its part of the table. With
    /// `accept_all`, the current definitions become the pins.
    pub async fn sync(&self, slot: usize, accept_all: bool) -> Result<SyncReport, String> {
        let listed = self.list_tools(slot).await?;
        let s = &self.slots[slot];
        let name = s.backend.name();
        let mut compiled = Vec::new();
        for def in listed {
            compiled.push(PinnedTool::compile(def).map_err(|e| e.to_string())?);
        }
        let mut report = SyncReport::default();
        let pins = match &s.pins {
            PinMode::Builtin => None,
            PinMode::File(path) => {
                let existing = PinFile::load(path)?;
                match existing {
                    Some(p) if !accept_all => Some(p),
                    _ => {
                        let mut pins = PinFile::default();
                        for t in &compiled {
                            pins.tools.insert(
                                t.name.clone(),
                                crate::policy::pins::PinEntry {
                                    digest: t.digest.clone(),
                                },
                            );
                        }
                        pins.save(path, name)?;
                        report.pinned_now = true;
                        let event = if accept_all {
                            "tools_accepted"
                        } else {
                            "tools_pinned_on_first_use"
                        };
                        self.audit.security_event(&SecurityEvent::new(event, name));
                        Some(pins)
                    }
                }
            }
        };

        let _guard = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table.load();
        let mut table = Table::default();
        // Keep the other slots' entries.
        for (exposed, route) in &old.routes {
            if route.slot != slot {
                table.routes.insert(exposed.clone(), route.clone());
            }
        }
        for (exposed, s_idx) in &old.refused {
            if *s_idx != slot {
                table.refused.insert(exposed.clone(), *s_idx);
            }
        }
        table.listing = old
            .listing
            .iter()
            .filter(|(_, s_idx, _)| *s_idx != slot)
            .cloned()
            .collect();

        for tool in compiled {
            let exposed = format!("{}{}", s.prefix, tool.name);
            if table.routes.get(&exposed).is_some_and(|r| r.slot != slot) {
                return Err(format!(
                    "tool name {exposed} is offered by two backends; give one of them a prefix"
                ));
            }
            let verdict = pins.as_ref().map(|p| p.accepted(&tool.name));
            match verdict {
                Some(Some(pinned)) if *pinned != tool.digest => {
                    let mut ev = SecurityEvent::new("tool_definition_changed", name);
                    ev.tool = Some(&tool.name);
                    ev.pinned_digest = Some(pinned);
                    ev.offered_digest = Some(&tool.digest);
                    self.audit.security_event(&ev);
                    report.changed.push(tool.name.clone());
                    table.refused.insert(exposed, slot);
                }
                Some(None) => {
                    let mut ev = SecurityEvent::new("tool_added", name);
                    ev.tool = Some(&tool.name);
                    ev.offered_digest = Some(&tool.digest);
                    self.audit.security_event(&ev);
                    report.added.push(tool.name.clone());
                    table.refused.insert(exposed, slot);
                }
                _ => {
                    let mut def = tool.definition.clone();
                    def["name"] = Value::String(exposed.clone());
                    table.listing.push((exposed.clone(), slot, def));
                    report.accepted.push(tool.name.clone());
                    table.routes.insert(
                        exposed,
                        Route {
                            slot,
                            tool: Arc::new(tool),
                        },
                    );
                }
            }
        }
        self.table.store(Arc::new(table));
        tracing::info!(
            backend = name,
            accepted = report.accepted.len(),
            refused = report.changed.len() + report.added.len(),
            "tools pinned"
        );
        Ok(report)
    }

    /// The route of an exposed tool name.
    pub fn resolve(&self, exposed: &str) -> Result<Route, Lookup> {
        let table = self.table.load();
        if let Some(route) = table.routes.get(exposed) {
            return Ok(route.clone());
        }
        if table.refused.contains_key(exposed) {
            return Err(Lookup::Changed);
        }
        Err(Lookup::Unknown)
    }

    /// Every accepted tool definition, with exposed names, that `allow` keeps.
    pub fn list(&self, allow: impl Fn(&str) -> bool) -> Vec<Value> {
        self.table
            .load()
            .listing
            .iter()
            .filter(|(n, _, _)| allow(n))
            .map(|(_, _, d)| d.clone())
            .collect()
    }

    /// Calls a routed tool with already validated arguments.
    pub async fn call_tool(&self, route: &Route, arguments: Value) -> Result<Reply, BackendError> {
        let s = &self.slots[route.slot];
        s.backend
            .request(
                "tools/call",
                json!({"name": route.tool.name, "arguments": arguments}),
                s.timeout,
            )
            .await
    }

    /// Resources and prompts go to the first configured backend.
    pub async fn forward_to_primary(
        &self,
        method: &str,
        params: Value,
    ) -> Result<Reply, BackendError> {
        let s = self.slots.first().ok_or(BackendError::Unavailable)?;
        s.backend.request(method, params, s.timeout).await
    }

    /// Re-lists every backend (after a pin file changed on disk).
    pub async fn resync_all(&self) {
        for i in 0..self.slots.len() {
            if let Err(e) = self.sync(i, false).await {
                tracing::warn!(backend = self.slots[i].backend.name(), error = %e, "re-listing tools failed");
            }
        }
    }
}
