"""Domain errors: each carries an HTTP status and a stable machine-readable code.

Services raise these; `kit/http/errors.py` turns them into `{"error": code, "detail": ...}`.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code: int = 400
    code: str = "bad_request"

    def __init__(self, detail: Any = None, *, code: str | None = None) -> None:
        self.detail = detail if detail is not None else self.code.replace("_", " ")
        if code is not None:
            self.code = code
        super().__init__(str(self.detail))


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid_input"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Unauthenticated(DomainError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class ServiceUnavailable(DomainError):
    status_code = 503
    code = "unavailable"


class PayloadTooLarge(DomainError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    status_code = 415
    code = "unsupported_media_type"


class PreconditionFailed(DomainError):
    status_code = 412
    code = "precondition_failed"
