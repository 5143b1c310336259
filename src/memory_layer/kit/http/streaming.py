"""Streamed NDJSON responses whose body iterator is always closed, even when the client leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Send


class NDJSONResponse(StreamingResponse):
    """One JSON document per line (`application/x-ndjson`), sent as the iterator yields.

    Starlette abandons the iterator when the client disconnects; closing it here (shielded from
    that cancellation) lets it release what it holds, such as a database cursor.
    """

    # Set per instance, not on the class: FastAPI would otherwise document the route's error
    # answers (JSON) under this media type too.
    media_type = None

    def __init__(
        self,
        content: AsyncIterator[bytes],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            content, status_code=status_code, headers=headers, media_type="application/x-ndjson"
        )
        self._source = content

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
