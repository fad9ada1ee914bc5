//! The router: which backend answers which tool, and which tool definitions
//! are accepted.
//!
//! On every (re)connection of a backend the router lists its tools, compiles
//! each inputSchema once and compares each definition's digest with the
//! backend's pin file. A tool whose definition changed, that was not pinned,
//! whose schema does not compile, or whose name is listed twice or clashes
//! with another backend's, is refused (and recorded as a security event);
//! the other tools keep working. A changed or new tool stays refused until an
//! operator accepts it with `sealgate tools accept`. With no pin file yet,
//! the first listing is pinned (trust on first use) and written; with
//! `pinning = "strict"` nothing is pinned by the gateway (a backend without
//! a pin file serves no tool) and the pins are read at start and on SIGHUP
//! only: a backend that rewrote its pin file and announced a changed list
//! is checked against the pins read before.
//!
//! A backend that reconnected is re-listed before its tools are routed
//! again: a restarted child never gets a call under its old pins.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{Backend, BackendError, Reply};
use crate::audit::{AuditLog, SecurityEvent};
use crate::policy::pins::PinEntry;
use crate::policy::{PinFile, PinnedTool};

/// How a backend's tool definitions are trusted.
#[derive(Debug, Clone)]
pub enum PinMode {
    /// Built into the gateway (the embedded backend): nothing to pin.
    Builtin,
    /// Pinned in this file (created on first use), re-read at every
    /// listing (`pinning = "tofu"`).
    File(PathBuf),
    /// Pinned in this file, which only `sealgate tools accept` writes; read
    /// at start and on SIGHUP only (`pinning = "strict"`). Without it, the
    /// backend serves no tool.
    Strict(PathBuf),
}

/// The pins of a strict backend as last read from disk.
#[derive(Debug, Clone, Default)]
enum PinCache {
    /// Not read yet (or a reload asked for a fresh read).
    #[default]
    Unread,
    /// The pin file did not exist.
    Missing,
    /// The pin file as read.
    Read(PinFile),
}

/// One configured backend.
pub struct Slot {
    /// The backend itself, shared with the tasks that watch it.
    pub backend: Arc<dyn Backend>,
    /// Prepended to every tool name this backend offers.
    pub prefix: String,
    /// How long one call may take.
    pub timeout: Duration,
    /// Where its accepted tool digests come from.
    pub pins: PinMode,
    /// Re-list its tools this often, whether or not it reconnected (a
    /// stateless HTTP server can change a definition without a new
    /// session).
    pub relist: Option<Duration>,
}

/// A routable tool.
#[derive(Clone)]
pub struct Route {
    /// Index of the backend's [`Slot`] in [`Router::slots`].
    pub slot: usize,
    /// The pinned definition the arguments are validated against; its
    /// `name` is the name at the backend, without the prefix.
    pub tool: Arc<PinnedTool>,
    /// The backend generation whose listing this route came from: the call
    /// goes to that instance of the backend or nowhere.
    pub generation: u64,
}

/// Why a tool cannot be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// No backend lists a tool of this name, accepted or refused.
    Unknown,
    /// The backend offers a definition that is not the accepted one.
    Changed,
    /// The backend reconnected and could not be re-listed.
    Unavailable,
}

#[derive(Default)]
struct Table {
    routes: HashMap<String, Route>,
    /// Exposed names whose current definition is refused, with their slot.
    refused: HashMap<String, usize>,
    /// (exposed name, slot, definition with the exposed name), in order.
    listing: Vec<(String, usize, Value)>,
}

struct SlotState {
    generation: watch::Receiver<u64>,
    /// The backend generation the table reflects.
    synced: AtomicU64,
    /// One listing at a time per backend; holds when the last listing
    /// the backend asked for (a new generation) started.
    syncing: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// Strict pinning: the pins as read at start or the last reload, so a
    /// re-listing the backend triggers never reads a file it may have
    /// rewritten.
    pins: Mutex<PinCache>,
    /// Tools the last listing refused: changed since pinned, not pinned,
    /// invalid (metrics).
    refused: [AtomicU64; 3],
    /// Tools found changed since pinned, summed over every listing (so a
    /// change undone before the next scrape is still seen).
    changed_total: AtomicU64,
}

