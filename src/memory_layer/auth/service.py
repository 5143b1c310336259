"""API keys: who is calling, for which tenant, with which rights (scopes).

Every route declares the scope it needs: `read` (searches, listings, reads), `write` (store, edit,
delete, import) or `admin` (/v1/admin/*). Keys from MEMORY_API_KEYS act for any tenant with read
and write; keys from MEMORY_ADMIN_API_KEYS hold every scope. Stored keys (created with `POST
/v1/admin/keys` or `memory-layer keys create`, kept as SHA-256 hashes) carry their own scopes, may
be bound to one tenant (then they act only for it) and may expire. Every comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from memory_layer.audit import service as audit
from memory_layer.auth.repository import NEWEST_FIRST, ApiKeyRepository
from memory_layer.config import Environment, Settings
from memory_layer.kit.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from memory_layer.kit.pagination import CursorCodec, Page, PageRequest, Scope, paginate
from memory_layer.models.api_key import ApiKey, KeyScope
from memory_layer.models.audit import AuditAction

KEY_PREFIX = "mlk_"
ALL_SCOPES = frozenset(KeyScope)
# What the keys of MEMORY_API_KEYS (and stored keys created without scopes) may do.
DEFAULT_SCOPES = frozenset({KeyScope.read, KeyScope.write})


@dataclass(frozen=True)
class Principal:
    """The caller: `tenant_id` None means any tenant; `key_id` is set for stored keys."""

    tenant_id: str | None
    scopes: frozenset[KeyScope]
    label: str
    key_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return KeyScope.admin in self.scopes


def _sorted(scopes: Iterable[str]) -> list[KeyScope]:
    held = {KeyScope(scope) for scope in scopes}
    return [scope for scope in KeyScope if scope in held]


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """Hashes of the configured keys, computed once per app instead of on every request."""

    admin_hashes: tuple[str, ...]
    service_hashes: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        return cls(
            admin_hashes=tuple(hash_key(k.get_secret_value()) for k in settings.admin_api_keys),
            service_hashes=tuple(hash_key(k.get_secret_value()) for k in settings.api_keys),
        )


def _matches_any(presented_hash: str, configured: tuple[str, ...]) -> bool:
    found = False
    for candidate in configured:  # no early exit: the time does not depend on which key matched
        found |= hmac.compare_digest(presented_hash, candidate)
    return found


async def authenticate(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    key_ring: KeyRing,
    presented: str | None,
) -> Principal:
    """Resolve the X-API-Key header to a principal, or raise 401.

    A configured key (MEMORY_API_KEYS, MEMORY_ADMIN_API_KEYS) is matched in memory; a session is
    opened from `sessions` (read sessions, each closed before the route runs) only for what the
    database must answer: a tenant key's look-up, or whether any key exists yet.
    """
    if presented is None or presented == "":
        # Open only while no key exists anywhere: creating the first tenant key closes the door.
        if not settings.auth_enabled and settings.environment is Environment.development:
            async with sessions() as session:
                if not await ApiKeyRepository(session).any_active():
                    return Principal(tenant_id=None, scopes=ALL_SCOPES, label="open-development")
        raise Unauthenticated("send an API key in the X-API-Key header", code="missing_api_key")
    presented_hash = hash_key(presented)
    if _matches_any(presented_hash, key_ring.admin_hashes):
        return Principal(tenant_id=None, scopes=ALL_SCOPES, label="admin-key")
    if _matches_any(presented_hash, key_ring.service_hashes):
        return Principal(tenant_id=None, scopes=DEFAULT_SCOPES, label="service-key")
    if presented.startswith(KEY_PREFIX):
        async with sessions() as session:
            found = await ApiKeyRepository(session).find_active_by_hash(presented_hash)
        if found is not None and hmac.compare_digest(found.key.key_hash, presented_hash):
            if found.expired:
                raise Unauthenticated("the API key has expired", code="expired_api_key")
            stored = found.key
            return Principal(
                tenant_id=stored.tenant_id,
                scopes=frozenset(KeyScope(scope) for scope in stored.scopes),
                label=f"key:{stored.id}",
                key_id=stored.id,
            )
    raise Unauthenticated("the API key is not valid (or was revoked)", code="invalid_api_key")


def resolve_tenant(principal: Principal, requested: str | None) -> str:
    """The tenant a request acts for: the key's own, or the one asked for if the key allows it."""
    if principal.tenant_id is not None:
        if requested is not None and requested != principal.tenant_id:
            raise Forbidden(
                f"this API key may only act for tenant {principal.tenant_id!r}",
                code="tenant_mismatch",
            )
        return principal.tenant_id
    if requested is None:
        raise InvalidInput("tenant_id is required with this API key", code="tenant_required")
    return requested


