"""Generate scripts/data/longmem_conversations.json: long two-person chats with planted facts.

Deterministic (templates + a seeded random.Random): the same seed writes the same file. Each
conversation is a chat between two named friends over many dated sessions, mostly small talk, with
facts planted in single turns. Questions of five kinds point at the turns that hold their answer:

  single_fact   one turn states it; some answers only make sense after the previous turn
                ("Did you ever get to Lisbon?" / "Yes, last May! ...")
  multi_hop     the answer needs two or three turns, often sessions apart
  temporal      "when did ...": the date is only in the session's time; or "what did X do in
                <month year>", where the month names the session
  open_domain   the question needs world knowledge on top of the turn (a city's country, an
                instrument's family), so it shares few words with the evidence
  adversarial   a look-alike fact (another person, another detail) is planted too and is closer
                in wording to a careless reading of the question

Conversations are split: the first ones are `dev` (look at them while tuning), the rest `heldout`
(report only). docs/evaluation.md describes the format and the results.

Usage:
  python scripts/make_longmem_eval.py [--seed 14] [--conversations 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "scripts" / "data" / "longmem_conversations.json"

PAIRS = [
    ("Maya", "Jonas"), ("Priya", "Tom"), ("Elena", "Kofi"), ("Sofia", "Liam"),
    ("Hana", "Marco"), ("Aisha", "Ben"), ("Nora", "Diego"),
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]

# Small talk: most of every session. Slots are filled from the lists below.
SMALL_TALK = [
    "Hey! How's your week going?", "Not bad, busy as usual. You?", "Haha, that's so true.",
    "Oh no, that sounds exhausting.", "Same here, honestly.", "Ha! I can picture it.",
    "It's been raining all week here, I'm going a bit stir crazy.",
    "The weather finally turned nice, I spent the whole afternoon outside.",
    "Did you watch {show}? Everyone at work keeps talking about it.",
    "I binged half of {show} last night, no regrets.",
    "Work is a lot right now, we have a deadline on {weekday}.",
    "I made {dish} for dinner yesterday, it turned out better than expected.",
    "I'm so tired today, I barely slept.", "Coffee is the only thing keeping me going.",
    "Any plans for the weekend?", "Nothing big, probably just relaxing at home.",
    "That reminds me, I still owe you a coffee.", "Sounds lovely, you deserve a break.",
    "Traffic this morning was unbelievable.", "I finally cleaned out my closet, it feels great.",
    "My phone died in the middle of the day, what a mess.", "Talk soon! Take care.",
    "Gotta run, chat later!", "Good night!", "Morning! Long time no talk.",
    "Ugh, Mondays.", "I tried a new recipe for {dish}, too much garlic though.",
    "Have you read anything good lately?", "I'm re-reading an old favourite, nothing new.",
    "The new cafe near my place does amazing {dish}.", "I need a holiday, seriously.",
    "Lol, classic.", "Wow, good for you!", "That's wild.", "Fingers crossed for you!",
    "I'm thinking about repainting the living room, maybe a pale green.",
    "My neighbour's kid is learning the drums. Every evening.",
    "I've been trying to go to bed earlier, not going well.",
    "We had a team lunch today, the food was fine, the speeches were not.",
    "Did you see the game on {weekday}? What a finish.",
    "I'm counting down the days to {weekday}.", "Thanks for listening, really.",
    "Anyway, enough about me. How's everything with you?", "Pretty good! Nothing much to report.",
    "I keep meaning to call my parents more often.", "The gym was packed this morning.",
    "I ordered {dish} again, I have no self-control.", "So many emails today, I gave up at five.",
    "Honestly I just want a quiet evening with a book.", "Haha yes, exactly what I was thinking.",
]
SHOWS = ["the new detective series", "that baking competition", "the space documentary",
         "the courtroom drama", "the cooking show with the twins"]
DISHES = ["lasagna", "ramen", "a lentil curry", "tacos", "banana bread", "shakshuka", "dumplings"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# Look-alike chatter: mentions the vocabulary of the facts without stating any of them.
LOOKALIKE_TALK = [
    "Dogs are great but I could never keep one in a flat this small.",
    "Running seems to be everyone's hobby now, half my office does marathons.",
    "I'd love to travel more this year, maybe somewhere warm.",
    "My cousin keeps sending me pictures of her cat.",
    "Learning an instrument as an adult must be so hard.",
    "I read an article about people changing careers in their thirties.",
    "Moving house is the worst, I never want to do it again.",
    "I've heard cooking classes are a good way to meet people.",
    "Someone at work just came back from a trip and won't stop talking about it.",
    "Concerts are so expensive these days.", "I keep thinking about getting a bike.",
    "My sister says I should try yoga, but I don't know.",
]


@dataclass
class Planted:
    """A few turns to put in a session: (speaker index, text, label); labels name evidence."""

    session: int
    turns: list[tuple[int, str, str | None]]


@dataclass
class QuestionSpec:
    kind: str
    question: str
    labels: list[str]


@dataclass
class Story:
    """What the fact templates plant in one conversation, and the questions about it."""

    names: tuple[str, str]
    sessions: int
    dates: list[datetime]
    rng: random.Random
    planted: list[Planted] = field(default_factory=list)
    questions: list[QuestionSpec] = field(default_factory=list)
    counter: int = 0

    def label(self) -> str:
        self.counter += 1
        return f"f{self.counter}"

    def plant(self, session: int, turns: list[tuple[int, str, str | None]]) -> None:
        self.planted.append(Planted(session, turns))

    def ask(self, kind: str, question: str, *labels: str) -> None:
        self.questions.append(QuestionSpec(kind, question, list(labels)))

    def session_in(self, lo: float, hi: float) -> int:
        """A session between the fractions lo and hi of the conversation."""
        return self.rng.randint(int(lo * (self.sessions - 1)), int(hi * (self.sessions - 1)))

    def month_of(self, session: int) -> str:
        date = self.dates[session]
        return f"{MONTHS[date.month - 1]} {date.year}"


PETS = [("beagle", "dog"), ("tabby", "cat"), ("border collie", "dog"), ("ragdoll", "cat"),
        ("dachshund", "dog")]
PET_NAMES = ["Pepper", "Biscuit", "Miso", "Olive", "Pickle", "Noodle", "Juniper", "Waffles", "Tofu"]
CITIES = [("Lisbon", "Portugal"), ("Kyoto", "Japan"), ("Cartagena", "Colombia"), ("Porto", "Portugal"),
          ("Marrakesh", "Morocco"), ("Hanoi", "Vietnam"), ("Krakow", "Poland"), ("Valparaiso", "Chile"),
          ("Bergen", "Norway"), ("Tbilisi", "Georgia")]
INSTRUMENTS = [("cello", "a string instrument"), ("trumpet", "a brass instrument"),
               ("clarinet", "a woodwind instrument"), ("violin", "a string instrument"),
               ("trombone", "a brass instrument")]
JOBS = ["nurse", "carpenter", "data analyst", "primary school teacher", "pastry chef", "paramedic"]
SIBLINGS = ["Lena", "Oskar", "Ruth", "Felix", "Ines", "Arjun", "Clara", "Mateo"]
HOBBIES = ["pottery classes", "a climbing course", "salsa lessons", "a beekeeping course",
           "an evening Italian class", "a woodworking workshop", "a watercolour class"]
SPORTS = ["bouldering", "kayaking", "tennis", "rowing", "fencing", "archery", "surfing"]
AUTHORS = [("Agatha Christie", "mystery"), ("Isaac Asimov", "science fiction"),
           ("Jane Austen", "romance"), ("Stephen King", "horror")]
CARS = ["a second-hand Volvo", "a little red Fiat", "an electric Renault", "a blue Skoda estate"]
RACES = ["half marathon", "10K", "trail race", "triathlon"]


def fact_pet(s: Story, a: int) -> None:
    """A pet, a look-alike pet of the other speaker's cousin; single fact and adversarial."""
    breed, animal = s.rng.choice(PETS)
    own, cousin = s.rng.sample(PET_NAMES, 2)
    me, other = s.names[a], s.names[1 - a]
    first, second = sorted((s.session_in(0.05, 0.5), s.session_in(0.3, 0.9)))
    pet, look = s.label(), s.label()
    s.plant(first, [(a, f"Guess what, I adopted a {breed} last weekend! We named her {own}.", pet),
                    (1 - a, "No way, that's adorable! Send pictures.", None)])
    s.plant(second, [(1 - a, f"My cousin got a {breed} too, she named hers {cousin}. "
                             f"Total chaos in her kitchen apparently.", look),
                     (a, f"Ha, {own} would love a playmate.", None)])
    s.ask("single_fact", f"What is the name of the {breed} {me} adopted?", pet)
    s.ask("adversarial", f"What did {other}'s cousin call her {breed}?", look)
    s.ask("open_domain", f"Does {me} have a {animal} or some other kind of pet?", pet)


