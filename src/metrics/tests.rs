//! Tests of the request path's counters, client labels and handshake causes.

use super::*;

#[test]
fn requests_are_counted_by_method_outcome_and_reason() {
    let m = Metrics::new(&["embedded"]);
    let mut call = AuditRecord::new();
    call.method = Some("tools/call");
    m.request(&call, Outcome::Allowed, None, Duration::from_millis(3));
    let unparsed = AuditRecord::new();
    for _ in 0..2 {
        m.request(
            &unparsed,
            Outcome::Denied,
            Some("SIGNATURE_INVALID"),
            Duration::from_millis(1),
        );
    }
    m.stages().lap(Stage::Seal);
    m.observe_backend_call::<()>(0, Duration::from_millis(2), &Err(BackendError::Timeout));
    m.observe_backend_call::<()>(7, Duration::from_millis(2), &Err(BackendError::Timeout));
    m.handshake_failed("unknown_ca");
    let text = m.encode();
    for line in [
        r#"sealgate_requests_total{method="tools/call",outcome="allowed",reason=""} 1"#,
        r#"sealgate_requests_total{method="unknown",outcome="denied",reason="SIGNATURE_INVALID"} 2"#,
        r#"sealgate_request_duration_seconds_count{outcome="denied"} 2"#,
        r#"sealgate_stage_duration_seconds_count{stage="seal"} 1"#,
        r#"sealgate_stage_duration_seconds_count{stage="backend"} 0"#,
        r#"sealgate_backend_errors_total{backend="embedded",kind="timeout"} 1"#,
        r#"sealgate_backend_call_duration_seconds_count{backend="embedded"} 1"#,
        r#"sealgate_tls_handshake_failures_total{cause="unknown_ca"} 1"#,
        r#"sealgate_requests_in_flight 0"#,
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let guard = m.in_flight();
    assert!(m.encode().contains("sealgate_requests_in_flight 1"));
    drop(guard);
}

/// A concluded request of `id`; `identified`: it passed stage 1.
fn request_of(m: &Metrics, id: &str, identified: bool, reason: Option<&'static str>) {
    let mut record = AuditRecord::new();
    record.client_id = Some(id.to_string());
    record.identity_passed = identified;
    record.method = Some("tools/call");
    let outcome = if reason.is_some() {
        Outcome::Denied
    } else {
        Outcome::Allowed
    };
    m.request(&record, outcome, reason, Duration::from_millis(1));
}

/// The `sealgate_client_requests_total` rows of `text`.
fn client_rows(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("sealgate_client_requests_total{"))
        .collect()
}

#[test]
fn client_ids_are_no_labels_unless_asked_for() {
    let m = Metrics::new(&[]);
    request_of(&m, "alice", true, None);
    assert!(!m.label_clients(0), "0: off");
    request_of(&m, "alice", true, Some("RATE_LIMITED"));
    let text = m.encode();
    assert!(!text.contains("client_requests"), "{text}");
    assert!(!text.contains("alice"), "{text}");
    assert!(text
        .contains(r#"sealgate_requests_total{method="tools/call",outcome="allowed",reason=""} 1"#));
}

#[test]
fn client_labels_stop_at_the_cap_and_the_rest_are_other() {
    let m = Metrics::new(&[]);
    assert!(m.label_clients(2));
    assert!(!m.label_clients(50), "set once: the first cap holds");
    // Named by a certificate but refused at stage 1 (unknown, disabled,
    // revoked): never a label, and it takes no slot.
    request_of(&m, "mallory", false, Some("CLIENT_UNKNOWN"));
    request_of(&m, "alice", true, None);
    request_of(&m, "alice", true, None);
    request_of(&m, "bob", true, Some("RATE_LIMITED"));
    // Past the cap: carol and dave are one label value.
    request_of(&m, "carol", true, None);
    request_of(&m, "dave", true, Some("RATE_LIMITED"));
    request_of(&m, "dave", true, None);
    // A labelled client keeps its label after the cap is reached.
    request_of(&m, "alice", true, Some("TOOL_NOT_ALLOWED"));
    let mut cancelled = AuditRecord::new();
    cancelled.client_id = Some("bob".into());
    cancelled.identity_passed = true;
    m.request(&cancelled, Outcome::Cancelled, None, Duration::ZERO);
    let text = m.encode();
    let mut rows = client_rows(&text);
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            r#"sealgate_client_requests_total{client="_other",outcome="allowed",reason=""} 2"#,
            r#"sealgate_client_requests_total{client="_other",outcome="denied",reason="RATE_LIMITED"} 1"#,
            r#"sealgate_client_requests_total{client="alice",outcome="allowed",reason=""} 2"#,
            r#"sealgate_client_requests_total{client="alice",outcome="denied",reason="TOOL_NOT_ALLOWED"} 1"#,
            r#"sealgate_client_requests_total{client="bob",outcome="cancelled",reason=""} 1"#,
            r#"sealgate_client_requests_total{client="bob",outcome="denied",reason="RATE_LIMITED"} 1"#,
        ],
        "{text}"
    );
    assert!(!text.contains("mallory") && !text.contains("carol") && !text.contains("dave"));
    // The family without client ids is unchanged: every request.
    assert!(text
        .contains(r#"sealgate_requests_total{method="tools/call",outcome="allowed",reason=""} 4"#));
    assert!(text.contains(
        r#"sealgate_requests_total{method="tools/call",outcome="denied",reason="CLIENT_UNKNOWN"} 1"#
    ));
}

#[test]
fn many_clients_make_at_most_cap_plus_one_label_values() {
    let m = Metrics::new(&[]);
    assert!(m.label_clients(3));
    for i in 0..200 {
        request_of(&m, &format!("client-{i}"), true, None);
    }
    let text = m.encode();
    let clients: HashSet<&str> = client_rows(&text)
        .iter()
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert_eq!(
        clients,
        HashSet::from(["client-0", "client-1", "client-2", OTHER_CLIENTS]),
        "{text}"
    );
    assert!(text.contains(
        r#"sealgate_client_requests_total{client="_other",outcome="allowed",reason=""} 197"#
    ));
    let labelled = m.clients.get().map(|c| {
        c.labelled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    });
    assert_eq!(labelled, Some(3));
}

#[test]
fn a_failed_handshake_is_named_by_its_alert() {
    let tls = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    assert_eq!(
        handshake_failure_cause(&tls(rustls::Error::NoCertificatesPresented)),
        "certificate_required"
    );
    assert_eq!(
        handshake_failure_cause(&tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))),
        "certificate_revoked"
    );
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    assert_eq!(handshake_failure_cause(&reset), "abandoned");
}
