#!/usr/bin/env python3
"""Writes grafana-dashboard.json: one panel per question an operator asks of Sentinel. Run it
after changing a panel; tests/packaging/test_observability.py checks every query names a metric
the code exports."""
import json
import os

PANELS = [
    ("Ingest rate (records/s)", 'sum by (instance) (rate(sentinel_ingest_records_total[5m]))',
     "timeseries"),
    ("Ingest refused (records/s, by reason)",
     'sum by (reason) (rate(sentinel_ingest_rejected_total[5m]))', "timeseries"),
    ("Kafka consumer lag (max over partitions)", 'max by (instance) (sentinel_kafka_consumer_lag_max)',
     "timeseries"),
    ("Points waiting for the detectors", 'sum by (instance) (sentinel_telemetry_queued_points)',
     "timeseries"),
    ("Detector verdicts (anomalies/s)", 'sum(rate(sentinel_anomalies_total[5m]))', "timeseries"),
    ("Verdicts suppressed (by reason)",
     'sum by (reason) (rate(sentinel_anomalies_suppressed_total[5m]))', "timeseries"),
    ("Active series", 'sum by (instance) (sentinel_telemetry_series)', "stat"),
    ("Incidents open", 'sum(sentinel_incidents_open)', "stat"),
    ("Incidents opened / resolved / escalated (per hour)",
     'sum(increase(sentinel_incidents_opened_total[1h])) or sum(increase(sentinel_incidents_resolved_total[1h])) or sum(increase(sentinel_incidents_escalated_total[1h]))',
     "timeseries"),
    ("Approvals pending", 'sum(sentinel_approvals_pending)', "stat"),
    ("Executions and rollbacks (per hour)",
     'sum(increase(sentinel_executions_total[1h])) or sum(increase(sentinel_rollbacks_total[1h]))',
     "timeseries"),
    ("Notifications: delivered, failed, dead (per hour)",
     'sum(increase(sentinel_notifications_total[1h])) or sum(increase(sentinel_notifications_failed_total[1h])) or sum(increase(sentinel_notifications_dead_total[1h]))',
     "timeseries"),
    ("Outbox pending / dead", 'sum(sentinel_outbox_pending) or sum(sentinel_outbox_dead)', "timeseries"),
    ("LLM tokens (per hour)",
     'sum(increase(sentinel_analyzer_llm_tokens_in_total[1h])) or sum(increase(sentinel_analyzer_llm_tokens_out_total[1h]))',
     "timeseries"),
    ("LLM cost today (USD)", 'sum(sentinel_analyzer_llm_day_cost_usd)', "stat"),
    ("Audit records (per hour)", 'sum(increase(sentinel_audit_records_total[1h]))', "timeseries"),
]


def main():
    panels = []
    for i, (title, expr, kind) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": kind, "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": "{{instance}}"}],
        })
    dash = {
        "title": "Sentinel", "uid": "sentinel-overview", "schemaVersion": 39, "version": 1,
        "tags": ["sentinel"], "timezone": "utc", "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "panels": panels,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana-dashboard.json")
    with open(out, "w") as f:
        json.dump(dash, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
