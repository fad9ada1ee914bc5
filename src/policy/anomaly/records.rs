//! The audit records of the detectors: an action, an expiry, a block
//! dropped because the shared store no longer holds it.

use std::net::IpAddr;

use super::action::Figures;
use super::sources::{source_key, source_text};
use super::tracker::Anomaly;
use crate::audit::AnomalyEvent;

impl Anomaly {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        client_id: &str,
        tool: Option<&str>,
        detector: &'static str,
        action: &'static str,
        figures: Figures,
        until_ms: Option<i64>,
        now_ms: i64,
    ) {
        self.audit.anomaly_event(&AnomalyEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "anomaly",
            detector,
            action,
            client_id: Some(client_id),
            source: None,
            tool,
            figures,
            until: until_ms.map(crate::audit::rfc3339_ms),
            by: None,
        });
    }

    /// A block lifted because the shared store no longer holds it: an
    /// operator's unblock on another replica (`by_operator`), or the store
    /// lost or dropped it.
    pub(super) fn record_dropped(
        &self,
        client_id: Option<&str>,
        source: Option<&str>,
        detector: &'static str,
        by_operator: bool,
        now_ms: i64,
    ) {
        self.audit.anomaly_event(&AnomalyEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "anomaly",
            detector,
            action: "block_dropped",
            client_id,
            source,
            tool: None,
            figures: Figures::from([("operator_unblock", f64::from(u8::from(by_operator)))]),
            until: None,
            by: None,
        });
    }

    pub(super) fn record_source(
        &self,
        source: IpAddr,
        action: &'static str,
        figures: Figures,
        until_ms: Option<i64>,
        now_ms: i64,
    ) {
        let source = source_text(source);
        self.audit.anomaly_event(&AnomalyEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "anomaly",
            detector: "source_failures",
            action,
            client_id: None,
            source: Some(&source),
            tool: None,
            figures,
            until: until_ms.map(crate::audit::rfc3339_ms),
            by: None,
        });
    }

    /// An operator's unblock whose outcome in the shared store is not
    /// known (no answer by its deadline and the clock grace): recorded
    /// with the operator, so an unblock that did take effect somewhere is
    /// never without a record of who asked for it.
    pub fn record_unconfirmed_unblock(&self, target: &str, by: &str, now_ms: i64) {
        let source = target
            .trim_end_matches("/64")
            .parse::<IpAddr>()
            .ok()
            .map(|ip| source_text(source_key(ip)));
        self.audit.anomaly_event(&AnomalyEvent {
            ts: crate::audit::rfc3339_ms(now_ms),
            event: "anomaly",
            detector: "operator",
            action: "unblock_unconfirmed",
            client_id: source.is_none().then_some(target),
            source: source.as_deref(),
            tool: None,
            figures: Figures::new(),
            until: None,
            by: Some(by),
        });
    }
}
