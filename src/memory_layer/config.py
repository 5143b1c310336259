"""Settings: every knob is a `MEMORY_*` environment variable (see .env.example)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from memory_layer.kit.crypto import EncryptionKeyRing
from memory_layer.models.message import Kind
from memory_layer.models.policy import AuditLevel, PiiMode


class Environment(StrEnum):
    development = "development"
    production = "production"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class EmbeddingProviderName(StrEnum):
    local = "local"
    google_gemini = "google_gemini"
    fake = "fake"


# Names the earlier AI Memory Layer README used for the providers.
PROVIDER_ALIASES = {
    "sentence_transformer": EmbeddingProviderName.local,
    "mock": EmbeddingProviderName.fake,
}


class LanguageProviderName(StrEnum):
    """What distils summaries and facts (consolidation/providers/)."""

    extractive = "extractive"
    gemini = "gemini"
    openai_compatible = "openai_compatible"


class LocalBackend(StrEnum):
    """The engine that runs the local model (docs/benchmarks.md compares them)."""

    torch = "torch"
    onnx = "onnx"
    onnx_int8 = "onnx-int8"
    torch_bf16 = "torch-bf16"


class SearchFusion(StrEnum):
    weighted = "weighted"
    rrf = "rrf"


class KeywordScoring(StrEnum):
    """How the keyword side of search scores a message (docs/evaluation.md has the measurements)."""

    bm25 = "bm25"
    cover_density = "cover_density"


class ContextVectors(StrEnum):
    """Whether each turn also gets a vector in context, and how search uses it (docs/evaluation.md)."""

    off = "off"
    max = "max"
    mean = "mean"


class RetentionAction(StrEnum):
    archive = "archive"
    delete = "delete"


def _split_csv(value: object) -> object:
    """Accept `a,b,c` (what people write in .env files) as well as a JSON list."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


