#!/usr/bin/env python3
"""Writes sealgate.json, the Grafana dashboard, from the panel list below.

Edit this file, not the JSON: `python3 deploy/grafana/dashboard.py` rewrites
it (or writes the path given as its argument), and the tests fail while the
two differ. Standard library only.
"""

import json
import pathlib
import sys

SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"
DENIED = 'outcome="denied"'
SHED = 'result=~"shed|shed_per_source|blocked_source|out_of_fds"'
HANDSHAKE_OK = 'result="ok"'


def sel(extra=""):
    return "{" + SEL + (", " + extra if extra else "") + "}"


def target(expr, legend, ref):
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
    }


def panel(kind, title, description, targets, unit="short", w=8, h=8, **extra):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "gridPos": {"w": w, "h": h},
        "options": {},
    }
    p["fieldConfig"]["defaults"].update(extra.pop("defaults", {}))
    p.update(extra)
    return p


def ts(title, description, targets, unit="short", w=8, stack=False):
    p = panel("timeseries", title, description, targets, unit, w)
    p["fieldConfig"]["defaults"]["custom"] = {
        "drawStyle": "line",
        "fillOpacity": 20 if stack else 0,
        "stacking": {"mode": "normal" if stack else "none"},
    }
    p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
    return p


def stat(title, description, targets, unit="short", w=4, steps=None, mappings=None):
    p = panel("stat", title, description, targets, unit, w, h=5)
    defaults = p["fieldConfig"]["defaults"]
    defaults["thresholds"] = {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]}
    if mappings:
        defaults["mappings"] = mappings
    p["options"] = {"colorMode": "background", "graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}}
    return p


OK_BAD = [{"color": "red", "value": None}, {"color": "green", "value": 1}]
BAD_OK = [{"color": "green", "value": None}, {"color": "red", "value": 1}]
YES_NO = [{"type": "value", "options": {"0": {"text": "no"}, "1": {"text": "yes"}}}]


def quantile(q, metric, by, extra=""):
    return f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({metric}_bucket{sel(extra)}[{RATE}])))"


