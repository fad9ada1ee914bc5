//! What is remembered of one identity: its calls, each detector's state
//! (the volume window, the known tools, the denial burst) and the
//! restrictions imposed on it.

use super::new_tool::KnownTools;
use super::restriction::Imposed;
use super::throttle::Gcra;
use super::volume::VolumeWindow;
use super::window::Burst;

/// What is remembered of one identity: fixed-size counters plus at most
/// `new_tool.max_tools` tool names.
#[derive(Debug)]
pub(super) struct IdentityState {
    pub(super) first_ms: i64,
    pub(super) last_ms: i64,
    pub(super) calls: u64,
    pub(super) volume: VolumeWindow,
    pub(super) tools: KnownTools,
    pub(super) denials: Burst,
    pub(super) throttle: Option<(Imposed, Gcra)>,
    pub(super) block: Option<Imposed>,
}

impl IdentityState {
    pub(super) fn new(now_ms: i64) -> Self {
        IdentityState {
            first_ms: now_ms,
            last_ms: now_ms,
            calls: 0,
            volume: VolumeWindow::new(now_ms),
            tools: KnownTools::default(),
            denials: Burst::new(now_ms),
            throttle: None,
            block: None,
        }
    }

    pub(super) fn restricted(&self) -> bool {
        self.block.is_some() || self.throttle.is_some()
    }
}