/// Maps exposed tool names to backends. The table is swapped whole, so a
/// lookup never sees a backend's tools half re-listed.
pub struct Router {
    slots: Vec<Slot>,
    state: Vec<SlotState>,
    table: ArcSwap<Table>,
    audit: Arc<AuditLog>,
    /// Serialises table updates across backends.
    table_lock: Mutex<()>,
}

/// What listing a backend's tools found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Tools now routed: their definition matches the pin (or is built in).
    pub accepted: Vec<String>,
    /// Pinned tools whose definition differs from the pin: refused.
    pub changed: Vec<String>,
    /// Tools the pin file does not know: refused until accepted.
    pub added: Vec<String>,
    /// Tools refused for an invalid definition or a name listed twice (by
    /// backend name), or a name clash (`clash:<exposed name>`).
    pub invalid: Vec<String>,
    /// Whether this listing wrote the pin file (first use, or accept).
    pub pinned_now: bool,
}

const UNSYNCED: u64 = u64::MAX;

/// The most a backend's tool listing may hold, all pages together, as
/// JSON (each page is bounded by the transport; 100 of them would be 1.6
/// GiB held parsed).
const MAX_LISTING_BYTES: usize = 16 * 1024 * 1024;

/// The most tools a backend's listing may hold, all pages together; more is
/// refused like a listing over [`MAX_LISTING_BYTES`] (a page of `{}` costs
/// 2 bytes a tool, and each refused tool would be an audit event).
pub(crate) const MAX_LISTED_TOOLS: usize = 10_000;

/// Per listing, the refused tools (invalid definition, name listed twice)
/// recorded one event each; the rest are counted in one
/// `tool_refusals_summarised` event.
pub(crate) const DETAILED_REFUSALS: usize = 16;

/// A backend is re-listed on its own request (`list_changed`, a new
/// generation) at most this often; announcements in between are coalesced
/// into the next listing.
const MIN_RELIST_GAP: Duration = Duration::from_secs(1);