def require_scope(principal: Principal, scope: KeyScope) -> None:
    """403 `insufficient_scope`, naming the scope, unless the key holds it."""
    if scope not in principal.scopes:
        held = ", ".join(_sorted(principal.scopes))
        raise Forbidden(
            {"required_scope": scope.value, "message": f"this route needs an API key with the "
             f"{scope.value!r} scope; this key has: {held}"},
            code="insufficient_scope",
        )


def require_admin(principal: Principal) -> None:
    require_scope(principal, KeyScope.admin)


async def create_api_key(
    session: AsyncSession,
    tenant_id: str | None,
    name: str,
    *,
    scopes: Iterable[KeyScope] = DEFAULT_SCOPES,
    expires_at: datetime | None = None,
    actor: audit.Actor = audit.CLI,
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned once and never stored. Audited (`key.created`)."""
    chosen = frozenset(scopes)
    if not chosen:
        raise InvalidInput("a key needs at least one scope", code="invalid_scopes")
    if KeyScope.admin in chosen and tenant_id is not None:
        raise InvalidInput(
            "the admin scope acts across tenants: a key bound to a tenant cannot hold it",
            code="invalid_scopes",
        )
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=tenant_id,
        id=uuid.uuid4(),
        name=name,
        key_prefix=plaintext[:12],
        key_hash=hash_key(plaintext),
        scopes=_sorted(chosen),
        expires_at=expires_at,
    )
    await ApiKeyRepository(session).add(key)
    await audit.record(
        session,
        AuditAction.key_created,
        actor=actor,
        tenant_id=tenant_id,
        target=f"key:{key.id}",
    )
    return key, plaintext


async def list_api_keys(session: AsyncSession, tenant_id: str | None) -> list[ApiKey]:
    """Stored keys (all tenants' when `tenant_id` is None); never their secrets."""
    return await ApiKeyRepository(session).list(tenant_id)


async def list_api_keys_page(
    session: AsyncSession,
    *,
    tenant_id: str | None,
    include_revoked: bool,
    limit: int,
    cursor: str | None,
    cursors: CursorCodec,
) -> Page[ApiKey]:
    """Stored keys, newest first, a page at a time; never their secrets or hashes."""
    scope: Scope = {"listing": "api_keys", "tenant_id": tenant_id, "include_revoked": include_revoked}
    return await paginate(
        session,
        ApiKeyRepository(session).listing(tenant_id=tenant_id, include_revoked=include_revoked),
        pagination=PageRequest(limit, cursor),
        keyset=NEWEST_FIRST,
        codec=cursors,
        scope=scope,
    )


async def revoke_api_key(
    session: AsyncSession, key_id: uuid.UUID, *, actor: audit.Actor = audit.CLI
) -> ApiKey | None:
    """Revoke a key (audited, `key.revoked`); None when no active key has that id."""
    key = await ApiKeyRepository(session).revoke(key_id)
    if key is not None:
        await audit.record(
            session,
            AuditAction.key_revoked,
            actor=actor,
            tenant_id=key.tenant_id,
            target=f"key:{key.id}",
        )
    return key


async def revoke_api_key_or_404(
    session: AsyncSession, key_id: uuid.UUID, *, actor: Principal
) -> ApiKey:
    """Revoke a key; 404 `key_not_found` when no active key has that id."""
    key = await revoke_api_key(session, key_id, actor=actor)
    if key is None:
        raise NotFound(f"no active API key has id {key_id}", code="key_not_found")
    return key
