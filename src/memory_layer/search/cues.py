"""Cues a query carries besides its meaning, read without a model: the period it names and its words.

    "What did Maya start doing in February 2025?"  -> period [2025-02-01, 2025-03-01), words
                                                      {"what", "did", "maya", ...}

    "On May 4th, what did you recommend?"            -> day (5, 4): the 4th of May of any year

The search adds MEMORY_SEARCH_TIME_BOOST to the relevance of messages written in the named period
(or on the named day of any year)
and MEMORY_SEARCH_SPEAKER_BOOST to messages whose user_id is one of the query's words (a speaker
named in the question); docs/evaluation.md has the measurements behind both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MONTHS = {
    name: number
    for number, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
         ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
         ("october", "oct"), ("november", "nov"), ("december", "dec")],
        start=1,
    )
    for name in names
}
# "February 2025", "in feb. 2025", "3 February 2025", "February 3, 2025", "2025-02", "2025-02-03".
_MONTH_YEAR = re.compile(
    r"\b(?:(?P<day1>\d{1,2})(?:st|nd|rd|th)?\s+)?(?P<month>[a-z]+)\.?\s+(?:(?P<day2>\d{1,2})"
    r"(?:st|nd|rd|th)?,?\s+)?(?P<year>(?:19|20)\d{2})\b",
    re.IGNORECASE,
)
# A day named without its year: "May 4th", "on April 27", "4 May", "the 2nd of May". Not followed
# by a year (that is _MONTH_YEAR's) nor part of a time ("5:30 May"); "may" and "march", which are
# also verbs, count only as "May"/"March" or with an ordinal ("may 4th").
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_MONTH = re.compile(
    rf"\b(?:(?P<month1>{_MONTH_NAMES})\.?\s+(?:the\s+)?(?P<day1>\d{{1,2}})(?P<ord1>st|nd|rd|th)?"
    rf"|(?<![\d:.])(?P<day2>\d{{1,2}})(?P<ord2>st|nd|rd|th)?\s+(?:of\s+)?(?P<month2>{_MONTH_NAMES}))\b"
    r"(?!,?\s*(?:19|20)\d{2}\b)(?![:.]\d)",
    re.IGNORECASE,
)
_VERB_MONTHS = {"may", "march"}
_ISO = re.compile(r"\b(?P<year>(?:19|20)\d{2})-(?P<month>\d{2})(?:-(?P<day>\d{2}))?\b")
_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
_POSSESSIVE = re.compile(r"'s$")


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime  # exclusive


def _period(year: int, month: int, day: int | None) -> Period | None:
    try:
        since = datetime(year, month, day or 1, tzinfo=UTC)
    except ValueError:
        return None
    if day is not None:
        return Period(since, since + timedelta(days=1))
    until = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return Period(since, until)


def named_period(query: str) -> Period | None:
    """The calendar month (or day) the query names with its year, if it names exactly one."""
    found: list[Period] = []
    for match in _MONTH_YEAR.finditer(query):
        month = _MONTHS.get(match["month"].lower())
        if month is None:
            continue
        day = match["day1"] or match["day2"]
        period = _period(int(match["year"]), month, int(day) if day else None)
        if period is not None:
            found.append(period)
    for match in _ISO.finditer(query):
        period = _period(int(match["year"]), int(match["month"]), int(match["day"]) if match["day"] else None)
        if period is not None:
            found.append(period)
    return found[0] if len(set(found)) == 1 else None


def named_day(query: str) -> tuple[int, int] | None:
    """The (month, day) the query names without a year ("On May 4th, ..."), if exactly one and no
    period with its year is named: a chat's "on May 4th" means that day of whichever year."""
    if named_period(query) is not None:
        return None
    found: set[tuple[int, int]] = set()
    for match in _DAY_MONTH.finditer(query):
        name = match["month1"] or match["month2"]
        if name in _VERB_MONTHS and not (match["ord1"] or match["ord2"]):
            continue  # lower-case "may 2": the verb, as likely as the month
        month = _MONTHS[name.lower()]
        day = int(match["day1"] or match["day2"])
        try:
            datetime(2000, month, day)  # a leap year: 29 February is a day
        except ValueError:
            continue
        found.add((month, day))
    return found.pop() if len(found) == 1 else None


def query_words(query: str) -> list[str]:
    """The query's words, lower-cased, possessives cut ("Maya's" -> "maya"), each once."""
    words = (_POSSESSIVE.sub("", word.lower()) for word in _WORD.findall(query))
    return list(dict.fromkeys(word for word in words if word))