def _split_pairs(value: object) -> object:
    """Accept `fact=4320,summary=720` (what people write in .env files) as well as a JSON object."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("{"):
            import json

            return json.loads(stripped)
        pairs: dict[str, str] = {}
        for item in stripped.split(","):
            if not item.strip():
                continue
            name, separator, number = item.partition("=")
            if not separator:
                raise ValueError(f"expected kind=hours, got {item.strip()!r}")
            pairs[name.strip()] = number.strip()
        return pairs
    return value


CsvList = Annotated[list[str], NoDecode]
# Values that turn a rate limit off (an empty environment variable means "the default", as for
# every setting, so `off` is the way to disable one from the environment).
RATE_LIMIT_OFF = frozenset({"", "off", "none", "0"})
# What the rate limits are in production unless set. A chatbot backend is one client address
# serving many people: 12000 a minute (200/s) from one address is about 2,000 people chatting at
# once (a turn every 30 s, three requests each), more than one 2-core replica embeds; 3000 a
# minute (50/s) per tenant stops a runaway loop of one tenant long before it takes the service.
# In development both are off: a local script is never throttled. docs/operations.md sizes them.
PRODUCTION_RATE_LIMITS = {"global_rate_limit": "12000/minute", "tenant_rate_limit": "3000/minute"}
CsvSecrets = Annotated[list[SecretStr], NoDecode]


class Settings(BaseSettings):
    """Service configuration, read from the environment and an optional `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="MEMORY_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Environment = Environment.development
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    # json: one JSON object per line (for log shippers); console: readable lines.
    log_format: LogFormat = LogFormat.console

    # Storage. Unset database_url means: start the embedded PostgreSQL under data_dir.
    database_url: SecretStr | None = None
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("memory-layer"))
    )
    # Connections per process, opened as requests need them and then kept. Overflow connections
    # (above the pool's size) are closed as soon as they are handed back: under a steady load
    # above the pool's size each one is a new PostgreSQL backend, a fork and a cold catalog
    # cache. 10 + 10 opened 159 backends while 16 clients posted 1,200 messages, and PostgreSQL
    # spent a third of its CPU starting them (docs/benchmarks.md, "Ingestion"); 20 + 0 opens at
    # most 20, and keeps them.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # The pool against the embedded PostgreSQL (no MEMORY_DATABASE_URL), which shares a small
    # machine with the service: every connection is a backend of 8-13 MiB PSS (caches over the 16
    # partitions, its heap, touched buffers), and 16 clients on 2 cores were served as fast with 4
    # to 8 as with 20 (docs/benchmarks.md, "Memory of the embedded PostgreSQL"). db_pool_size is
    # for an external database.
    embedded_db_pool_size: int = Field(default=6, ge=1)
    # shared_buffers of the embedded PostgreSQL: pages it has touched count in its PSS; past it,
    # the operating system's page cache (shared, reclaimable) serves reads.
    embedded_shared_buffers: str = Field(default="32MB", pattern=r"^[1-9][0-9]*(kB|MB|GB)$")
    # Off by default: a dropped connection costs one 503 (and the pool is refreshed) instead of
    # an extra round trip on every request. Turn on behind proxies that drop idle connections.
    db_pool_pre_ping: bool = False
    # How long a request waits for a pooled connection before it fails with 503.
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    # MEMORY_DATABASE_URL points at PgBouncer in transaction mode: no cached or sequentially
    # named prepared statements; HNSW settings read from the database (docs/scaling.md).
    db_transaction_pooler: bool = False
    # None: migrate the embedded database at start-up, leave an external one to `memory-layer migrate`.
    auto_migrate: bool | None = None
    # Hot standbys of MEMORY_DATABASE_URL (PostgreSQL streaming replication), comma-separated:
    # routes that only read (search, listings, history, stats, export) run there; writes, state,
    # keys and everything transactional stay on the primary (docs/scaling.md, "Read replicas").
    database_replica_urls: CsvSecrets = Field(default_factory=list)
    # A replica more than this far behind the primary (seconds of replay) takes no reads.
    replica_max_lag_seconds: float = Field(default=5.0, gt=0)
    # A read carrying a Memory-Consistency-Token waits this long for a replica to replay that far,
    # then goes to the primary.
    replica_wait_ms: int = Field(default=50, ge=0)
    # How often each replica's replay position, lag and reachability are checked.
    replica_check_interval_seconds: float = Field(default=1.0, gt=0)

    # Redis (cache and rate limits); unset means in-process fallbacks.
    redis_url: SecretStr | None = None
    require_redis_in_production: bool = True
    # Every key this service writes starts with it, so deployments can share one Redis.
    redis_key_prefix: str = Field(default="memory-layer", min_length=1)
    # A Redis call that takes longer counts as Redis down (rate limits fail open, caches miss).
    redis_timeout_seconds: float = Field(default=0.5, gt=0)

    # Embeddings.
    embedding_provider: EmbeddingProviderName = EmbeddingProviderName.local
    embedding_dimensions: int = Field(default=384, ge=1, le=16000)
    # Texts per call of the local model. A worker batch (64) is sorted by length and cut into
    # calls of this many: 16 pads little and ran 1.8x the texts/s of one 64-text call
    # (docs/benchmarks.md, "The local model's engines").
    embedding_batch_size: int = Field(default=16, ge=1, le=1024)
    # Dynamic batching of the in-process model (local, fake): concurrent calls of fewer than
    # embed_batch_max texts (inline writes, search queries) share one model call; a call waits at
    # most embed_batch_wait_ms for others, then only for the model. embed_batch_max 1 disables it.
    # 0: no wait of its own; the calls that arrive while the model is busy share its next call
    # (a lone search on an idle model would otherwise pay the whole wait).
    embed_batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    embed_batch_max: int = Field(default=32, ge=1, le=1024)
    # Query vectors kept in memory (LRU, per process); 0 disables the cache.
    query_cache_size: int = Field(default=1024, ge=0)
    # Query vectors shared by every replica in Redis (with MEMORY_REDIS_URL); 0 disables.
    shared_query_cache_ttl_seconds: int = Field(default=86_400, ge=0)
    # Search results cached in Redis per tenant (with MEMORY_REDIS_URL); 0 disables. Every write
    # of the tenant invalidates them; the TTL bounds what a write whose invalidation could not
    # reach Redis leaves behind (docs/architecture.md, "Caches").
    search_cache_ttl_seconds: int = Field(default=30, ge=0)
    # Results larger than this (serialised) are not cached.
    search_cache_max_bytes: int = Field(default=262_144, ge=1)
    local_model_path: Path | None = None
    # torch, onnx, onnx-int8 or torch-bf16: the same weights; the ONNX files are exported at
    # first use into <data_dir>/models. onnx-int8 is the fastest one text at a time (queries),
    # within reach of torch-bf16 on batches, on any CPU, and stays within 0.01 cosine of torch.
    local_backend: LocalBackend = LocalBackend.onnx_int8
    # Intra-op threads of the local model (a fixed number; on ONNX idle ones sleep, never spin).
    local_model_threads: int = Field(default=2, ge=1, le=64)
    # Niceness of the local model's thread (0..19, 0: as the process): under load the event loop
    # that accepts requests gets the CPU before the model.
    local_model_nice: int = Field(default=10, ge=0, le=19)
    gemini_api_key: SecretStr | None = None
    # Encryption at rest of encrypted channels (kit/crypto.py): `id:base64-of-32-bytes,...`, the
    # last key encrypts new rows, every key decrypts its own. Unset: no channel may be encrypted.
    encryption_keys: SecretStr | None = None
    gemini_model: str = "gemini-embedding-001"
    # Unset: Google's endpoint. Set it to reach a proxy or a local stand-in of the Gemini REST API.
    gemini_base_url: str | None = None
    gemini_timeout_seconds: float = Field(default=30.0, gt=0)
    # Retries of one Gemini call on 429/5xx/timeouts (Retry-After honoured), before the worker's own.
    gemini_max_retries: int = Field(default=4, ge=0, le=20)
    gemini_retry_max_seconds: float = Field(default=60.0, gt=0)
    # The Gemini API takes at most 100 texts per batchEmbedContents call.
    gemini_batch_size: int = Field(default=100, ge=1, le=100)
    # Fake provider only: simulated latency per call, so tests and benchmarks can model a slow provider.
    fake_embedding_delay_ms: float = Field(default=0.0, ge=0)

    # Background embeddings. With async_embeddings, POST /v1/messages answers 202 and the worker
    # embeds; without it messages are embedded inline and the worker only picks up retries.
    async_embeddings: bool = False
    # Run the worker inside `memory-layer serve`; turn off when `memory-layer worker` runs apart.
    worker_enabled: bool = True
    worker_batch_size: int = Field(default=64, ge=1, le=1024)
    # After a wake-up, wait this long for more messages so the model sees fuller batches.
    worker_batch_wait_ms: float = Field(default=20.0, ge=0)
    # Safety-net poll when no NOTIFY arrives (a lost listener connection, rows due for a retry).
    worker_poll_seconds: float = Field(default=5.0, gt=0)
    # A claimed batch is the worker's for this long; a killed worker's rows return after it.
    worker_lease_seconds: float = Field(default=120.0, gt=0)
    # On shutdown, how long the worker may take to finish its batch before handing it back.
    worker_shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    embedding_max_attempts: int = Field(default=5, ge=1, le=100)
    embedding_retry_base_seconds: float = Field(default=2.0, gt=0)
    embedding_retry_max_seconds: float = Field(default=600.0, gt=0)

    # Consolidation (consolidation/): facts from user turns and a running summary per conversation,
    # distilled by the worker. extractive: offline rules and the stored embeddings (no model);
    # gemini: generate_content through google-genai; openai_compatible: any chat-completions
    # server (Ollama, vLLM, llama.cpp's server) through httpx.
    language_provider: LanguageProviderName = LanguageProviderName.extractive
    # The model the LLM providers call (gemini: a Gemini model; openai_compatible: the server's).
    language_model: str | None = None
    # gemini: unset is Google's endpoint; openai_compatible: required, e.g.
    # http://127.0.0.1:11434/v1 (the path that /chat/completions is under).
    language_base_url: str | None = None
    # gemini: unset falls back to MEMORY_GEMINI_API_KEY; openai_compatible: sent as a bearer token
    # when set.
    language_api_key: SecretStr | None = None
    language_timeout_seconds: float = Field(default=60.0, gt=0)
    # Retries of one call on 429/5xx/timeouts (Retry-After honoured), before the worker's own.
    language_max_retries: int = Field(default=3, ge=0, le=20)
    language_retry_max_seconds: float = Field(default=60.0, gt=0)
    # Run the consolidation loop beside the embedding worker (in `serve` with
    # MEMORY_WORKER_ENABLED, and in `memory-layer worker`).
    consolidation_enabled: bool = True
    # The tenant policy's defaults (a tenant overrides them in its policy).
    extract_facts: bool = True
    summarize: bool = True
    # A conversation's summary is made again after this many new turns.
    summary_every_turns: int = Field(default=20, ge=1, le=10_000)
    # The most recent turns a summary is made from (with the previous summary, for LLMs).
    summary_window_turns: int = Field(default=200, ge=1, le=5_000)
    # extractive: turns quoted in a summary.
    summary_turns: int = Field(default=5, ge=1, le=50)
    # A new fact at least this similar (cosine) to a current fact of the user, with no subject
    # the rules know, is a duplicate and is not stored.
    fact_duplicate_similarity: float = Field(default=0.92, ge=0.0, le=1.0)
    # Existing facts shown to an LLM to decide add / update / none on a new one.
    fact_candidates: int = Field(default=5, ge=1, le=50)
    consolidation_batch_size: int = Field(default=32, ge=1, le=1024)
    consolidation_poll_seconds: float = Field(default=2.0, gt=0)
    # Inside serve, a batch waits until no request was served for consolidation_idle_ms (0: it
    # does not wait), and at most consolidation_max_defer_seconds while requests keep coming.
    consolidation_idle_ms: int = Field(default=1_000, ge=0)
    consolidation_max_defer_seconds: float = Field(default=60.0, gt=0)
    consolidation_max_attempts: int = Field(default=5, ge=1, le=100)
    consolidation_retry_base_seconds: float = Field(default=5.0, gt=0)
    consolidation_retry_max_seconds: float = Field(default=900.0, gt=0)

    # Auth.
    api_keys: CsvSecrets = Field(default_factory=list)
    admin_api_keys: CsvSecrets = Field(default_factory=list)
    allowed_origins: CsvList = Field(default_factory=list)
    # Key of the HMAC tag on pagination cursors (kit/pagination.py). Set it to the same random
    # value on every replica. Unset, a constant key is used: tampering is still detected, but a
    # client who reads the source can forge a cursor; it still points only inside the caller's
    # own tenant and listing, which the cursor names and every request checks.
    cursor_secret: SecretStr | None = None

    # Rate limits (slowapi's syntax, e.g. "600/minute" or "10/second;600/minute"); "off" disables.
    # Global: per client address; tenant: per tenant a request acts for (whatever the key; routes
    # under /v1/admin count against the global limit only). Counted in Redis when MEMORY_REDIS_URL
    # is set (shared by every replica), in the process otherwise. Unset, they depend on the
    # environment (_rate_limit_defaults): off in development, PRODUCTION_RATE_LIMITS in production.
    global_rate_limit: str = ""
    tenant_rate_limit: str = ""
    # Redis unreachable: serve the request uncounted (true) or answer 503 (false).
    rate_limit_fail_open: bool = True

    # Input limits.
    max_content_chars: int = Field(default=32_000, ge=1)
    max_metadata_bytes: int = Field(default=16_384, ge=2)
    # Messages per POST /v1/messages/batch; its body limit is derived from this (max_batch_body_bytes).
    max_batch_messages: int = Field(default=500, ge=1, le=10_000)
    # A conversation's working-memory document (PUT/PATCH /v1/conversations/{id}/state), as
    # compact UTF-8 JSON; larger is 413 state_too_large.
    max_state_bytes: int = Field(default=65_536, ge=2)
    # A run task's output (PUT /v1/runs/{id}/tasks/{task}/output), as compact UTF-8 JSON; larger
    # is 413 output_too_large. Below the default body limit, so the 413 names this setting.
    max_task_output_bytes: int = Field(default=65_536, ge=2)
    # POST /v1/import: the whole NDJSON body (counted as it streams in, never buffered).
    max_import_bytes: int = Field(default=1 << 30, ge=1)
    # Import lines written per transaction: a bad line costs at most its own chunk.
    import_chunk_lines: int = Field(default=500, ge=1, le=10_000)

    # Scoring: final = w_sim * similarity + w_imp * importance + w_rec * recency.
    score_weight_similarity: float = Field(default=0.7, ge=0)
    score_weight_importance: float = Field(default=0.2, ge=0)
    score_weight_recency: float = Field(default=0.1, ge=0)
    recency_half_life_hours: float = Field(default=24.0 * 7, gt=0)
    # Per-kind half-lives: distilled memories stay relevant far longer than chit-chat. Kinds not
    # listed (by default `message`) use recency_half_life_hours.
    kind_half_life_hours: Annotated[dict[Kind, PositiveFloat], NoDecode] = Field(
        default_factory=lambda: {
            Kind.fact: 4320.0,  # 180 days
            Kind.preference: 4320.0,
            Kind.procedure: 8760.0,  # a year
            Kind.summary: 720.0,  # 30 days
            Kind.event: 720.0,
        }
    )
    # Usage feedback (POST /v1/messages/{id}/usage). Recency counts from the later of a
    # memory's creation and its last use, so a memory in use stays fresh; false: from creation.
    recency_from_last_use: bool = True
    # A memory's score is multiplied by 1 - penalty * failures / (successes + failures + 2):
    # procedures that keep failing rank below ones that work; 0 turns it off.
    search_failure_penalty: float = Field(default=0.5, ge=0.0, le=1.0)
    search_candidate_multiplier: int = Field(default=4, ge=1, le=50)
    # Reciprocal rank fusion constant: fused = 1/(k + vector rank) + 1/(k + keyword rank).
    search_rrf_k: int = Field(default=60, ge=1, le=1000)
    # How hybrid search fuses its two candidate lists (docs/evaluation.md has the measurements):
    # weighted = min(1, cosine similarity + keyword_weight * keyword score); rrf = reciprocal
    # rank fusion.
    search_fusion: SearchFusion = SearchFusion.weighted
    search_keyword_weight: float = Field(default=0.5, ge=0.0, le=10.0)
    # How a message's keyword score is computed; half of it is "every query term matched" either
    # way. bm25: BM25 in SQL, IDF over the rows searched; cover_density: ts_rank_cd, which has no
    # IDF (the default before BM25; docs/evaluation.md compares them).
    search_keyword_scoring: KeywordScoring = KeywordScoring.bm25
    # 200: recall@10 0.98 for a tenant holding half of 1,000,000 rows (docs/benchmarks.md).
    hnsw_ef_search: int = Field(default=200, ge=1, le=1000)
    # Tenants with at most this many messages are searched exactly (every vector compared, via
    # the tenant index): faster than the HNSW graph for them and never misses a neighbour. Larger
    # tenants use the HNSW graph of their partition with iterative scans, unless they hold less
    # than search_exact_min_share of that partition's rows: the graph would then pass over about
    # 1 / share rows of other tenants for each of theirs, and comparing theirs costs less.
    # 0 always uses the index.
    search_exact_max_rows: int = Field(default=2_000, ge=0)
    search_exact_min_share: float = Field(default=0.05, ge=0.0, le=1.0)
    # Query cues (docs/evaluation.md has the measurements): added to the relevance of messages
    # written in the month or day a query names ("in February 2025"), and of messages whose
    # user_id the query names ("What did Maya ..."). 0 turns a cue off.
    search_time_boost: float = Field(default=0.2, ge=0.0, le=1.0)
    search_speaker_boost: float = Field(default=0.1, ge=0.0, le=1.0)
    # A hit that asks a question ("Did you ever make it to Lisbon?") brings the next turn of its
    # conversation ("Yes, last May!") right after it: short answers rarely match a query alone.
    search_answer_expansion: bool = True
    # Conversation context (docs/evaluation.md has the measurements): the turns just before and
    # after each of the n best hits join them with the hit's score times the decay (0: off); rows
    # within the gap of at least two of the five best hits of their conversation get the session
    # boost added to their relevance (0: off).
    search_neighbours: int = Field(default=0, ge=0, le=20)
    search_neighbour_decay: float = Field(default=0.8, ge=0.0, le=1.0)
    search_session_boost: float = Field(default=0.05, ge=0.0, le=1.0)
    search_session_gap_minutes: int = Field(default=180, ge=1)
    # Context vectors (docs/evaluation.md has the measurements): the embedding worker also embeds
    # each turn with the turn before it in its conversation ("previous turn, then the turn") into
    # `context_embedding`, and search compares the query with both vectors of a message: max (the
    # better similarity of the two) or mean (their average). off: no second vector is computed
    # and search reads only the turn's own one. Costs a second model call per turn.
    context_vectors: ContextVectors = ContextVectors.max
    # The serving process's worker fills context vectors only once no request has been served for
    # this long (requests keep the cores; on 2 cores filling beside single POSTs cut their rate
    # by half or more: docs/benchmarks.md). 0: fill as soon as the main queue is empty. A
    # standalone `memory-layer worker` serves no requests and fills at once.
    context_vectors_idle_ms: int = Field(default=1_000, ge=0)
    # While requests keep coming, context vectors wait at most this long, then are filled until
    # none is missing (a client polling a status route must not hold them off for ever).
    context_vectors_max_defer_seconds: float = Field(default=60.0, gt=0)

    # Tenant policy defaults: what a tenant without its own policy (PUT
    # /v1/admin/tenants/{tenant_id}/policy) gets. 0 means none: no TTL, no quota.
    default_ttl_seconds: int = Field(default=0, ge=0)
    quota_messages: int = Field(default=0, ge=0)
    quota_content_bytes: int = Field(default=0, ge=0)
    # Read by the conversation state (working memory): the bytes of state documents per tenant.
    quota_state_bytes: int = Field(default=0, ge=0)
    # Messages one conversation may hold (every kind); a write past it is refused (409).
    quota_messages_per_conversation: int = Field(default=0, ge=0)
    # What the audit log records of a tenant's own requests: admin (operators' actions only),
    # writes (also every write of its data), all (also every read and search).
    audit_level: AuditLevel = AuditLevel.admin
    pii_mode: PiiMode = PiiMode.off
    # Region assumed for phone numbers written without a country code (PII detection).
    pii_phone_region: str = Field(default="US", min_length=2, max_length=2)

    # Retention.
    retention_max_age_days: float = Field(default=90.0, gt=0, le=36_525)
    # With MEMORY_RETENTION_ACTION=archive: also delete messages this old (any importance); 0 never.
    retention_delete_after_days: float = Field(default=0.0, ge=0)
    retention_importance_threshold: float = Field(default=0.5, ge=0, le=1)
    retention_action: RetentionAction = RetentionAction.archive
    retention_schedule_seconds: int = Field(default=0, ge=0)
    retention_tenants: CsvList = Field(default_factory=list)
    # Audit entries older than this many days are deleted by retention runs over all tenants;
    # 0 keeps them forever.
    audit_retention_days: int = Field(default=0, ge=0)

    # Health.
    health_embed_check_enabled: bool = False
    readiness_embed_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator(
        "api_keys", "admin_api_keys", "allowed_origins", "retention_tenants",
        "database_replica_urls", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("embedding_provider", mode="before")
    @classmethod
    def _provider_alias(cls, value: object) -> object:
        if isinstance(value, str):
            return PROVIDER_ALIASES.get(value.strip().lower(), value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _rate_limit_defaults(cls, data: Any) -> Any:
        """Unset rate limits: PRODUCTION_RATE_LIMITS in production, off in development."""
        if not isinstance(data, dict):
            return data
        production = str(data.get("environment", "")).strip().lower() == Environment.production
        unset = {
            name: default if production else "off"
            for name, default in PRODUCTION_RATE_LIMITS.items()
            if data.get(name) is None
        }
        return {**data, **unset} if unset else data

    @field_validator("global_rate_limit", "tenant_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in RATE_LIMIT_OFF:
            return ""
        from limits import parse_many

        parse_many(value)  # ValueError, with the offending text, on a malformed limit
        return value

    @field_validator("kind_half_life_hours", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        return _split_pairs(value)

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        EncryptionKeyRing.parse(value.get_secret_value())  # ValueError naming the entry, never the key
        return value

    def keyring(self) -> EncryptionKeyRing:
        """The MEMORY_ENCRYPTION_KEYS ring (empty when unset)."""
        if self.encryption_keys is None:
            return EncryptionKeyRing({})
        return EncryptionKeyRing.parse(self.encryption_keys.get_secret_value())

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def pool_size(self) -> int:
        """Connections kept per process: MEMORY_EMBEDDED_DB_POOL_SIZE on the embedded server,
        MEMORY_DB_POOL_SIZE on an external one."""
        return self.embedded_db_pool_size if self.uses_embedded_database else self.db_pool_size

    @property
    def max_body_bytes(self) -> int:
        """Largest request body accepted: room for the longest valid content in 4-byte UTF-8."""
        return 4 * self.max_content_chars + 2 * self.max_metadata_bytes + 65_536

    @property
    def max_batch_body_bytes(self) -> int:
        """Largest body of POST /v1/messages/batch: a full batch of the longest valid messages
        (4-byte UTF-8 content, escaped metadata, 1 KiB for the other fields of each item)."""
        per_message = 4 * self.max_content_chars + 2 * self.max_metadata_bytes + 1024
        return self.max_batch_messages * per_message + 65_536

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys or self.admin_api_keys)


class ConfigurationError(RuntimeError):
    """A setting combination the service refuses to start with."""


def check_startup_settings(settings: Settings) -> list[str]:
    """Refuse unsafe production settings; return warnings for development ones."""
    warnings: list[str] = []
    if settings.environment is Environment.production:
        if not settings.api_keys and not settings.admin_api_keys:
            raise ConfigurationError(
                "MEMORY_ENVIRONMENT=production requires API keys: set MEMORY_API_KEYS "
                "(and MEMORY_ADMIN_API_KEYS for admin routes)."
            )
        if settings.require_redis_in_production and settings.redis_url is None:
            raise ConfigurationError(
                "MEMORY_ENVIRONMENT=production requires MEMORY_REDIS_URL while "
                "MEMORY_REQUIRE_REDIS_IN_PRODUCTION is true."
            )
    if settings.database_replica_urls and settings.database_url is None:
        raise ConfigurationError(
            "MEMORY_DATABASE_REPLICA_URLS needs MEMORY_DATABASE_URL: replicas stream from a "
            "primary the operator runs, not from the embedded PostgreSQL."
        )
    if settings.async_embeddings and not settings.worker_enabled:
        warnings.append(
            "MEMORY_ASYNC_EMBEDDINGS=true with MEMORY_WORKER_ENABLED=false: messages stay pending "
            "until a `memory-layer worker` process runs against this database."
        )
    if settings.environment is not Environment.production and not settings.auth_enabled:
        warnings.append(
            "No API keys configured (MEMORY_API_KEYS, MEMORY_ADMIN_API_KEYS): requests without a "
            "key are open until the first tenant key is created. Fine on a laptop, never on a "
            "network."
        )
    if settings.embedding_provider is EmbeddingProviderName.google_gemini and (
        settings.gemini_api_key is None
    ):
        raise ConfigurationError(
            "MEMORY_EMBEDDING_PROVIDER=google_gemini requires MEMORY_GEMINI_API_KEY."
        )
    if settings.language_provider is LanguageProviderName.openai_compatible and not (
        settings.language_base_url and settings.language_model
    ):
        raise ConfigurationError(
            "MEMORY_LANGUAGE_PROVIDER=openai_compatible requires MEMORY_LANGUAGE_BASE_URL and "
            "MEMORY_LANGUAGE_MODEL."
        )
    if (
        settings.language_provider is LanguageProviderName.gemini
        and settings.language_api_key is None
        and settings.gemini_api_key is None
    ):
        raise ConfigurationError(
            "MEMORY_LANGUAGE_PROVIDER=gemini requires MEMORY_LANGUAGE_API_KEY (or "
            "MEMORY_GEMINI_API_KEY)."
        )
    return warnings