def fact_trip(s: Story, a: int) -> None:
    """A trip confirmed by a short answer: the place is only in the previous turn."""
    (city, country), (city2, country2) = s.rng.sample(CITIES, 2)
    me, other = s.names[a], s.names[1 - a]
    session = s.session_in(0.2, 1.0)
    month = MONTHS[(s.dates[session].month - 2) % 12]
    trip, plan = s.label(), s.label()
    s.plant(session, [(1 - a, f"Did you ever make it to {city} in the end?", None),
                      (a, f"Yes, last {month}! The food alone was worth it.", trip),
                      (1 - a, "Jealous. I want to hear everything.", None)])
    plan_session = s.session_in(0.0, 1.0)
    s.plant(plan_session, [(1 - a, f"I'm thinking of going to {city2} next year, "
                                   f"have you ever been?", plan),
                           (a, "Never, but I've heard good things.", None)])
    s.ask("single_fact", f"Did {me} ever visit {city}?", trip)
    s.ask("temporal", f"When did {me} travel to {city}?", trip)
    s.ask("open_domain", f"Has {me} been to {country}?", trip)
    s.ask("adversarial", f"Which place was {other} thinking of visiting next year?", plan)


def fact_race(s: Story, a: int) -> None:
    """A race on the session's day; a later plan for another race as a look-alike."""
    race = s.rng.choice(RACES)
    me = s.names[a]
    first, second = sorted((s.session_in(0.1, 0.6), s.session_in(0.6, 1.0)))
    done, plan = s.label(), s.label()
    minutes = s.rng.randint(1, 59)
    s.plant(first, [(a, f"I ran my first {race} this morning! Finished in {minutes} minutes past "
                        f"my target but I don't care.", done),
                    (1 - a, "That's amazing, congratulations!!", None)])
    s.plant(second, [(a, f"I'm signing up for another {race} in the spring, want to train "
                         f"together?", plan),
                     (1 - a, "Maybe, if you promise to go slow.", None)])
    s.ask("temporal", f"When did {me} run a {race} for the first time?", done)
    s.ask("adversarial", f"Which race is {me} planning to do next spring?", plan)


