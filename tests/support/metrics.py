"""Reading GET /metrics the way Prometheus does: the exposition text parsed into samples.

Tests never reach into prometheus-client objects (their private attributes change between
versions); they read the text an operator's scraper reads, or `registry.get_sample_value`.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return response.text


def sample_value(exposition: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the sample `name` whose labels are exactly `labels`; None when there is none."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    return None
