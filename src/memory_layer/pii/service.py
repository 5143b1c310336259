"""Find personal data in a text and apply a tenant's PII mode to it.

Kinds and how each is recognised (a candidate pattern, then a check that the value is real):

    email         an address pattern (local part, @, dotted domain with a 2+ letter TLD)
    iban          country code, check digits and BBAN, checked with python-stdnum (mod 97)
    payment_card  13 to 19 digits (spaces or dashes allowed) with a card network's prefix,
                  Luhn-checked with python-stdnum
    us_ssn        AAA-GG-SSSS (dashes or spaces), or 9 digits right after "SSN"/"social
                  security"; python-stdnum applies the SSA rules (no area 000, 666 or 900-999,
                  no group 00, no serial 0000, no advertised numbers)
    ip_address    IPv6 forms and dotted quads, validated by the `ipaddress` module; a quad right
                  after "v", "version", "release", "build", "firmware", "patch", "section",
                  "chapter", "clause", "article", "paragraph" or "§" is a version or a part number
    phone         `phonenumbers`' PhoneNumberMatcher with strict grouping (digits grouped as the
                  country writes them, so a date or an order number is not a phone), numbers
                  without a country code read in MEMORY_PII_PHONE_REGION

Kinds are tried in that order and a later finding overlapping an earlier one is dropped (an
IBAN's digits are no phone number). The measured precision and recall are in docs/pii.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import anyio
import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.us import ssn as stdnum_ssn

from memory_layer.kit.errors import InvalidInput
from memory_layer.models.policy import PiiKind, PiiMode

# The kinds, in the order they are tried, with the placeholder that replaces each in redact mode.
PLACEHOLDERS: dict[str, str] = {
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "payment_card": "[CARD]",
    "us_ssn": "[SSN]",
    "ip_address": "[IP_ADDRESS]",
    "phone": "[PHONE]",
}
KINDS = tuple(PLACEHOLDERS)
assert tuple(kind.value for kind in PiiKind) == KINDS


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


Span = tuple[int, int]

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
# Country code, check digits, then 11 to 30 letters and digits, optionally in groups of four.
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,34}")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
SSN_DASHED = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
SSN_NAMED = re.compile(r"(?i:\bssn\b|social security(?: number| no\.?| #)?)\D{0,12}?(\d{9})(?!\d)")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
# Dotted numbers that name a version or a numbered part, not an address.
VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\bversion|\bver\.?|\brelease|\bbuild|\bfirmware|\bpatch|\bsection|\bchapter"
    r"|\bclause|\barticle|\bparagraph|§)\s*$"
)

# Issuer prefixes (IIN ranges) of the card networks, and their lengths: Visa, Mastercard,
# American Express, Discover, JCB, Diners Club, UnionPay, Maestro.
CARD_NETWORKS: tuple[tuple[tuple[int, int], int, frozenset[int]], ...] = (
    ((4, 4), 1, frozenset({13, 16, 19})),
    ((51, 55), 2, frozenset({16})),
    ((2221, 2720), 4, frozenset({16})),
    ((34, 34), 2, frozenset({15})),
    ((37, 37), 2, frozenset({15})),
    ((6011, 6011), 4, frozenset({16, 19})),
    ((644, 649), 3, frozenset({16, 19})),
    ((65, 65), 2, frozenset({16, 19})),
    ((3528, 3589), 4, frozenset({16, 19})),
    ((300, 305), 3, frozenset({14, 16})),
    ((36, 36), 2, frozenset({14, 16})),
    ((38, 39), 2, frozenset({14, 16})),
    ((62, 62), 2, frozenset({16, 17, 18, 19})),
    ((50, 50), 2, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ((56, 58), 2, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    ((67, 67), 2, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
)


def _emails(text: str, _: str) -> Iterator[Span]:
    for match in EMAIL.finditer(text):
        yield match.span()


def _ibans(text: str, _: str) -> Iterator[Span]:
    for match in IBAN.finditer(text):
        candidate = match.group()
        # The pattern may run on into a following word in capitals: try shorter ends, at
        # character boundaries, until the checksum holds.
        for end in range(len(candidate), 14, -1):
            piece = candidate[:end]
            if piece.endswith(" ") or (end < len(candidate) and candidate[end] != " "):
                continue
            if stdnum_iban.is_valid(piece):
                yield match.start(), match.start() + end
                break


def _is_card_number(digits: str) -> bool:
    for (low, high), width, lengths in CARD_NETWORKS:
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return luhn.is_valid(digits)
    return False


def _cards(text: str, _: str) -> Iterator[Span]:
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and _is_card_number(digits):
            yield match.span()


def _ssns(text: str, _: str) -> Iterator[Span]:
    for match in SSN_DASHED.finditer(text):
        if stdnum_ssn.is_valid(match.group(1) + match.group(3) + match.group(4)):
            yield match.span()
    for match in SSN_NAMED.finditer(text):
        if stdnum_ssn.is_valid(match.group(1)):
            yield match.span(1)


def _ip_addresses(text: str, _: str) -> Iterator[Span]:
    # IPv6 first: an IPv4-mapped address (::ffff:192.0.2.128) is one finding, not a quad in it.
    for match in IPV6.finditer(text):
        candidate = match.group()
        if candidate.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield match.span()
    for match in IPV4.finditer(text):
        # Only the few characters before the quad: searching the whole prefix would make long
        # texts quadratic.
        if VERSION_BEFORE.search(text[max(0, match.start() - 24):match.start()]):
            continue
        try:
            ipaddress.IPv4Address(match.group())
        except ValueError:
            continue
        yield match.span()


def _phones(text: str, region: str) -> Iterator[Span]:
    for match in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.STRICT_GROUPING
    ):
        yield match.start, match.end


DETECTORS: dict[str, Callable[[str, str], Iterator[Span]]] = {
    "email": _emails,
    "iban": _ibans,
    "payment_card": _cards,
    "us_ssn": _ssns,
    "ip_address": _ip_addresses,
    "phone": _phones,
}


def find_pii(text: str, *, phone_region: str = "US") -> list[Finding]:
    """Every finding in `text`, in order of position; none overlaps another."""
    taken: list[Finding] = []
    for kind in KINDS:
        for start, end in DETECTORS[kind](text, phone_region):
            if any(start < other.end and other.start < end for other in taken):
                continue
            taken.append(Finding(kind, start, end))
    return sorted(taken, key=lambda finding: finding.start)


def redact(text: str, findings: list[Finding]) -> str:
    """`text` with each finding replaced by its kind's placeholder."""
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position:finding.start])
        parts.append(PLACEHOLDERS[finding.kind])
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


