"""The production stack, checked statically (no Docker engine here): compose, Dockerfile, Prometheus, Grafana."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from streams.stages import STAGES

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def settings_variables() -> set[str]:
    text = (INFRA / "settings.py").read_text()
    return set(re.findall(r'"((?:KAFKA|LOOPWISE)_[A-Z0-9_]+)"', text))


def test_compose_has_the_whole_stack_and_workers_split_by_stage() -> None:
    services = compose()["services"]
    assert {"kafka", "schema-registry", "kafka-ui", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["kafka-ui"]["image"].startswith("ghcr.io/kafbat/kafka-ui:")
    workers = {n: s for n, s in services.items() if s.get("environment", {}).get("LOOPWISE_STAGES")}
    known = {stage.name for stage in STAGES}
    stages = [x for s in workers.values() for x in s["environment"]["LOOPWISE_STAGES"].split(",")]
    assert len(workers) >= 3 and set(stages) <= known and len(stages) == len(set(stages))
    for service in services.values():
        assert ":" in service.get("image", "x:pinned") and not service.get("image", "").endswith(":latest")


def test_compose_environment_is_what_settings_reads() -> None:
    known = settings_variables()
    assert {"KAFKA_BOOTSTRAP_SERVERS", "LOOPWISE_STAGES", "LOOPWISE_LAKE_DIR", "LOOPWISE_RECEIVERS_FILE"} <= known
    for name, service in compose()["services"].items():
        if service.get("image") != "loopwise:local":
            continue
        for variable in service["environment"]:
            if variable.startswith("LOOPWISE_RECEIVER_"):
                continue  # secrets the receivers file names (Settings reads the whole prefix)
            assert variable in known, f"{name}: {variable} is not a variable Settings reads"


def test_compose_mounts_and_builds_only_what_exists_and_ports_do_not_clash() -> None:
    doc = compose()
    host_ports: list[int] = []
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name}: mounts missing {source}"
            else:
                assert source in doc["volumes"], f"{name}: unknown named volume {source}"
        for port in service.get("ports", []):
            host, container = (int(x) for x in str(port).split(":"))
            assert 0 < host < 65536 and 0 < container < 65536
            host_ports.append(host)
        build = service.get("build")
        if build:
            assert (INFRA / build["context"] / build["dockerfile"]).is_file()
    assert len(host_ports) == len(set(host_ports))


def test_dockerfile_is_multi_stage_pinned_non_root_and_uses_the_constraints() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert base and re.search(r":3\.11\.\d+-", base.group(1))
    assert re.search(r"^USER loopwise$", text, re.M) and "-c constraints.txt" in text
    for copied in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"


def test_prometheus_scrapes_every_worker_and_grafana_is_provisioned() -> None:
    services = compose()["services"]
    prometheus = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] if job["job_name"] == "loopwise"
               for config in job["static_configs"] for t in config["targets"]}
    workers = {n for n, s in services.items() if s.get("environment", {}).get("LOOPWISE_STAGES")}
    assert targets == {f"{w}:9464" for w in workers}
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(prometheus["rule_files"]) <= mounted
    provider = yaml.safe_load((INFRA / "grafana" / "provisioning" / "dashboards" / "loopwise.yml").read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert any(v.endswith(":" + dashboards_dir + ":ro") for v in services["grafana"]["volumes"])
    datasource = yaml.safe_load((INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
