//! What feeds the detectors: a call that passed every check (stage 7:
//! `volume`, `new_tool`, `off_hours`), a refusal of an identity
//! (`denials`), a failure from a source (`source_failures`). Each detector's
//! own step is in the file named after it; here it is run on the state it
//! counts in, and what fires is imposed and recorded.

use std::net::IpAddr;

use super::action::{Action, Admission};
use super::identity::IdentityState;
use super::restriction::{restriction, Imposed};
use super::sources::{source_key, source_text};
use super::tracker::{lock, Anomaly};
use super::window::until_of;

impl Anomaly {
    /// Stage 7: one call that passed every check so far. Runs the volume,
    /// new-tool and off-hours detectors; returns the block if one of them
    /// just blocked the identity (this call is then refused too).
    pub fn observe_call(
        &self,
        client_id: &str,
        tool: Option<&str>,
        in_allowed_hours: bool,
        now_ms: i64,
    ) -> Admission {
        let c = &self.config;
        let mut map = lock(&self.identities);
        if !map.contains_key(client_id) && !self.make_room(&mut map) {
            tracing::warn!(
                client.id = client_id,
                "anomaly state is full; this identity is not tracked"
            );
            return Admission::Allow;
        }
        let state = map
            .entry(client_id.to_string())
            .or_insert_with(|| IdentityState::new(now_ms));
        state.last_ms = now_ms;
        state.calls += 1;
        let fired = [
            c.volume.observe(&mut state.volume, now_ms),
            c.new_tool
                .observe(&mut state.tools, tool, state.calls, state.first_ms, now_ms),
            c.off_hours.observe(in_allowed_hours),
        ];

        let mut verdict = Admission::Allow;
        for (detector, action, cooldown, figures) in fired.into_iter().flatten() {
            let until = self.impose(
                client_id,
                state,
                detector,
                action,
                self.cooldown(cooldown),
                now_ms,
            );
            let tool_name = if detector == "new_tool" { tool } else { None };
            self.record(
                client_id,
                tool_name,
                detector,
                action.as_str(),
                figures,
                until,
                now_ms,
            );
            if action == Action::Block {
                verdict = Admission::Blocked {
                    detector,
                    until_ms: until,
                };
            }
        }
        verdict
    }

    /// A refusal of a registered identity's request for something it did
    /// (signature, replay, message, authorization, arguments). Admission
    /// refusals (rate, blocks) must not be passed here: a block would feed
    /// itself.
    pub fn observe_denial(&self, client_id: &str, reason: &'static str, now_ms: i64) {
        let c = &self.config.denials;
        if c.action == Action::Off {
            return;
        }
        let mut map = lock(&self.identities);
        if !map.contains_key(client_id) && !self.make_room(&mut map) {
            return;
        }
        let state = map
            .entry(client_id.to_string())
            .or_insert_with(|| IdentityState::new(now_ms));
        state.last_ms = now_ms;
        if let Some(figures) = c.observe(&mut state.denials, now_ms) {
            let until = self.impose(
                client_id,
                state,
                "denials",
                c.action,
                self.cooldown(c.cooldown_secs),
                now_ms,
            );
            tracing::warn!(client.id = client_id, last_reason = reason, "denial burst");
            self.record(
                client_id,
                None,
                "denials",
                c.action.as_str(),
                figures,
                until,
                now_ms,
            );
        }
    }

    /// A failure from `source`: a refused handshake, an unknown identity or
    /// an unknown key id. Returns whether the source is now blocked.
    pub fn observe_source_failure(&self, source: IpAddr, now_ms: i64) -> bool {
        let c = &self.config.source_failures;
        if c.action == Action::Off {
            return false;
        }
        let source = source_key(source);
        let mut map = lock(&self.sources);
        // Full: forget the least recently seen unblocked source, so a new
        // one is always tracked (an attacker cannot fill the table to switch
        // the detector off), in a bounded number of steps.
        if !map.contains_key(&source) && !map.make_room(self.config.max_sources, now_ms) {
            return false;
        }
        let state = map.seen(source, now_ms);
        if state.block.is_some() {
            return true;
        }
        let Some(figures) = c.observe(&mut state.failures, now_ms) else {
            return false;
        };
        let until = match c.action {
            Action::Block => {
                let until = until_of(now_ms, self.cooldown(c.cooldown_secs));
                let imposed = Imposed::new("source_failures", now_ms, until);
                self.publish(restriction(
                    "source",
                    source_text(source),
                    "block",
                    &imposed,
                ));
                state.block = Some(imposed);
                self.blocks_changed();
                until
            }
            _ => None,
        };
        if state.failures.count == c.threshold || c.action == Action::Block {
            self.record_source(source, c.action.as_str(), figures, until, now_ms);
        }
        c.action == Action::Block
    }
}
