"""A live worker: /healthz and /readyz, the metrics stage reading decisions, and every metric the dashboard and
the alert rules name is one the worker exports."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from infra.admin import apply_topics
from infra.grafana.dashboard import expressions
from infra.settings import Settings
from schemas.records import RouteProbability, RoutingPolicy
from schemas.serde import json_codec
from tests.conftest import wait_until
from tests.integration.worker_proc import produce_tracked, running_worker

T0 = 1_700_000_000_000
_REPO = Path(__file__).resolve().parents[2]
#: Series Prometheus makes itself, not a worker.
_PROMETHEUS_OWN = {"up"}


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


def _exported_names(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in ("_total", "_bucket", "_sum", "_count"))
        names.update(sample.name for sample in family.samples)
    return names


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load((_REPO / "infra" / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}", "", expr)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels))
    return {w for w in words if w.startswith("loopwise_")} | (words & _PROMETHEUS_OWN)


def test_live_worker_exports_every_metric_of_the_dashboard_and_rules(settings: Settings, tmp_path: Path) -> None:
    apply_topics(settings)
    # Only the metrics stage (every metric family is registered whichever stages run): a quicker start.
    with running_worker(settings, tmp_path / "worker.log", {"LOOPWISE_STAGES": "metrics"}) as worker:
        port = worker.metrics_port
        wait_until(lambda: _status(port, "/healthz") == 200, 60, interval_s=0.2, message="no /healthz")
        wait_until(lambda: _status(port, "/readyz") == 200, 60, interval_s=0.5,
                   message=lambda: f"/readyz = {_status(port, '/readyz')}; log:\n{worker.log_tail()}")
        policy = RoutingPolicy("support-bot", "summarize/public", T0, 3, "bandit-1",
                               (RouteProbability("gpt-large", 0.75, 0.7, 0.1, 40),))
        produce_tracked(settings, [(settings.topic("decisions.routing"), b"support-bot/summarize/public",
                                    json_codec(RoutingPolicy).encode(policy))])
        wait_until(lambda: worker.metric("loopwise_route_share", workflow="support-bot", segment="summarize/public",
                                         route="gpt-large") == 0.75, 60, interval_s=0.2,
                   message=lambda: f"no route share; log:\n{worker.log_tail()}")
        exported = _exported_names(port)
        assert _status(port, "/nothing") == 404
    queries = expressions() + _rule_expressions()
    named = set().union(*(_metric_names(q) for q in queries))
    assert len(named) >= 20
    missing = sorted(n for n in named - _PROMETHEUS_OWN if n not in exported)
    assert not missing, f"metrics named by the dashboard or the rules but not exported: {missing}"
