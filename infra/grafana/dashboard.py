"""The Grafana dashboard, as code: ``python -m infra.grafana.dashboard`` writes ``dashboards/loopwise.json``.

Edit the panels here, regenerate, commit both (a test checks they agree and
that every metric a query names is one a live worker exports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards" / "loopwise.json"
DATASOURCE = {"type": "prometheus", "uid": "loopwise-prometheus"}

#: (row title, [(panel title, kind, unit, [(PromQL, legend)])])
ROWS: list[tuple[str, list[tuple[str, str, str, list[tuple[str, str]]]]]] = [
    ("Spend and budget", [
        ("Spend per workflow (USD/h) vs budget", "timeseries", "currencyUSD", [
            ("sum by (workflow) (rate(loopwise_spend_usd_total[5m])) * 3600", "{{workflow}} spend"),
            ("max by (workflow) (loopwise_budget_usd_per_hour)", "{{workflow}} budget"),
        ]),
        ("Spend by route (USD/h)", "timeseries", "currencyUSD", [
            ("sum by (workflow, route) (rate(loopwise_spend_usd_total[5m])) * 3600", "{{workflow}} / {{route}}"),
        ]),
    ]),
    ("Routing", [
        ("Route share of the current policy", "timeseries", "percentunit", [
            ("max by (workflow, segment, route) (loopwise_route_share)", "{{workflow}} {{segment}} {{route}}"),
        ]),
        ("Policy version", "stat", "none", [
            ("max by (workflow, segment) (loopwise_policy_version)", "{{workflow}} {{segment}}"),
        ]),
        ("Model accuracy: realized vs expected reward", "timeseries", "none", [
            ("sum by (workflow, route) (rate(loopwise_outcome_reward_sum[15m])) / "
             "sum by (workflow, route) (rate(loopwise_outcome_reward_count[15m]))", "{{workflow}} {{route}} realized"),
            ("avg by (workflow, route) (loopwise_route_expected_reward)", "{{workflow}} {{route}} expected"),
        ]),
        ("Open circuits", "stat", "none", [
            ("max by (target) (loopwise_circuit_open)", "{{target}}"),
        ]),
    ]),
    ("Experiments and rollouts", [
        ("Experiment allocation per arm", "timeseries", "percentunit", [
            ("max by (experiment, variant) (loopwise_experiment_allocation)", "{{experiment}} {{variant}}"),
        ]),
        ("P(best) per arm", "timeseries", "percentunit", [
            ("max by (experiment, variant) (loopwise_experiment_p_best)", "{{experiment}} {{variant}}"),
        ]),
        ("Experiment status", "stat", "none", [
            ("max by (experiment, status) (loopwise_experiment_status) == 1", "{{experiment}}: {{status}}"),
        ]),
        ("Rollout step and canary share", "timeseries", "none", [
            ("max by (workflow, version) (loopwise_rollout_step)", "{{workflow}} {{version}} step"),
            ("max by (workflow, version) (loopwise_rollout_traffic_share)", "{{workflow}} {{version}} share"),
        ]),
    ]),
    ("Incidents and anomalies", [
        ("Open incidents by severity", "stat", "none", [
            ("sum by (severity) (loopwise_incidents_open)", "{{severity}}"),
        ]),
        ("Anomalies per minute by severity", "timeseries", "none", [
            ("sum by (severity) (rate(loopwise_anomalies_total[5m])) * 60", "{{severity}}"),
        ]),
        ("Commands per minute by action", "timeseries", "none", [
            ("sum by (action) (rate(loopwise_commands_total[5m])) * 60", "{{action}}"),
        ]),
        ("Notifications per minute by receiver and outcome", "timeseries", "none", [
            ("sum by (receiver, outcome) (rate(loopwise_notifications_total[5m])) * 60", "{{receiver}} {{outcome}}"),
        ]),
    ]),
    ("Outcomes and feedback", [
        ("Outcomes per second", "timeseries", "reqps", [
            ("sum by (workflow, kind) (rate(loopwise_outcomes_total[5m]))", "{{workflow}} {{kind}}"),
        ]),
        ("Error share of requests", "timeseries", "percentunit", [
            ('sum by (workflow) (rate(loopwise_outcomes_total{kind="provisional",status!="ok"}[5m])) / '
             'sum by (workflow) (rate(loopwise_outcomes_total{kind="provisional"}[5m]))', "{{workflow}}"),
        ]),
        ("Feedback per second by kind", "timeseries", "reqps", [
            ("sum by (kind) (rate(loopwise_feedback_total[5m]))", "{{kind}}"),
        ]),
    ]),
    ("Pipeline", [
        ("Events in per second by topic", "timeseries", "reqps", [
            ("sum by (topic) (rate(loopwise_events_in_total[1m]))", "{{topic}}"),
        ]),
        ("Dead letters per minute", "timeseries", "none", [
            ("sum by (topic, reason) (rate(loopwise_dlq_total[5m])) * 60", "{{topic}} {{reason}}"),
        ]),
        ("Lag per stage (messages)", "timeseries", "none", [
            ("max by (stage) (loopwise_stage_lag)", "{{stage}}"),
        ]),
        ("Batch processing p99 per stage", "timeseries", "s", [
            ("histogram_quantile(0.99, sum by (le, agent) (rate(loopwise_processing_seconds_bucket[5m])))",
             "{{agent}}"),
        ]),
        ("Event latency p99 by topic", "timeseries", "s", [
            ("histogram_quantile(0.99, sum by (le, topic) (rate(loopwise_event_latency_seconds_bucket[5m])))",
             "{{topic}}"),
        ]),
        ("Lake records per second", "timeseries", "reqps", [
            ("sum by (topic) (rate(loopwise_lake_records_total[5m]))", "{{topic}}"),
        ]),
        ("Workers (build)", "table", "none", [
            ("max by (instance, version, python) (loopwise_build_info)", "{{instance}} {{version}}"),
        ]),
    ]),
]


def dashboard() -> dict[str, Any]:
    """The dashboard JSON model (Grafana 10+ schema)."""
    panels: list[dict[str, Any]] = []
    y, next_id = 0, 1
    for row_title, row_panels in ROWS:
        panels.append({"type": "row", "title": row_title, "id": next_id, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        next_id, y = next_id + 1, y + 1
        for i, (title, kind, unit, queries) in enumerate(row_panels):
            panels.append({
                "type": kind, "title": title, "id": next_id, "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
                "targets": [{"refId": chr(ord("A") + j), "datasource": DATASOURCE, "expr": expr,
                             "legendFormat": legend} for j, (expr, legend) in enumerate(queries)],
            })
            next_id += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "uid": "loopwise-overview", "title": "loopwise", "tags": ["loopwise"], "timezone": "utc",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"}, "panels": panels,
        "templating": {"list": []}, "annotations": {"list": []},
    }


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [expr for _row, panels in ROWS for _t, _k, _u, queries in panels for expr, _l in queries]


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
