"""The offline rules: facts from the salience cues of messages/importance.py, and reconciliation.

Extraction reads a user turn sentence by sentence. A sentence that states something about the
speaker in one of the forms below becomes a short third-person statement with a subject:

    my name is X / call me X                       name          "The user's name is X."
    I live in X / I moved to X / I'm based in X    residence     "The user lives in X."
    I'm from X / I come from X                     origin        "The user is from X."
    I work as (a) X / my job is X                  occupation    "The user works as a X."
    I work at|for X                                employer      "The user works at X."
    I'm N years old                                age           "The user is N years old."
    my birthday is X                               birthday      "The user's birthday is X."
    my wife|son|dog|... is (called) X              relation:wife "The user's wife is X."
    my favourite Y is X                            favourite:y   "The user's favourite Y is X."
    I'm vegetarian|vegan|pescatarian               diet          "The user is vegetarian."
    I'm allergic to X                              allergy:x     "The user is allergic to X."
    I prefer X (over|to Y)                         prefers:x/y   "The user prefers X over Y."
    I love|like|enjoy X / I hate|dislike X / I don't like X
                                                   opinion:x     "The user likes X."
    remember (that) S / don't forget (that) S      (none)        S in the third person

Questions are skipped ("Do you know where I live?"), and so is anything not in those forms: the
rules know no paraphrase ("my home is Lisbon these days"), no coreference ("she" in a later turn)
and nothing about anyone but the speaker (docs/evaluation.md).

Reconciliation (`decide_by_rules`): a draft whose subject a current fact already has is a
duplicate when the values match and an update (the old one superseded) when they differ; without
a subject, the same statement, or a vector at least MEMORY_FACT_DUPLICATE_SIMILARITY alike, is a
duplicate; anything else is added.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from memory_layer.consolidation.providers.base import Action, Decision, FactDraft, KnownFact

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
# Where a stated value ends: the clause's end, or a conjunction that starts another clause.
_VALUE_END = re.compile(
    r"\s*(?:[,;:]|\s-\s|\b(?:and|but|because|since|so|which|who|where|when|though|although|"
    r"now|anymore|these days|nowadays|at the moment|right now|originally|recently|yesterday|"
    r"today|ago|still|last|next|this (?:week|month|year)|a (?:few|couple)|for \d+|since|in \d{4})\b).*$",
    re.IGNORECASE,
)
# Objects that say nothing on their own ("I like it").
_PRONOUNS = frozenset({"it", "that", "this", "them", "you", "him", "her", "those", "these", "one"})
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_TRAILING = re.compile(r"[\s.!?\"')]+$")
_MAX_VALUE_WORDS = 8

_I = r"(?:i|I)"
_IM = r"(?:i'm|i am|im)"


def _clean(value: str) -> str:
    value = _VALUE_END.sub("", value.strip())
    return _TRAILING.sub("", value).strip(" \"'")


def _key(value: str) -> str:
    """A value as a subject key: lower case, words only, singular-ish."""
    words = re.findall(r"\w+", _LEADING_ARTICLE.sub("", value.lower()))
    return " ".join(word[:-1] if len(word) > 3 and word.endswith("s") else word for word in words)


def _third_person(text: str) -> str:
    """First-person words of the speaker in the third person ("I", "my", "me" -> the user)."""
    replacements: list[tuple[str, str]] = [
        (r"\bI'm\b|\bI am\b", "the user is"),
        (r"\bI've\b|\bI have\b", "the user has"),
        (r"\bI'll\b|\bI will\b", "the user will"),
        (r"\bI'd\b", "the user would"),
        (r"\bI was\b", "the user was"),
        (r"\bI\b", "the user"),
        (r"\bmy\b", "the user's"),
        (r"\bmine\b", "the user's"),
        (r"\bme\b", "the user"),
        (r"\bmyself\b", "themself"),
    ]
    for pattern, replacement in replacements:
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE)
    return text


def _sentence_case(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!")) else text + "."


Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], FactDraft | None]]


def _value_draft(
    subject: str, template: str, kind: str = "fact", confidence: float = 0.85
) -> Callable[[re.Match[str]], FactDraft | None]:
    def build(match: re.Match[str]) -> FactDraft | None:
        value = _clean(match.group("value"))
        if not value or len(value.split()) > _MAX_VALUE_WORDS:
            return None
        name = subject.format(**{k: _key(v) for k, v in match.groupdict().items() if v})
        statement = template.format(value=value, **{
            k: v.lower() for k, v in match.groupdict().items() if v and k != "value"
        })
        return FactDraft(statement=statement, kind=kind, subject=name, value=_key(value),
                         confidence=confidence)

    return build


def _opinion(match: re.Match[str]) -> FactDraft | None:
    value = _clean(match.group("value"))
    if not value or len(value.split()) > _MAX_VALUE_WORDS or value.lower() in _PRONOUNS:
        return None
    verb = (match.groupdict().get("verb") or "like").lower()
    negative = verb in ("hate", "dislike", "don't like", "do not like", "can't stand", "cannot stand")
    stance = "dislikes" if negative else "likes"
    return FactDraft(
        statement=f"The user {stance} {value}.",
        kind="preference",
        subject=f"opinion:{_key(value)}",
        value=stance,
        confidence=0.75,
    )


def _prefers(match: re.Match[str]) -> FactDraft | None:
    raw = match.group("value")
    parts = re.split(r"\s+(?:over|to|rather than|instead of)\s+", raw, maxsplit=1, flags=re.IGNORECASE)
    chosen = _clean(parts[0])
    if not chosen or len(chosen.split()) > _MAX_VALUE_WORDS:
        return None
    other = _clean(parts[1]) if len(parts) > 1 else ""
    # The topic is what the choice is among: the last word both options share ("window seats" /
    # "aisle seats": seats), else the two options themselves, else the chosen thing's last word.
    chosen_words = _key(chosen).split()
    other_words = _key(other).split() if other else []
    if other_words and chosen_words and other_words[-1] == chosen_words[-1]:
        topic = chosen_words[-1]
    elif other_words:
        topic = "/".join(sorted((" ".join(chosen_words), " ".join(other_words))))
    else:
        topic = chosen_words[-1] if chosen_words else _key(chosen)
    statement = f"The user prefers {chosen} over {other}." if other else f"The user prefers {chosen}."
    return FactDraft(statement=statement, kind="preference", subject=f"prefers:{topic}",
                     value=_key(chosen), confidence=0.8)


def _remember(match: re.Match[str]) -> FactDraft | None:
    body = _TRAILING.sub("", match.group("value").strip())
    if len(body.split()) < 2:
        return None
    return FactDraft(statement=_sentence_case(_third_person(body)), kind="fact", subject=None,
                     value=None, confidence=0.7)


def _residence(match: re.Match[str]) -> FactDraft | None:
    raw = match.group("value") or match.group("value2") or match.group("value3")
    value = _clean(raw)
    if not value or len(value.split()) > _MAX_VALUE_WORDS:
        return None
    return FactDraft(statement=f"The user lives in {value}.", kind="fact", subject="residence",
                     value=_key(value), confidence=0.85)


def _allergy(match: re.Match[str]) -> FactDraft | None:
    value = _clean(match.group("value"))
    if not value or len(value.split()) > _MAX_VALUE_WORDS:
        return None
    return FactDraft(statement=f"The user is allergic to {value}.", kind="fact",
                     subject=f"allergy:{_key(value)}", value="allergic", confidence=0.9)


_RULES: list[Rule] = [
    (re.compile(r"\b(?:my name is|my name's|call me)\s+(?P<value>.+)", re.IGNORECASE),
     _value_draft("name", "The user's name is {value}.", confidence=0.9)),
    (re.compile(
        rf"\b{_I}\s+(?:now\s+|currently\s+|still\s+)?(?:live|reside|am living|'m living)\s+in\s+(?P<value>.+)"
        rf"|\b{_I}\s+(?:have\s+|just\s+|recently\s+)*(?:moved|relocated)\s+to\s+(?P<value2>.+)"
        rf"|\b{_IM}\s+(?:now\s+)?(?:based|living)\s+in\s+(?P<value3>.+)",
        re.IGNORECASE), _residence),
    (re.compile(rf"\b(?:{_IM}|{_I} come)\s+(?:originally\s+)?from\s+(?P<value>.+)", re.IGNORECASE),
     _value_draft("origin", "The user is from {value}.")),
    (re.compile(rf"\b(?:{_I}\s+(?:now\s+)?work\s+as|my job is|my profession is)\s+"
                r"(?P<value>.+?)(?=\s+(?:at|for|in)\s|$)", re.IGNORECASE),
     _value_draft("occupation", "The user works as {value}.")),
    (re.compile(rf"\b{_I}\s+(?:now\s+)?work\s+(?:at|for)\s+(?P<value>.+)", re.IGNORECASE),
     _value_draft("employer", "The user works at {value}.")),
    (re.compile(rf"\b{_IM}\s+(?P<value>\d{{1,3}})\s+years?\s+old", re.IGNORECASE),
     _value_draft("age", "The user is {value} years old.")),
    (re.compile(r"\bmy birthday is\s+(?:on\s+)?(?P<value>.+)", re.IGNORECASE),
     _value_draft("birthday", "The user's birthday is {value}.", confidence=0.9)),
    (re.compile(
        r"\bmy\s+(?P<relation>wife|husband|partner|son|daughter|brother|sister|mother|father|"
        r"mom|dad|dog|cat|boss|manager)(?:'s name)?\s+is\s+(?:called\s+|named\s+)?(?P<value>.+)",
        re.IGNORECASE),
     _value_draft("relation:{relation}", "The user's {relation} is {value}.")),
    (re.compile(r"\bmy\s+favou?rite\s+(?P<thing>[a-z ]{2,30}?)\s+is\s+(?P<value>.+)", re.IGNORECASE),
     _value_draft("favourite:{thing}", "The user's favourite {thing} is {value}.", "preference")),
    (re.compile(rf"\b{_IM}\s+(?:a\s+|now\s+)?(?P<value>vegetarian|vegan|pescatarian)\b", re.IGNORECASE),
     _value_draft("diet", "The user is {value}.", "preference")),
    (re.compile(rf"\b{_IM}\s+(?:severely\s+|very\s+)?allergic\s+to\s+(?P<value>.+)", re.IGNORECASE),
     _allergy),
    (re.compile(rf"\b{_I}\s+(?:really\s+|much\s+|would\s+|'d\s+)?prefer\s+(?P<value>.+)", re.IGNORECASE),
     _prefers),
    (re.compile(
        rf"\b{_I}\s+(?:really\s+|absolutely\s+)?(?P<verb>love|like|enjoy|adore|hate|dislike|"
        r"don't like|do not like|can't stand|cannot stand)\s+(?P<value>.+)",
        re.IGNORECASE),
     _opinion),
    (re.compile(rf"\b{_IM}\s+(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of\s+(?P<value>.+)", re.IGNORECASE),
     _opinion),
    (re.compile(r"\b(?:please\s+)?(?:remember|don'?t forget|note)\s+(?:that\s+)?(?P<value>.+)",
                re.IGNORECASE),
     _remember),
]


# Verbs of the opinion rule that describe the assistant's or a third party's taste, not the user's.
_NOT_ABOUT_SPEAKER = re.compile(r"\b(?:would you|do you|you)\b", re.IGNORECASE)


# A sentence of several statements about the speaker ("I hate olives and I love figs").
_CLAUSE = re.compile(r",?\s+(?:and|but|while)\s+(?=(?:I|my|I'm)\b)", re.IGNORECASE)


def _sentences(text: str) -> Iterator[str]:
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0).strip()
        if sentence and not sentence.endswith("?"):
            yield from (clause for clause in _CLAUSE.split(sentence) if clause.strip())


def extract_facts(content: str) -> list[FactDraft]:
    """The facts and preferences a user turn states in the forms the rules know."""
    drafts: list[FactDraft] = []
    seen: set[tuple[str | None, str]] = set()
    for sentence in _sentences(content):
        found: list[FactDraft] = []
        for pattern, build in _RULES:
            if build is _remember and found:
                break  # "remember that I live in X": the specific rule has said it
            for match in pattern.finditer(sentence):
                if build is _opinion and _NOT_ABOUT_SPEAKER.search(sentence[: match.start()]):
                    continue
                draft = build(match)
                if draft is not None:
                    found.append(draft)
        for draft in found:
            key = (draft.subject, draft.statement.lower())
            if key not in seen:
                seen.add(key)
                drafts.append(draft)
    return drafts


def normalized(statement: str) -> str:
    """A statement compared for sameness: lower case, words only."""
    return " ".join(re.findall(r"[a-z0-9']+", statement.lower()))


def decide_by_rules(draft: FactDraft, candidates: list[KnownFact], duplicate_similarity: float) -> Decision:
    """Add, update or none for a draft against the user's current facts (see the module doc)."""
    if draft.subject is not None:
        for known in candidates:
            if known.subject == draft.subject:
                if known.value == draft.value or normalized(known.statement) == normalized(draft.statement):
                    return Decision(Action.none, known.id)
                return Decision(Action.update, known.id)
    text = normalized(draft.statement)
    for known in candidates:
        if normalized(known.statement) == text:
            return Decision(Action.none, known.id)
        if (
            draft.subject is None
            and known.subject is None
            and known.similarity is not None
            and known.similarity >= duplicate_similarity
        ):
            return Decision(Action.none, known.id)
    return Decision(Action.add)