def fact_hobby(s: Story, a: int) -> None:
    """A hobby started in a session; asked by the session's month."""
    hobby, other_hobby = s.rng.sample(HOBBIES, 2)
    me = s.names[a]
    session, later = sorted(s.rng.sample(range(1, s.sessions), 2))
    start, quit_ = s.label(), s.label()
    s.plant(session, [(a, f"I started {hobby} this week, it's harder than it looks.", start),
                      (1 - a, "Good for you! Keep me posted.", None)])
    s.plant(later, [(a, f"I dropped {other_hobby} after two weeks, it just wasn't for me.", quit_),
                    (1 - a, "Fair enough, not everything sticks.", None)])
    s.ask("temporal", f"What did {me} start doing in {s.month_of(session)}?", start)
    s.ask("temporal", f"What did {me} give up in {s.month_of(later)}?", quit_)


def fact_sibling(s: Story, a: int) -> None:
    """A sibling's move and job, sessions apart: multi-hop."""
    sibling = s.rng.choice(SIBLINGS)
    (city, country), _ = s.rng.sample(CITIES, 2)
    job = s.rng.choice(JOBS)
    me = s.names[a]
    first, second = sorted(s.rng.sample(range(s.sessions), 2))
    moved, works = s.label(), s.label()
    s.plant(first, [(a, f"My sibling {sibling} just moved to {city}, I'm going to miss them.", moved),
                    (1 - a, "Oh, that's far. Will you visit?", None)])
    s.plant(second, [(1 - a, f"How is {sibling} settling in?", None),
                     (a, f"Really well, they got a job as a {job}.", works)])
    s.ask("multi_hop", f"What job did {me}'s sibling get after moving to {city}?", moved, works)
    s.ask("open_domain", f"In which country does {me}'s sibling live now?", moved)


