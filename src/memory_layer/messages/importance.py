"""How important a new message is, unless the client says (`importance_override`).

    base by role (user 0.50, assistant 0.35, system 0.60, tool 0.25)
  + 0.20 if it states a fact, preference or instruction worth keeping
         ("remember", "my name is", "I prefer", "I love", "never", "allergic", ...)
  + 0.05 if it contains a number (dates, amounts, ids are concrete facts)
  + 0.05 for 8+ words, 0.10 for 30+ words (substance)
  - 0.15 for a bare pleasantry of at most three words ("thanks!", "ok", "hi")
  clamped to [0, 1] and rounded to three decimals.
"""

from __future__ import annotations

import re

ROLE_BASE_IMPORTANCE: dict[str, float] = {
    "user": 0.50,
    "assistant": 0.35,
    "system": 0.60,
    "tool": 0.25,
}

_SALIENT = re.compile(
    r"\b(remember|don'?t forget|important|always|never|must|deadline|allergic|allergy|"
    r"my name is|call me|i am|i'm|i live|i work|i prefer|i love|i like|i hate|i dislike|"
    r"i want|i need|my (?:favou?rite|birthday|wife|husband|partner|son|daughter|email|phone))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d")
_PLEASANTRY = re.compile(
    r"^(ok(ay)?|k|thanks?( you)?|thx|ty|hi|hello|hey|bye|cool|great|nice|sure|yes|no|yep|nope)"
    r"[\s!.?]*$",
    re.IGNORECASE,
)


def importance_for(role: str, content: str) -> float:
    """Heuristic importance of a message; see the module docstring for the formula."""
    score = ROLE_BASE_IMPORTANCE.get(role, 0.4)
    text = content.strip()
    words = len(text.split())
    if _SALIENT.search(text):
        score += 0.20
    if _NUMBER.search(text):
        score += 0.05
    if words >= 30:
        score += 0.10
    elif words >= 8:
        score += 0.05
    if words <= 3 and _PLEASANTRY.match(text):
        score -= 0.15
    return round(min(1.0, max(0.0, score)), 3)