ROWS = [
    ("Request path", [
        stat("Ready", "sealgate_ready: what /readyz says (every backend up and pinned, the audit trail taking records, not stopping).",
             [(f"min(sealgate_ready{sel()})", "")], steps=OK_BAD, mappings=YES_NO),
        stat("Requests/s", "Every request, as in the audit trail.",
             [(f"sum(rate(sealgate_requests_total{sel()}[{RATE}]))", "")], unit="reqps"),
        stat("Refused", "Share of requests refused (outcome denied).",
             [(f"sum(rate(sealgate_requests_total{sel(DENIED)}[{RATE}])) / sum(rate(sealgate_requests_total{sel()}[{RATE}]))", "")],
             unit="percentunit", steps=[{"color": "green", "value": None}, {"color": "orange", "value": 0.05}, {"color": "red", "value": 0.25}]),
        stat("In flight", "Calls being processed now.", [(f"sum(sealgate_requests_in_flight{sel()})", "")]),
        stat("p99 latency", "Arrival to answer, all outcomes.",
             [(quantile(0.99, "sealgate_request_duration_seconds", ""), "")], unit="s"),
        stat("Version", "sealgate_build_info of each instance.",
             [(f"count by (version) (sealgate_build_info{sel()})", "{{version}}")]),
        ts("Requests by outcome", "sealgate_requests_total by outcome (allowed, denied, cancelled).",
           [(f"sum by (outcome) (rate(sealgate_requests_total{sel()}[{RATE}]))", "{{outcome}}")], "reqps", stack=True),
        ts("Refusals by reason", "Denied requests by reason (docs/REASONS.md). SIGNATURE_INVALID, REPLAYED_NONCE and KEY_NOT_BOUND mean someone is trying.",
           [(f"sum by (reason) (rate(sealgate_requests_total{sel(DENIED)}[{RATE}]))", "{{reason}}")], "reqps", stack=True),
        ts("Latency", "Arrival to answer: p50 and p99 by outcome.",
           [(quantile(0.5, "sealgate_request_duration_seconds", "outcome"), "p50 {{outcome}}"),
            (quantile(0.99, "sealgate_request_duration_seconds", "outcome"), "p99 {{outcome}}")], "s"),
        ts("Stage p99", "Per stage of the request path (authenticate, prepare, backend, result, seal, audit).",
           [(quantile(0.99, "sealgate_stage_duration_seconds", "stage"), "{{stage}}")], "s", w=12),
        ts("Requests by client", "Only with [metrics] client_labels: refusals per registry client (_other past the cap).",
           [(f"sum by (client, reason) (rate(sealgate_client_requests_total{sel(DENIED)}[{RATE}]))", "{{client}} {{reason}}")], "reqps", w=12),
    ]),
    ("Admission and anomalies", [
        ts("Blocks and throttles in force", "sealgate_anomaly_restrictions: the blocks and throttles each replica holds now, by subject, action and detector (`sealgate admin blocks` names them).",
           [(f"sum by (subject, action, detector) (sealgate_anomaly_restrictions{sel()})", "{{action}} {{subject}} ({{detector}})")], w=8),
        ts("Anomaly actions", "Detector alerts, throttles, blocks, their expiry and unblocks.",
           [(f"sum by (detector, action) (increase(sealgate_anomaly_actions_total{sel()}[{RATE}]))", "{{detector}} {{action}}")], w=8),
        ts("Connections", "Authenticated connections open, and those the gateway closed by reason.",
           [(f"sum(sealgate_connections_open{sel()})", "open"),
            (f"sum by (reason) (rate(sealgate_connections_closed_total{sel()}[{RATE}]))", "closed: {{reason}} /s")], w=8),
        ts("Handshakes", "Accepted TCP connections by how the TLS handshake ended, or why they were shed at accept.",
           [(f"sum by (result) (rate(sealgate_tls_handshakes_total{sel()}[{RATE}]))", "{{result}}")], "ops", w=8, stack=True),
        ts("Handshake failures", "By the alert sent (unknown_ca, certificate_expired, certificate_revoked...).",
           [(f"sum by (cause) (rate(sealgate_tls_handshake_failures_total{sel()}[{RATE}]))", "{{cause}}")], "ops", w=8, stack=True),
        ts("Sources shed and reads held", "Connections shed at accept (overload, per source, blocked sources, no file descriptor) and connections held for an identity far over its rate.",
           [(f"sum by (result) (rate(sealgate_tls_handshakes_total{sel(SHED)}[{RATE}]))", "{{result}}"),
            (f"sum(rate(sealgate_connection_read_holds_total{sel()}[{RATE}]))", "read holds")], "ops", w=8),
        ts("Memory", "Use against the limit; calls are refused with MEMORY_PRESSURE at 90%.",
           [(f"sealgate_memory_used_bytes{sel()} / sealgate_memory_limit_bytes{sel()}", "{{instance}}")], "percentunit", w=8),
        ts("Post-quantum handshakes", "Share of completed handshakes that used X25519MLKEM768.",
           [(f"sum(rate(sealgate_tls_handshakes_post_quantum_total{sel()}[{RATE}])) / sum(rate(sealgate_tls_handshakes_total{sel(HANDSHAKE_OK)}[{RATE}]))", "")], "percentunit", w=8),
    ]),
    ("Audit delivery", [
        stat("Audit available", "0 while calls are refused with AUDIT_UNAVAILABLE.",
             [(f"min(sealgate_audit_available{sel()})", "")], steps=OK_BAD, mappings=YES_NO),
        stat("Sinks down", "Sinks whose last delivery failed.",
             [(f"count(sealgate_audit_sink_up{sel()} == 0) or vector(0)", "")], steps=BAD_OK),
        stat("AUDIT_UNAVAILABLE answers", "Calls answered AUDIT_UNAVAILABLE over the dashboard's range: refused, or withheld because their record could not be committed.",
             [(f"sum(increase(sealgate_audit_unavailable_answers_total{sel()}[$__range]))", "")], steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Refusing unwitnessed", "1 while calls are refused with AUDIT_UNWITNESSED.",
             [(f"max(sealgate_audit_refusing_unwitnessed{sel()})", "")], steps=BAD_OK, mappings=YES_NO),
        stat("Cosigned tree size", "The tree size of the latest checkpoint a witness quorum cosigned.",
             [(f"max(sealgate_audit_cosigned_tree_size{sel()})", "")]),
        ts("Queue", "Records waiting for the writer, against [audit] queue_capacity.",
           [(f"sealgate_audit_queue_depth{sel()}", "depth {{instance}}"),
            (f"sealgate_audit_queue_capacity{sel()}", "capacity {{instance}}")], w=8),
        ts("Sinks", "1 while a sink takes records; failed deliveries per second, by sink.",
           [(f"sealgate_audit_sink_up{sel()}", "up: sink {{sink}} ({{kind}}) {{instance}}"),
            (f"sum by (instance, sink, kind) (rate(sealgate_audit_sink_delivery_failures_total{sel()}[{RATE}]))", "failures/s: sink {{sink}} ({{kind}}) {{instance}}")], w=8),
        ts("Backlog and spool", "Records waiting in memory for a sink, and in a spool sink's file.",
           [(f"sealgate_audit_sink_backlog_records{sel()}", "memory: sink {{sink}} {{instance}}"),
            (f"sealgate_audit_sink_spooled_records{sel()}", "spool: sink {{sink}} {{instance}}")], w=8),
        ts("Witnessing", "How long the oldest checkpoint has waited for a quorum, against max_unwitnessed_secs; failed submissions by witness.",
           [(f"sealgate_audit_unwitnessed_seconds{sel()}", "waiting {{instance}}"),
            (f"sealgate_audit_max_unwitnessed_seconds{sel()}", "max {{instance}}"),
            (f"sum by (witness) (increase(sealgate_audit_witness_failures_total{sel()}[{RATE}]))", "failures: {{witness}}"),
            (f"sum by (witness) (increase(sealgate_audit_witness_refused_checkpoint_total{sel()}[{RATE}]))", "refused (422): {{witness}}"),
            (f"sum by (witness) (increase(sealgate_audit_witness_ahead_of_log_total{sel()}[{RATE}]))", "ahead (409): {{witness}}")], "s", w=12),
        ts("Quorum lost", "Times the wait passed max_unwitnessed_secs.",
           [(f"sum by (instance) (increase(sealgate_audit_witness_quorum_lost_total{sel()}[{RATE}]))", "{{instance}}")], w=12),
    ]),
    ("Backends", [
        ts("Up", "1 while the backend runs and its current tools are listed and pinned.",
           [(f"min by (backend) (sealgate_backend_up{sel()})", "{{backend}}")], w=6),
        ts("Calls", "Forwarded calls per second.",
           [(f"sum by (backend) (rate(sealgate_backend_call_duration_seconds_count{sel()}[{RATE}]))", "{{backend}}")], "reqps", w=6),
        ts("Backend p99", "Forwarded calls, p99 by backend.",
           [(quantile(0.99, "sealgate_backend_call_duration_seconds", "backend"), "{{backend}}")], "s", w=6),
        ts("Errors", "Forwarded calls without a usable answer, by kind (unavailable, timeout, protocol).",
           [(f"sum by (backend, kind) (rate(sealgate_backend_errors_total{sel()}[{RATE}]))", "{{backend}} {{kind}}")], "reqps", w=6),
        ts("Restarts", "stdio child restarts.",
           [(f"sum by (backend) (increase(sealgate_backend_restarts_total{sel()}[{RATE}]))", "{{backend}}")], w=6),
        ts("Tools refused", "Listed tools not served: changed since pinned (a rug pull), added (not pinned), invalid; and changed definitions found by any listing (also one undone before a scrape).",
           [(f"max by (backend, why) (sealgate_backend_tools_refused{sel()})", "{{backend}} {{why}}"),
            (f"sum by (backend) (increase(sealgate_backend_tool_definitions_changed_total{sel()}[{RATE}]))", "{{backend}} changes found")], w=6),
        ts("Sandbox", "Less isolation than configured (1), and the layers not in force.",
           [(f"max by (backend) (sealgate_backend_sandbox_degraded{sel()})", "degraded {{backend}}"),
            (f"count by (backend, layer) (sealgate_backend_sandbox_layers{sel()} == 0)", "missing {{backend}} {{layer}}")], w=6),
        ts("Egress", "Connections a stdio backend opened through the gateway's relay, by result.",
           [(f"sum by (backend, result) (rate(sealgate_backend_egress_connections_total{sel()}[{RATE}]))", "{{backend}} {{result}}")], "ops", w=6),
    ]),
    ("Credentials", [
        panel("bargauge", "Time left", "sealgate_credential_expiry_seconds: the soonest end of each kind of credential (a CRL: its next update); negative once past. Yellow within 14 days (the default [expiry] warning_days; the panel beside it shows yours), red within a day.",
              [(f"min by (credential) (sealgate_credential_expiry_seconds{sel()})", "{{credential}}")], "s", w=16, h=7,
              defaults={"thresholds": {"mode": "absolute", "steps": [
                  {"color": "red", "value": None}, {"color": "yellow", "value": 86400}, {"color": "green", "value": 1209600}]}},
              options={"displayMode": "basic", "orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"]}}),
        stat("Warning window", "[expiry] warning_days.",
             [(f"max(sealgate_credential_expiry_warning_seconds{sel()})", "")], unit="s", w=4),
        stat("Clients without a valid key", "Enabled clients with keys none of which is valid now: their calls are refused with KEY_NOT_VALID_NOW.",
             [(f"max(sealgate_clients_without_valid_key{sel()})", "")], w=4, steps=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
    ]),
    ("Replicas", [
        ts("Store mode", "The shared state store's mode in force per instance: shared, local (this replica's own state) or unavailable (calls refused).",
           [(f"sealgate_state_store_mode{sel()} == 1", "{{instance}} {{mode}}")], w=8),
        ts("Store round trip", "p50 and p99 of round trips to the shared store.",
           [(quantile(0.5, "sealgate_state_store_round_trip_seconds", "instance"), "p50 {{instance}}"),
            (quantile(0.99, "sealgate_state_store_round_trip_seconds", "instance"), "p99 {{instance}}")], "s", w=8),
        ts("Store failures and local decisions", "Failed round trips by kind, and calls decided on local state while the store was away.",
           [(f"sum by (kind) (rate(sealgate_state_store_failures_total{sel()}[{RATE}]))", "{{kind}}"),
            (f"sum(rate(sealgate_state_local_decisions_total{sel()}[{RATE}]))", "local decisions")], "ops", w=8),
        ts("Replay cache", "Nonces remembered in this process (with a shared store: those of a local fallback).",
           [(f"sealgate_replay_cache_nonces{sel()}", "{{instance}}")], w=8),
    ]),
]