def fact_sports(s: Story, a: int) -> None:
    """Several sports tried in different sessions: multi-hop aggregate."""
    sports = s.rng.sample(SPORTS, 3)
    me = s.names[a]
    labels = []
    phrasings = ["I tried {x} for the first time today, my arms are dead.",
                 "Went {x} with some colleagues on the weekend, so much fun.",
                 "I booked a {x} taster session, and it was great."]
    for sport, phrasing in zip(sports, phrasings, strict=True):
        label = s.label()
        labels.append(label)
        s.plant(s.session_in(0.0, 1.0), [(a, phrasing.format(x=sport), label),
                                         (1 - a, "Nice! Would you do it again?", None)])
    s.ask("multi_hop", f"Which sports has {me} tried out over the past months?", *labels)


def fact_instrument(s: Story, a: int) -> None:
    """An instrument, asked by its family: open-domain."""
    instrument, family = s.rng.choice(INSTRUMENTS)
    me = s.names[a]
    session = s.session_in(0.0, 0.8)
    lesson = s.label()
    s.plant(session, [(1 - a, "So what's the new thing you mentioned?", None),
                      (a, f"I signed up for {instrument} lessons! My teacher is very patient.", lesson)])
    s.ask("open_domain", f"Is {me} learning to play {family}?", lesson)
    s.ask("single_fact", f"Who has been patient with {me} during music lessons?", lesson)


def fact_book(s: Story, a: int) -> None:
    """A favourite author, asked by genre; a short answer carries the author."""
    (author, genre), (author2, _) = s.rng.sample(AUTHORS, 2)
    me, other = s.names[a], s.names[1 - a]
    session = s.session_in(0.0, 1.0)
    fav, look = s.label(), s.label()
    s.plant(session, [(1 - a, f"Are you still reading {author}?", None),
                      (a, "Always! I just finished my fourth one this month.", fav)])
    s.plant(s.session_in(0.0, 1.0), [(1 - a, f"I could never get into {author2}, too slow for me.", look),
                                     (a, "Each to their own.", None)])
    s.ask("open_domain", f"What genre of books does {me} read a lot of?", fav)
    s.ask("adversarial", f"Which author does {other} find too slow?", look)


def fact_car(s: Story, a: int) -> None:
    """A car bought, then sold: temporal, what was true later."""
    car = s.rng.choice(CARS)
    me = s.names[a]
    first, second = sorted(s.rng.sample(range(s.sessions), 2))
    bought, sold = s.label(), s.label()
    s.plant(first, [(a, f"We finally bought a car, {car}. No more waiting for buses!", bought),
                    (1 - a, "Road trip!", None)])
    s.plant(second, [(1 - a, "Do you still have the car?", None),
                     (a, "Nope, sold it last week. We barely used it in the city.", sold)])
    s.ask("temporal", f"When did {me} sell the car?", sold)
    s.ask("multi_hop", f"What car did {me} buy, and do they still own it?", bought, sold)


def fact_job(s: Story, a: int) -> None:
    """A new job; a look-alike interview that came to nothing."""
    company, other_company = s.rng.sample(["Fenwick", "Orbitra", "Halden & Co", "Bluequay",
                                            "Nordlys Labs"], 2)
    me, other = s.names[a], s.names[1 - a]
    session = s.session_in(0.2, 0.8)
    offer, look = s.label(), s.label()
    s.plant(session, [(a, f"I accepted the offer from {company}! I start in a month.", offer),
                      (1 - a, "YES! I knew you'd get it.", None)])
    s.plant(s.session_in(0.0, 1.0), [(1 - a, f"I had an interview at {other_company}, "
                                            f"but they went with someone else.", look),
                                     (a, "Their loss, honestly.", None)])
    s.ask("single_fact", f"Which company did {me} accept a job offer from?", offer)
    s.ask("temporal", f"When did {me} accept the new job offer?", offer)
    s.ask("adversarial", f"Where did {other} interview without getting the job?", look)