impl Router {
    /// Lists and pins every backend's tools; fails on a backend that cannot
    /// be listed or a name offered by two backends.
    pub async fn start(slots: Vec<Slot>, audit: Arc<AuditLog>) -> Result<Arc<Router>, String> {
        let router = Arc::new(Router::unsynced(slots, audit));
        for i in 0..router.slots.len() {
            let report = router
                .sync(i, false)
                .await
                .map_err(|e| format!("backend {}: {e}", router.slots[i].backend.name()))?;
            if let Some(clash) = report.invalid.iter().find(|n| n.starts_with("clash:")) {
                let name = clash.trim_start_matches("clash:");
                return Err(format!(
                    "backend {}: tool name {name} is offered by two backends; give one of them a prefix",
                    router.slots[i].backend.name()
                ));
            }
        }
        for i in 0..router.slots.len() {
            if let Some(every) = router.slots[i].relist {
                tokio::spawn(relist_on_schedule(Arc::downgrade(&router), i, every));
            }
            let weak = Arc::downgrade(&router);
            let mut generation = router.state[i].generation.clone();
            generation.borrow_and_update();
            tokio::spawn(async move {
                while generation.changed().await.is_ok() {
                    let Some(router) = weak.upgrade() else { return };
                    if let Err(e) = router.ensure_synced(i).await {
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
        let state = slots
            .iter()
            .map(|s| SlotState {
                generation: s.backend.generation(),
                synced: AtomicU64::new(UNSYNCED),
                syncing: tokio::sync::Mutex::new(None),
                pins: Mutex::new(PinCache::Unread),
                refused: Default::default(),
                changed_total: AtomicU64::new(0),
            })
            .collect();
        Router {
            slots,
            state,
            table: ArcSwap::from_pointee(Table::default()),
            audit,
            table_lock: Mutex::new(()),
        }
    }

    /// The configured backends, in configuration order; the first is the
    /// primary that serves resources and prompts.
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

    /// Whether the backend at `slot` is up and its current tools were
    /// listed and checked against the pins.
    pub fn is_ready(&self, slot: usize) -> bool {
        slot < self.slots.len() && !self.is_stale(slot) && self.slots[slot].backend.is_up()
    }

    /// How many of the backend's listed tools its last listing refused,
    /// by why: `changed` since pinned (a rug pull), `added` (not pinned),
    /// `invalid` (a bad definition, a name listed twice or a clash).
    pub fn refused_tools(&self, slot: usize) -> [(&'static str, u64); 3] {
        let n = |i: usize| {
            self.state
                .get(slot)
                .map_or(0, |s| s.refused[i].load(Ordering::Relaxed))
        };
        [("changed", n(0)), ("added", n(1)), ("invalid", n(2))]
    }

    /// Tools of the backend found changed since pinned, summed over all its
    /// listings since start.
    pub fn changed_tools_total(&self, slot: usize) -> u64 {
        self.state
            .get(slot)
            .map_or(0, |s| s.changed_total.load(Ordering::Relaxed))
    }

    /// Stops every backend (stdio children with their process groups).
    pub fn stop(&self) {
        for s in &self.slots {
            s.backend.stop();
        }
    }

    fn is_stale(&self, slot: usize) -> bool {
        let st = &self.state[slot];
        *st.generation.borrow() != st.synced.load(Ordering::Acquire)
    }

    /// Re-lists a backend if it reconnected (or announced a changed list)
    /// since its last listing, at most once per [`MIN_RELIST_GAP`]: a
    /// backend announcing `list_changed` in a loop is listed once a second,
    /// and only callers of its own tools wait for it.
    async fn ensure_synced(&self, slot: usize) -> Result<(), String> {
        if !self.is_stale(slot) {
            return Ok(());
        }
        let mut last = self.state[slot].syncing.lock().await;
        if !self.is_stale(slot) {
            return Ok(());
        }
        if let Some(at) = *last {
            tokio::time::sleep_until(at + MIN_RELIST_GAP).await;
        }
        *last = Some(tokio::time::Instant::now());
        self.sync(slot, false).await.map(|_| ())
    }

    async fn list_tools(&self, slot: usize) -> Result<Vec<Value>, String> {
        let s = &self.slots[slot];
        let mut tools = Vec::new();
        let mut total = 0usize;
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
            if tools.len().saturating_add(page.len()) > MAX_LISTED_TOOLS {
                return Err(format!(
                    "tools/list holds more than {MAX_LISTED_TOOLS} tools in all pages together"
                ));
            }
            for t in page {
                total = total.saturating_add(crate::foreign::json_len(t));
                if total > MAX_LISTING_BYTES {
                    return Err(format!(
                        "tools/list holds more than {} MiB of definitions in all pages together",
                        MAX_LISTING_BYTES >> 20
                    ));
                }
            }
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

    fn event(
        &self,
        kind: &str,
        backend: &str,
        tool: Option<&str>,
        pinned: Option<&str>,
        offered: Option<&str>,
    ) {
        let mut ev = SecurityEvent::new(kind, backend);
        ev.tool = tool;
        ev.pinned_digest = pinned;
        ev.offered_digest = offered;
        self.audit.security_event(&ev);
    }

    /// Lists a backend's tools and rebuilds its part of the table. With
    /// `accept_all`, the current definitions become the pins. Fails only when
    /// the backend cannot be listed or the pin file cannot be used; bad
    /// tools are refused one by one.
    pub async fn sync(&self, slot: usize, accept_all: bool) -> Result<SyncReport, String> {
        // The generation this listing reflects, taken before listing: a
        // reconnection during the listing makes the slot stale again.
        let generation = *self.state[slot].generation.borrow();
        let listed = self.list_tools(slot).await?;
        let s = &self.slots[slot];
        let name = s.backend.name();
        let mut report = SyncReport::default();

        // Compile each definition; a tool listed twice is refused entirely.
        // The first few refusals are recorded one by one, the rest counted.
        let screen::Screened {
            compiled,
            invalid,
            refusals: refused,
        } = screen::screen(listed);
        let refusals = refused.len();
        for r in refused.iter().take(DETAILED_REFUSALS) {
            self.event(r.kind, name, r.tool.as_deref(), None, None);
            if let Some(e) = &r.error {
                tracing::warn!(backend = name, error = %e, "tool refused: invalid definition");
            }
        }
        if refusals > DETAILED_REFUSALS {
            let more = (refusals - DETAILED_REFUSALS) as u64;
            tracing::warn!(
                backend = name,
                count = more,
                "more tools refused (invalid definition or listed twice) than recorded one by one"
            );
            let mut ev = SecurityEvent::new("tool_refusals_summarised", name);
            ev.count = Some(more);
            self.audit.security_event(&ev);
        }

        let pins = match &s.pins {
            PinMode::Builtin => None,
            PinMode::File(path) => {
                let existing = PinFile::load(path)?;
                match existing {
                    Some(p) if !accept_all => Some(p),
                    _ => Some(self.write_pins(slot, path, &compiled, accept_all, &mut report)?),
                }
            }
            PinMode::Strict(path) => {
                if accept_all {
                    // `sealgate tools accept`: the one writer of strict pins.
                    let pins = self.write_pins(slot, path, &compiled, true, &mut report)?;
                    *self.pin_cache(slot) = PinCache::Read(pins.clone());
                    Some(pins)
                } else {
                    let cached = self.pin_cache(slot).clone();
                    let cached = match cached {
                        PinCache::Unread => {
                            let read = match PinFile::load(path)? {
                                Some(p) => PinCache::Read(p),
                                None => PinCache::Missing,
                            };
                            *self.pin_cache(slot) = read.clone();
                            read
                        }
                        other => other,
                    };
                    match cached {
                        PinCache::Read(p) => Some(p),
                        _ => {
                            tracing::error!(
                                backend = name,
                                pins = %path.display(),
                                "pinning is strict and the backend has no pin file: none of its tools is served; review them and run `sealgate tools accept`, then reload"
                            );
                            self.event("tools_not_pinned", name, None, None, None);
                            Some(PinFile::default())
                        }
                    }
                }
            }
        };

        let _guard = self.table_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.table.load();
        let mut table = Table {
            routes: old
                .routes
                .iter()
                .filter(|(_, r)| r.slot != slot)
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect(),
            refused: old
                .refused
                .iter()
                .filter(|(_, s_idx)| **s_idx != slot)
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            listing: old
                .listing
                .iter()
                .filter(|(_, s_idx, _)| *s_idx != slot)
                .cloned()
                .collect(),
        };
        let taken: HashSet<String> = table
            .routes
            .keys()
            .chain(table.refused.keys())
            .cloned()
            .collect();
        for n in invalid {
            table.refused.insert(format!("{}{n}", s.prefix), slot);
            report.invalid.push(n);
        }
        for tool in compiled {
            let exposed = format!("{}{}", s.prefix, tool.name);
            if taken.contains(&exposed) {
                self.event(
                    "tool_name_clash",
                    name,
                    Some(&tool.name),
                    None,
                    Some(&tool.digest),
                );
                report.invalid.push(format!("clash:{exposed}"));
                continue;
            }
            match screen::pin_verdict(pins.as_ref(), &tool) {
                screen::PinVerdict::Changed(pinned) => {
                    self.event(
                        "tool_definition_changed",
                        name,
                        Some(&tool.name),
                        Some(pinned),
                        Some(&tool.digest),
                    );
                    report.changed.push(tool.name.clone());
                    table.refused.insert(exposed, slot);
                }
                screen::PinVerdict::Added => {
                    self.event(
                        "tool_added",
                        name,
                        Some(&tool.name),
                        None,
                        Some(&tool.digest),
                    );
                    report.added.push(tool.name.clone());
                    table.refused.insert(exposed, slot);
                }
                screen::PinVerdict::Serve => {
                    let mut def = tool.definition.clone();
                    def["name"] = Value::String(exposed.clone());
                    table.listing.push((exposed.clone(), slot, def));
                    report.accepted.push(tool.name.clone());
                    table.routes.insert(
                        exposed,
                        Route {
                            slot,
                            tool: Arc::new(tool),
                            generation,
                        },
                    );
                }
            }
        }
        let refused = [&report.changed, &report.added, &report.invalid];
        for (n, tools) in self.state[slot].refused.iter().zip(refused) {
            n.store(tools.len() as u64, Ordering::Relaxed);
        }
        self.state[slot]
            .changed_total
            .fetch_add(report.changed.len() as u64, Ordering::Relaxed);
        self.table.store(Arc::new(table));
        self.state[slot].synced.store(generation, Ordering::Release);
        tracing::info!(
            backend = name,
            accepted = report.accepted.len(),
            refused = report.changed.len() + report.added.len() + report.invalid.len(),
            "tools pinned"
        );
        Ok(report)
    }

    fn pin_cache(&self, slot: usize) -> std::sync::MutexGuard<'_, PinCache> {
        self.state[slot]
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the current definitions as the pins (first use, or accept).
    fn write_pins(
        &self,
        slot: usize,
        path: &std::path::Path,
        compiled: &[PinnedTool],
        accept_all: bool,
        report: &mut SyncReport,
    ) -> Result<PinFile, String> {
        let name = self.slots[slot].backend.name();
        let mut pins = PinFile::default();
        for t in compiled {
            pins.tools.insert(
                t.name.clone(),
                PinEntry {
                    digest: t.digest.clone(),
                },
            );
        }
        pins.save(path, name)?;
        report.pinned_now = true;
        let kind = if accept_all {
            "tools_accepted"
        } else {
            "tools_pinned_on_first_use"
        };
        self.event(kind, name, None, None, None);
        Ok(pins)
    }

    /// The route of an exposed tool name. A backend that reconnected since
    /// its last listing is re-listed first.
    pub async fn resolve(&self, exposed: &str) -> Result<Route, Lookup> {
        // Only the backend that owns the name is re-listed: a crash-looping
        // or list_changed-spamming backend slows its own tools, no one
        // else's. A name no backend owned is looked for in every stale one.
        let owner = {
            let table = self.table.load();
            table
                .routes
                .get(exposed)
                .map(|r| r.slot)
                .or_else(|| table.refused.get(exposed).copied())
        };
        let candidates: Vec<usize> = match owner {
            Some(slot) => vec![slot],
            None => (0..self.slots.len()).collect(),
        };
        for slot in candidates {
            if self.is_stale(slot) && self.ensure_synced(slot).await.is_err() && owner == Some(slot)
            {
                // Its tools cannot be trusted until it is re-listed.
                return Err(Lookup::Unavailable);
            }
        }
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
    ///
    /// The call reaches only the backend generation the route was listed
    /// from; a backend that restarted or lost its session since gets none
    /// (BACKEND_UNAVAILABLE) until it is re-listed and checked.
    ///
    ///
    /// A backend that changed generation since the route was looked up (a
    /// restart, a new HTTP session) is re-listed and checked first; the
    /// call goes to the new generation only if the tool's definition there
    /// is still exactly the one the arguments were checked against. A call
    /// is never sent twice: one that failed is not retried.
    pub async fn call_tool(&self, route: &Route, arguments: Value) -> Result<Reply, BackendError> {
        let s = &self.slots[route.slot];
        let mut generation = route.generation;
        if *self.state[route.slot].generation.borrow() != generation {
            if self.ensure_synced(route.slot).await.is_err() {
                return Err(BackendError::Unavailable);
            }
            let fresh = self
                .table
                .load()
                .routes
                .values()
                .find(|r| r.slot == route.slot && r.tool.name == route.tool.name)
                .map(|r| (r.generation, r.tool.digest == route.tool.digest));
            match fresh {
                Some((g, true)) => generation = g,
                // Gone or changed: refused (the next lookup says which).
                _ => return Err(BackendError::Unavailable),
            }
        }
        s.backend
            .request_at(
                generation,
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

    /// Lists one backend's tools again now, whatever its generation (the
    /// pins as last read: a scheduled re-list never re-reads them).
    async fn relist(&self, slot: usize) {
        let _one = self.state[slot].syncing.lock().await;
        if let Err(e) = self.sync(slot, false).await {
            tracing::warn!(backend = self.slots[slot].backend.name(), error = %e, "re-listing tools failed");
            self.state[slot].synced.store(UNSYNCED, Ordering::Release);
        }
    }

    /// Re-reads every pin file and re-lists every backend (SIGHUP, after
    /// `sealgate tools accept`).
    pub async fn resync_all(&self) {
        for i in 0..self.slots.len() {
            let _one = self.state[i].syncing.lock().await;
            *self.pin_cache(i) = PinCache::Unread;
            if let Err(e) = self.sync(i, false).await {
                tracing::warn!(backend = self.slots[i].backend.name(), error = %e, "re-listing tools failed");
                self.state[i].synced.store(UNSYNCED, Ordering::Release);
            }
        }
    }
}

/// Re-lists slot `i` every `every` while the router lives.
async fn relist_on_schedule(router: std::sync::Weak<Router>, i: usize, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(router) = router.upgrade() else {
            return;
        };
        router.relist(i).await;
    }
}

#[path = "router/screen.rs"]
pub mod screen;

#[cfg(test)]
#[path = "router/tests.rs"]
mod tests;