def dashboard():
    panels = []
    y = 0
    pid = 1
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "id": pid,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        pid += 1
        y += 1
        x = 0
        line_h = 0
        for p in row:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
            p["id"] = pid
            pid += 1
            x += w
            line_h = max(line_h, h)
            panels.append(p)
        y += line_h
    var = lambda name, query: {
        "name": name, "label": name, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query, "includeAll": True, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2, "sort": 1,
    }
    return {
        "title": "sealgate",
        "uid": "sealgate",
        "description": "sealgate, the mTLS gRPC gateway with signed envelopes: request path, admission and anomalies, audit delivery, backends, credentials, replicas. Generated by deploy/grafana/dashboard.py.",
        "tags": ["sealgate", "mcp", "security"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": [{
            "name": "sealgate alerts", "enable": True, "iconColor": "red",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "expr": 'ALERTS{alertname=~"Sealgate.*", alertstate="firing", job=~"$job", instance=~"$instance"}',
            "titleFormat": "{{alertname}}", "textFormat": "{{severity}} {{instance}}",
            "step": "60s", "useValueForTime": False,
        }]},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            var("job", "label_values(sealgate_build_info, job)"),
            var("instance", 'label_values(sealgate_build_info{job=~"$job"}, instance)'),
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("sealgate.json")
    out.write_text(json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n")
