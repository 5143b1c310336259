"""API keys: who is calling, for which tenant, with which rights.

Keys from MEMORY_API_KEYS act for any tenant, keys from MEMORY_ADMIN_API_KEYS also reach admin
routes, and tenant-bound keys (created with `memory-layer keys create --tenant T`, stored as SHA-256
hashes) act only for their tenant. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from memory_layer.auth.repository import ApiKeyRepository
from memory_layer.config import Environment, Settings
from memory_layer.kit.errors import Forbidden, InvalidInput, Unauthenticated
from memory_layer.models.api_key import ApiKey

KEY_PREFIX = "mlk_"


@dataclass(frozen=True)
class Principal:
    """The caller: `tenant_id` None means any tenant."""

    tenant_id: str | None
    is_admin: bool
    label: str


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
    session: AsyncSession, settings: Settings, key_ring: KeyRing, presented: str | None
) -> Principal:
    """Resolve the X-API-Key header to a principal, or raise 401."""
    if presented is None or presented == "":
        # Open only while no key exists anywhere: creating the first tenant key closes the door.
        if (
            not settings.auth_enabled
            and settings.environment is Environment.development
            and not await ApiKeyRepository(session).any_active()
        ):
            return Principal(tenant_id=None, is_admin=True, label="open-development")
        raise Unauthenticated("send an API key in the X-API-Key header", code="missing_api_key")
    presented_hash = hash_key(presented)
    if _matches_any(presented_hash, key_ring.admin_hashes):
        return Principal(tenant_id=None, is_admin=True, label="admin-key")
    if _matches_any(presented_hash, key_ring.service_hashes):
        return Principal(tenant_id=None, is_admin=False, label="service-key")
    if presented.startswith(KEY_PREFIX):
        stored = await ApiKeyRepository(session).find_active_by_hash(presented_hash)
        if stored is not None and hmac.compare_digest(stored.key_hash, presented_hash):
            return Principal(tenant_id=stored.tenant_id, is_admin=False, label=f"key:{stored.id}")
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


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this route needs a key from MEMORY_ADMIN_API_KEYS", code="admin_required")


async def create_api_key(session: AsyncSession, tenant_id: str, name: str) -> tuple[ApiKey, str]:
    """A new tenant-bound key; the plaintext is returned once and never stored."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        tenant_id=tenant_id,
        id=uuid.uuid4(),
        name=name,
        key_prefix=plaintext[:12],
        key_hash=hash_key(plaintext),
    )
    await ApiKeyRepository(session).add(key)
    return key, plaintext


async def list_api_keys(session: AsyncSession, tenant_id: str | None) -> list[ApiKey]:
    """Tenant-bound keys (all tenants' when `tenant_id` is None); never their secrets."""
    return await ApiKeyRepository(session).list(tenant_id)


async def revoke_api_key(session: AsyncSession, key_id: uuid.UUID) -> bool:
    """Revoke a key; False when no active key has that id."""
    return await ApiKeyRepository(session).revoke(key_id)