FACTS: list[Callable[[Story, int], None]] = [
    fact_pet, fact_trip, fact_race, fact_hobby, fact_sibling, fact_sports, fact_instrument,
    fact_book, fact_car, fact_job,
]


def small_talk(rng: random.Random) -> str:
    line = rng.choice(LOOKALIKE_TALK) if rng.random() < 0.12 else rng.choice(SMALL_TALK)
    return line.format(show=rng.choice(SHOWS), dish=rng.choice(DISHES), weekday=rng.choice(WEEKDAYS))


def conversation(index: int, names: tuple[str, str], rng: random.Random,
                 sessions: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    cid = f"lm-{index:02d}"
    start = datetime(2025, 1, 6, tzinfo=UTC) + timedelta(days=rng.randint(0, 60))
    dates = [start]
    for _ in range(sessions - 1):
        dates.append(dates[-1] + timedelta(days=rng.randint(9, 24), hours=rng.randint(-3, 3)))
    story = Story(names=names, sessions=sessions, dates=dates, rng=rng)
    for fact in FACTS:
        for a in (0, 1):
            fact(story, a)
    by_session: dict[int, list[Planted]] = {}
    for planted in story.planted:
        by_session.setdefault(planted.session, []).append(planted)
    turns: list[dict[str, Any]] = []
    where: dict[str, str] = {}
    for session in range(sessions):
        blocks: list[list[tuple[int, str, str | None]]] = [
            [(i % 2, small_talk(rng), None)] for i in range(rng.randint(14, 22))
        ]
        for planted in by_session.get(session, []):
            blocks.insert(rng.randint(1, len(blocks)), planted.turns)
        moment = dates[session] + timedelta(hours=rng.randint(8, 21), minutes=rng.randint(0, 59))
        for block in blocks:
            for speaker, text, label in block:
                moment += timedelta(seconds=rng.randint(20, 240))
                turn_id = f"{cid}-t{len(turns) + 1:03d}"
                if label is not None:
                    where[label] = turn_id
                turns.append({
                    "turn_id": turn_id, "session": session + 1,
                    "date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "speaker": names[speaker],
                    "role": "user", "text": text,
                })
    questions = [
        {"conversation_id": cid, "kind": q.kind, "question": q.question,
         "evidence": [where[label] for label in q.labels]}
        for q in story.questions
    ]
    return {"conversation_id": cid, "speakers": list(names), "turns": turns}, questions


def generate(seed: int, count: int, heldout: int, sessions: int) -> dict[str, Any]:
    rng = random.Random(seed)
    conversations: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    for index, names in enumerate(PAIRS[:count], start=1):
        conv, asked = conversation(index, names, rng, sessions)
        conv["split"] = "heldout" if index > count - heldout else "dev"
        conversations.append(conv)
        questions.extend({**q, "split": conv["split"]} for q in asked)
    for number, question in enumerate(questions, start=1):
        question["question_id"] = f"lm-q{number:03d}"
    return {
        "name": "memory-layer-longmem-v1",
        "description": (
            f"Generated by scripts/make_longmem_eval.py --seed {seed} --conversations {count}: "
            "long chats between two named friends over dated sessions, mostly small talk, with "
            "planted facts, short answers that need the previous turn, dates only in the session "
            "time and look-alike facts."
        ),
        "conversations": conversations,
        "questions": [{"question_id": q.pop("question_id"), **q} for q in questions],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--conversations", type=int, default=5)
    parser.add_argument("--heldout", type=int, default=2, help="the last N conversations")
    parser.add_argument("--sessions", type=int, default=22)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    data = generate(args.seed, args.conversations, args.heldout, args.sessions)
    args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    turns = sum(len(c["turns"]) for c in data["conversations"])
    print(f"{args.out}: {len(data['conversations'])} conversations, {turns} turns, "
          f"{len(data['questions'])} questions")


if __name__ == "__main__":
    main()
