"""docs/monitoring: Prometheus rules and their unit tests, the scrape config, the Grafana dashboard;
and promtool's lint of a live /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from memory_layer.config import Settings
from tests.fixtures.app import running_client
from tests.fixtures.tenants import tenant_key
from tests.support.metrics import scrape
from tests.support.promtool import check_metrics, run_promtool

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "docs" / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "memory-layer.json"
METRIC_NAME = re.compile(r"\b(memory_[a-z0-9_]+|up)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series the dashboard and rules read that this tree does not export: the Redis cache's and the
# rate limiter's counters (named here, exported by those components), and Prometheus's own `up`.
EXPORTED_ELSEWHERE = {
    "memory_cache_hits_total",
    "memory_cache_misses_total",
    "memory_rate_limited_requests_total",
    "up",
}


async def live_exposition(settings: Settings, key: str, tenant: str) -> str:
    async with running_client(settings, headers={"X-API-Key": key}) as client:
        # Move every kind of series: a write, both searches, a 404, a 422 and an unmatched path.
        created = await client.post(
            "/v1/messages", json={"conversation_id": "c", "role": "user", "content": "hello"}
        )
        assert created.status_code == 200
        await client.get("/v1/memory/search", params={"query": "hello"})
        await client.post("/v1/memory/search", json={"query": "hello"})
        await client.get("/v1/messages/00000000-0000-0000-0000-000000000000")
        await client.post("/v1/messages", json={})
        await client.get("/no/such/path")
        return await scrape(client)


async def test_live_metrics_pass_promtool_check_metrics(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    exposition = await live_exposition(settings_factory(), await tenant_key(db_engine, tenant), tenant)
    assert check_metrics(exposition) == ""
    families = {family.name for family in text_string_to_metric_families(exposition)}
    assert {
        "memory_http_requests",
        "memory_embedding_queue_messages",
        "memory_embedding_queue_oldest_pending_age_seconds",
        "memory_db_pool_connections",
        "memory_db_pool_max_connections",
        "memory_readiness_check_up",
        "memory_searches",
        "memory_search_results",
    } <= families


def test_promtool_check_metrics_finds_a_misnamed_counter() -> None:
    bad = "# HELP memory_things Things.\n# TYPE memory_things counter\nmemory_things 1\n"
    assert "_total" in check_metrics(bad)


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = run_promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_alerts_the_operators_expect_are_there_and_tested() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alerts == {
        "MemoryLayerHighErrorRate",
        "MemoryLayerSearchSlow",
        "MemoryLayerEmbeddingQueueStalled",
        "MemoryLayerEmbeddingsFailed",
        "MemoryLayerNotReady",
        "MemoryLayerTargetDown",
    }
    unit_tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
    fired = {
        case["alertname"]
        for test in unit_tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == alerts, "every alert needs a unit test in which it fires"


def test_prometheus_config_passes_promtool_check_config() -> None:
    checked = run_promtool("check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def base_name(sample: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


async def test_dashboard_and_rules_read_only_series_that_exist(
    settings_factory: Callable[..., Settings], db_engine: AsyncEngine, tenant: str
) -> None:
    exposition = await live_exposition(settings_factory(), await tenant_key(db_engine, tenant), tenant)
    exported = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    # The worker's series appear once it has worked; their names are declared all the same.
    exported |= {"memory_worker_embeddings_total", "memory_worker_messages_failed_total"}
    exported |= set(re.findall(r"^# TYPE (\S+)", exposition, re.MULTILINE))
    rules = (PROMETHEUS / "alerts.yml").read_text()
    expressions = [*dashboard_expressions(), rules]
    named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    unknown = {
        name for name in named - EXPORTED_ELSEWHERE
        if name not in exported and base_name(name) not in exported
    }
    assert not unknown, f"the dashboard or the rules read series nobody exports: {sorted(unknown)}"


def test_dashboard_has_the_panels_operators_look_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in (
        "request rate", "errors", "latency p95 by route", "search latency", "queue depth",
        "oldest pending", "worker throughput", "provider errors", "cache hit rate",
        "rate-limited", "database pool", "searches by mode", "results per search",
        "degraded search", "search result cache",
    ):
        assert wanted in titles, wanted
    expressions = " ".join(dashboard_expressions())
    for series in ("memory_cache_hits_total", "memory_rate_limited_requests_total"):
        assert series in expressions
    datasource_uids = {
        panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel
    }
    provisioned = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource_uids == {source["uid"] for source in provisioned["datasources"]}