class PiiRejected(InvalidInput):
    """422: the content holds personal data and the tenant's PII mode is reject."""

    code = "pii_rejected"

    def __init__(self, kinds: list[str], where: str | None = None) -> None:
        prefix = f"{where}: " if where else ""
        self.message = (
            f"{prefix}the content holds personal data ({', '.join(kinds)}); this tenant's PII "
            "mode is reject"
        )
        detail: dict[str, object] = {"message": self.message, "kinds": kinds}
        if where:
            detail["where"] = where
        super().__init__(detail)


@dataclass(frozen=True)
class Screened:
    """A content after the PII mode: the text to store and embed, and the kinds found in it."""

    content: str
    kinds: list[str]


async def screen_all(
    contents: Sequence[str], mode: PiiMode, *, phone_region: str = "US", where: str | None = None
) -> list[Screened]:
    """`screen` for each text, in a worker thread (phone matching costs about 8 µs per character,
    a quarter of a second for the longest content: never on the event loop). `where` names the
    list in errors: `messages` gives `messages[3]`."""
    if mode is PiiMode.off:
        return [Screened(content, []) for content in contents]

    def run() -> list[Screened]:
        return [
            screen(
                content, mode, phone_region=phone_region,
                where=f"{where}[{index}]" if where is not None else None,
            )
            for index, content in enumerate(contents)
        ]

    return await anyio.to_thread.run_sync(run)


def screen(
    content: str, mode: PiiMode, *, phone_region: str = "US", where: str | None = None
) -> Screened:
    """Apply a PII mode to a message's content: off leaves it; detect records the kinds; redact
    replaces each finding with its placeholder; reject raises 422 `pii_rejected` naming the
    kinds (never the values). `where` prefixes the error (a batch item, an import line)."""
    if mode is PiiMode.off:
        return Screened(content, [])
    findings = find_pii(content, phone_region=phone_region)
    kinds = sorted({finding.kind for finding in findings}, key=KINDS.index)
    if mode is PiiMode.reject and kinds:
        raise PiiRejected(kinds, where)
    if mode is PiiMode.redact and findings:
        return Screened(redact(content, findings), kinds)
    return Screened(content, kinds)
