"""Prometheus metrics, one registry per app (no process-global state, tests build many apps).

Names follow Prometheus conventions (`promtool check metrics` runs on a live /metrics in the
tests): base units in the name (`_seconds`, `_bytes`, `_messages`, `_connections`), `_total` on
counters, rates left to PromQL's rate() instead of being exported as gauges.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.pool import Pool, QueuePool

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Results per search: top_k is at most 100 (answer expansion may add a few).
SEARCH_RESULT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100)
BATCH_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "memory_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "memory_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.messages_ingested = Counter(
            "memory_messages_ingested_total",
            "Messages stored (idempotent replays excluded).",
            ["role"],
            registry=self.registry,
        )
        self.embedding_seconds = Histogram(
            "memory_embedding_duration_seconds",
            "Time spent in the embedding provider per call.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.embedding_errors = Counter(
            "memory_embedding_errors_total",
            "Embedding provider failures by provider and kind (rate_limited, unavailable, ...).",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "memory_embedding_queue_messages",
            "Messages waiting for an embedding (pending) or given up on (failed).",
            ["status"],
            registry=self.registry,
        )
        self.queue_oldest_age = Gauge(
            "memory_embedding_queue_oldest_pending_age_seconds",
            "How long the longest-waiting due message has waited for a worker (0: none waits).",
            registry=self.registry,
        )
        self.worker_batch_size = Histogram(
            "memory_worker_batch_messages",
            "Messages per batch the embedding worker claimed.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.worker_batch_seconds = Histogram(
            "memory_worker_batch_duration_seconds",
            "Time from claiming a batch to committing its vectors.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.worker_embeddings = Counter(
            "memory_worker_embeddings_total",
            "Vectors the worker wrote (rate() gives embeddings per second).",
            ["model"],
            registry=self.registry,
        )
        self.worker_failed_rows = Counter(
            "memory_worker_messages_failed_total",
            "Messages that used up MEMORY_EMBEDDING_MAX_ATTEMPTS and were marked failed.",
            registry=self.registry,
        )
        self.consolidation_facts = Counter(
            "memory_consolidation_facts_total",
            "Facts extracted by consolidation, by what reconciliation did with them (add, update: "
            "superseded an older fact, none: already known).",
            ["action"],
            registry=self.registry,
        )
        self.consolidation_summaries = Counter(
            "memory_consolidation_summaries_total",
            "Conversation summaries made or replaced.",
            registry=self.registry,
        )
        self.consolidation_errors = Counter(
            "memory_consolidation_errors_total",
            "Failed language-provider calls of consolidation, by provider and kind; the turns stay "
            "queued and are tried again.",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.consolidation_failed_rows = Counter(
            "memory_consolidation_messages_failed_total",
            "Turns that used up MEMORY_CONSOLIDATION_MAX_ATTEMPTS and were marked failed.",
            registry=self.registry,
        )

        self.readiness = Gauge(
            "memory_readiness_check_up",
            "1 when the readiness check (database, migrations, redis) passed at the last scrape.",
            ["check"],
            registry=self.registry,
        )
        self.db_pool_connections = Gauge(
            "memory_db_pool_connections",
            "Connections of this process's database pool: in_use (checked out) or idle.",
            ["state"],
            registry=self.registry,
        )
        self.db_pool_max_connections = Gauge(
            "memory_db_pool_max_connections",
            "Most connections the pool opens (MEMORY_DB_POOL_SIZE + MEMORY_DB_MAX_OVERFLOW).",
            registry=self.registry,
        )

        self.db_reads = Counter(
            "memory_db_reads_total",
            "Read requests (ReadSessionDep) by the server that ran them: primary or replica-N.",
            ["target"],
            registry=self.registry,
        )
        self.replica_fallbacks = Counter(
            "memory_db_replica_fallbacks_total",
            "Reads sent to the primary with replicas configured, by reason (no_healthy_replica, "
            "behind_token, replica_failed).",
            ["reason"],
            registry=self.registry,
        )
        self.replica_up = Gauge(
            "memory_db_replica_up",
            "1 while a read replica takes reads (answers, in recovery, within the lag bound).",
            ["replica"],
            registry=self.registry,
        )
        self.replica_lag = Gauge(
            "memory_db_replica_lag_seconds",
            "How far a read replica's replay trails the primary, at the last check.",
            ["replica"],
            registry=self.registry,
        )

        self.rate_limited = Counter(
            "memory_rate_limited_requests_total",
            "Requests refused with 429 by scope (global: per client address; tenant).",
            ["scope"],
            registry=self.registry,
        )
        self.rate_limit_storage_errors = Counter(
            "memory_rate_limit_storage_errors_total",
            "Requests whose rate limit could not be counted (Redis unreachable), by scope.",
            ["scope"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "memory_cache_hits_total",
            "Cache look-ups that found an entry, by cache.",
            ["cache"],
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "memory_cache_misses_total",
            "Cache look-ups that found nothing, by cache.",
            ["cache"],
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "memory_cache_errors_total",
            "Cache operations that failed (Redis unreachable), by cache; the request went on uncached.",
            ["cache"],
            registry=self.registry,
        )

        self.searches = Counter(
            "memory_searches_total",
            "Searches answered (the search routes, /v1/context, MCP, the consolidation worker's "
            "look-ups), by the mode that produced the answer, whether it came from the search "
            "result cache, and whether it was degraded.",
            ["mode", "cached", "degraded"],
            registry=self.registry,
        )
        self.search_results = Histogram(
            "memory_search_results",
            "Results returned per search, by the mode that produced them.",
            ["mode"],
            buckets=SEARCH_RESULT_BUCKETS,
            registry=self.registry,
        )
        self.search_degraded = Counter(
            "memory_search_degraded_total",
            "Searches answered in a lesser mode than asked (a hybrid search answered from keywords "
            "when the embedding provider failed), by reason.",
            ["reason"],
            registry=self.registry,
        )

    def observe_search(self, mode: str, results: int, *, cached: bool, degraded: str | None) -> None:
        """Count one answered search."""
        self.searches.labels(
            mode=mode, cached=str(cached).lower(), degraded=str(degraded is not None).lower()
        ).inc()
        self.search_results.labels(mode=mode).observe(results)
        if degraded is not None:
            # The reason's kind (`embedding_failed`), never its text: labels stay few.
            self.search_degraded.labels(reason=degraded.split(":", 1)[0]).inc()

    def observe_pool(self, pool: Pool, max_connections: int) -> None:
        """Read the pool's counts into the gauges (at scrape time)."""
        if not isinstance(pool, QueuePool):  # NullPool and the like hold nothing to report
            return
        self.db_pool_connections.labels(state="in_use").set(pool.checkedout())
        self.db_pool_connections.labels(state="idle").set(pool.checkedin())
        self.db_pool_max_connections.set(max_connections)

    def render(self) -> bytes:
        return generate_latest(self.registry)
