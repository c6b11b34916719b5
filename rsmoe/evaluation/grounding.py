"""Grounding: what a caption says about DOTA classes, checked against the crop's annotations.

The RS-MoE paper notes that RSGPT miscounts; BLEU and CIDEr barely see it. Where DOTA boxes
exist we read every class a caption names, with the count it states, and compare:

    mentions("There are two planes and no ships.")
      -> {"plane": Mention(kind="number", count=2, ...), "ship": Mention(kind="negated", count=0, ...)}
    ground(caption, objects)  -> Grounding: per class the true count, what the caption says, a status
    aggregate(groundings)     -> count accuracy, hallucination rate, miss rate and totals (plain JSON)

Conventions. Each is chosen so that a caption written by `rsmoe.data.describe` from a crop's own
objects grounds perfectly (tested), and so that human RSICap / RSIEval wording reads sensibly:

- Truth: every object stored with the crop counts, truncated and difficult ones included.
  `prepare` keeps an object when enough of it lies inside the crop and `describe` counts all of
  those ("five ships ... two of the ships are only partially visible"), never fewer.
- Names: the DOTA name with a hyphen or a space ("large-vehicles"), the caption noun
  (`describe.NOUNS`) and common synonyms (`SURFACES`): cars / vans -> small-vehicle, trucks /
  buses -> large-vehicle, boats / vessels -> ship, airplanes / aircraft / jets -> plane, tanks ->
  storage-tank, pools -> swimming-pool, ports / docks / piers -> harbor, cranes ->
  container-crane, baseball fields -> baseball-diamond, running tracks -> ground-track-field,
  football fields -> soccer-ball-field, overpasses -> bridge. A bare "court(s)" is the court
  class named last before it ("three tennis courts ... the courts"). Compounds that are not the
  object are skipped ("boarding bridges", "car park", "bus stop"); a class noun used as a
  modifier ("a tennis court area") names the class without counting it.
- "vehicle(s)" alone is ambiguous between small and large vehicles, so it is a key of its own,
  `VEHICLE`: it is checked against small + large together, and it covers both against misses.
- Counts: digits, number words ("thirty-seven", "thirty seven", "a dozen"), "a pair of" and
  "both" are exact. "more than N" / "over N" / "at least N" are lower bounds, inclusive, because
  `describe` writes "more than one hundred" from 100 on. Per class an exact count beats a vague
  quantifier, which beats articles. Counts in one sentence add up ("seven buses and three
  trucks" = 10 large vehicles); across sentences the largest is taken (a total restated or a
  subgroup: "ten cars ... two cars by the road"); counts of different kinds (buses, trucks) add
  up unless the class's own name carries a count ("ten large vehicles: seven buses ...").
- Each object is counted once: a caption introduces objects, then speaks of them again, and only
  the introductions count.
  - "a"/"an" introduces one object each time ("a car is parked ..., and a car is driving ..." =
    2). "another", "a second", "one more" add one to what was said so far ("two planes ...
    another plane" = 3), except after a partition in the sentence ("two of the ships are white,
    and another ship is gray" is one of the known ships).
  - Definite re-mentions refer back and never add: "the ship", "these planes", "the other ship",
    "it" / "they" (no class noun, so never read). A definite number ("the two ships", "all three
    planes", "both bridges") restates a total: it can be the largest count, never adds in its
    sentence. "The other three ships" has no definite before its number: the rest of a group adds.
  - A predicate nominative ("the ship is a small vessel", "it is a white plane", "it appears to
    be a jet") classifies an object already there and adds none; when nothing else names its
    class it states one. After "there" / "here" ("there is a ship") and in an inversion ("next
    to the pier is a boat", "beside it is a boat") the "a ..." is the subject and introduces one.
  - Partitives ("two of the ships", "most of the cars") are subgroups of known objects; they,
    bare definites ("the planes") and plurals without a number ("ships are moored") name a class
    without counting it.
  - A sentence said again word for word (looping output: "The ship is a small vessel. The ship is
    a small vessel.") states nothing new; its phrases have kind "repeat".
  Known limits: numbers beat articles, so "a ship and two boats" reads 2 (and, rightly, so does
  "two ships, a tanker and a ferry"); "one ship is white and the other is gray" reads 1.
- Vague quantifiers never enter count accuracy; they are checked on their own against `VAGUE`:
  "a few" / "several" / "some" admit 2..9, "many" / "a lot of" / "numerous" 10 or more.
- Negation ("there are no ships", "no planes can be seen", "no objects such as planes, ships or
  vehicles", "ships are not visible") states 0: right when the class is absent, "denied" when it
  is present. A negated class is never a hallucination.
- A scene phrase ("an aerial image showing a harbor") names the scene, not a harbor box:
  `describe` writes it for crops with ships or cranes but no harbor. It is no hallucination and
  no count, but it does mention a harbor that is there.

Result objects are dataclasses; `Grounding.to_dict()` is JSON-able and every mention carries the
character spans of its phrases so a report can colour them.
"""
from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from rsmoe.data.describe import parse_number
from rsmoe.data.records import DOTA_V15_CLASSES, CropObject

VEHICLE = "vehicle"  # bare "vehicle(s)": small or large
GROUPS: dict[str, tuple[str, ...]] = {VEHICLE: ("small-vehicle", "large-vehicle")}
SCENE_CLASSES = frozenset({"harbor"})  # classes a caption can name as the scene type

# class -> {lemma: surface regex}. Counts of one lemma are one tally; the lemma spelled like the
# class ("large vehicle") is the class's own name, the others are kinds whose counts add up.
SURFACES: dict[str, dict[str, str]] = {
    "plane": {"plane": r"(?:air|aero)?planes?|aircrafts?|airliners?|jets?"},
    "ship": {"ship": r"ships?|vessels?|boats?|sailboats?|speedboats?|yachts?|ferry|ferries|tankers?|barges?"},
    "storage-tank": {"storage tank": r"(?:storage|oil|fuel)[- ]tanks?|tanks?"},
    "baseball-diamond": {"baseball diamond": r"baseball[- ](?:diamonds?|fields?|grounds?|pitch(?:es)?)"},
    "tennis-court": {"tennis court": r"tennis[- ]courts?"},
    "basketball-court": {"basketball court": r"basketball[- ]courts?"},
    "ground-track-field": {"ground track field": r"ground[- ]track[- ]fields?|track[- ]and[- ]fields?|"
                                                 r"(?:athletics?[- ]|running[- ])?track[- ]fields?|"
                                                 r"(?:athletics?|running)[- ]tracks?"},
    "harbor": {"harbor": r"harbou?rs?|ports?|docks?|piers?|wharfs?|wharves|marinas?|jett(?:y|ies)"},
    "bridge": {"bridge": r"bridges?|overpass(?:es)?|viaducts?"},
    "large-vehicle": {"large vehicle": r"(?:large|big|heavy)[- ]vehicles?", "truck": r"trucks?|lorry|lorries|trailers?",
                      "bus": r"bus(?:es)?"},
    "small-vehicle": {"small vehicle": r"small[- ]vehicles?", "car": r"cars?|vans?|sedans?|automobiles?|taxis?"},
    "helicopter": {"helicopter": r"helicopters?|choppers?"},
    "roundabout": {"roundabout": r"roundabouts?|traffic[- ]circles?"},
    "soccer-ball-field": {"soccer field": r"soccer[- ]ball[- ]fields?|(?:soccer|football)[- ](?:fields?|pitch(?:es)?)"},
    "swimming-pool": {"swimming pool": r"swimming[- ]pools?|pools?"},
    "container-crane": {"container crane": r"container[- ]cranes?|(?:gantry[- ]|quay[- ])?cranes?"},
    VEHICLE: {"vehicle": r"vehicles?"},
}
_OWN_LEMMA = {c: next(iter(lemmas)) for c, lemmas in SURFACES.items()}
_NOT_OBJECTS = r"boarding[- ]bridges?|jet[- ]bridges?|car[- ]park(?:s|ing)?|bus[- ](?:stops?|stations?|lanes?)"
# A class noun followed by one of these is a modifier ("tennis court area"): named, not counted.
_COMPOUND_HEAD = re.compile(r"[- ](?:areas?|zones?|complex(?:es)?|facilit(?:y|ies)|terminals?|stations?|lots?|yards?|"
                            r"depots?|farms?|parking|markings?)\b", re.I)

# vague quantifier -> counts it admits (high None: no upper bound)
VAGUE: dict[str, tuple[int, int | None]] = {
    "a few": (2, 9), "few": (1, 9), "several": (2, 9), "some": (2, 9), "a couple of": (2, 3), "a handful of": (2, 9),
    "a small number of": (2, 9), "multiple": (2, None), "various": (2, None), "a number of": (2, None),
    "a variety of": (2, None), "many": (10, None), "a lot of": (10, None), "lots of": (10, None),
    "numerous": (10, None), "plenty of": (10, None), "a large number of": (10, None), "a great number of": (10, None),
    "a great many": (10, None), "countless": (10, None), "dozens of": (24, None), "hundreds of": (200, None),
}

_UNITS = "one|two|three|four|five|six|seven|eight|nine"
_NUMBER = (r"\d{1,3}(?:,\d{3})+|\d+|(?:a|one) hundred|(?:a )?dozen|a pair of|both|(?:a |one )?single|"
           rf"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[- ](?:{_UNITS}))?|"
           rf"ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|{_UNITS}")
_NEGATOR = (r"no|nor|neither|zero|without(?: any)?|cannot see(?: any)?|no (?:signs?|traces?) of(?: any)?|"
            r"(?:lack|absence|devoid|free|empty|void) of(?: any)?|"
            r"(?:not|[a-z]+n't)(?: any| a single| a| an| one| even one| even a)?")
_VAGUE_RE = "|".join(sorted(map(re.escape, VAGUE), key=len, reverse=True))


def _end(pattern: str) -> re.Pattern[str]:
    """`pattern` as the last words of a space-joined token string."""
    return re.compile(rf"(?:^| )(?:{pattern})$")


# Determiners, tried in this order on the words before a class noun (its modifiers removed).
_PARTITIVE = _end(rf"(?:{_NUMBER}|{_VAGUE_RE}|most|all|none|each|any|either|half|the rest|the majority|the remainder|"
                  r"part|another) of (?:the|these|those|them|its|their)")
_DEFINITE_OF = _end(r"of (?:the|these|those|its|their)")
_NEGATED = _end(_NEGATOR)
_BOUND = _end(rf"(?:more than|over|at least|greater than|upwards of|no fewer than|no less than|not less than) "
              rf"(?:{_NUMBER})")
_APPROX = _end(rf"(?:about|around|approximately|roughly|some|an estimated|estimated|nearly|almost|close to|up to) "
               rf"(?:{_NUMBER})")
_EXACT = _end(_NUMBER)
_VAGUE_END = _end(_VAGUE_RE)
_ARTICLE = _end(r"a|an|another|one more")
_ORDINALS = frozenset("second third fourth fifth sixth additional further".split())  # "a second ship": one more
# "<subject> is (also) a ...": a predicate nominative. The subject is the word before the copula.
_PREDICATE = re.compile(r"(?:^| )(?:(?P<subject>[a-z]+) (?:is|are|was|were|being|(?:can|could|may|might|must|will|"
                        r"would|should) be|(?:has|have|had) been|(?:seems?|seemed|appears?|appeared) to be|"
                        r"(?:looks?|looked) like|resembl(?:es?|ed|ing))|(?P<contracted>[a-z]+)'s)"
                        r"(?: (?:also|probably|likely|clearly|possibly|perhaps|apparently|actually|just|only|still|"
                        r"certainly|definitely|obviously|mainly|mostly|indeed))*$")
_DEFINITE_NUMBER = frozenset("the these those all its their".split())  # not "the other three": those add
_PRONOUNS = frozenset("it they which that who this these those one ones each other others both all".split())
_PREPOSITIONS = frozenset("in on at near next beside besides behind under above below along alongside across adjacent "
                          "between inside within outside underneath beneath among opposite close around to from by "
                          "beyond over atop toward towards".split())
# "two of the ships are white, and another ship ...": "another" picks a member of a known group
_PARTITION = re.compile(rf"\b(?:{_NUMBER}|some|most|all) (?:of|is|are|was|were)\b")
_CONTAINER = _end(r"(?:rows?|lines?|groups?|clusters?|fleets?|types?|kinds?|sorts?|columns?|sets?|sizes?|queues?|"
                  r"collections?|series|array|cluster) of")
_EXAMPLE = _end(r"(?:, )?(?:such as|like|including|e \. g \.|for example|especially|particularly|namely)(?: ,)?")
_BREAK = (r"a|an|the|of|in|on|at|to|by|with|from|near|and|or|nor|but|while|is|are|was|were|be|there|which|that|"
          r"such|as|like|including|this|these|those|its|their")
_ITEM = rf"(?:(?!(?:{_BREAK})\b)[a-z][a-z'-]* ){{1,3}}"
# "no buildings or ships", "no planes , ships , and vehicles" (3+ items before ", and")
_NEGATED_LIST = _end(rf"(?:{_NEGATOR}) {_ITEM}(?:(?:, |or |nor |, or ){_ITEM})*(?:or|nor|,)"
                     rf"|(?:{_NEGATOR}) {_ITEM}(?:(?:, |or |nor |, or ){_ITEM})+, and")
_ABSENT_AFTER = re.compile(
    r"\s+(?:(?:is|are|was|were)\s+(?:not|nowhere)|isn't|aren't|wasn't|weren't)\s+"
    r"(?:visible|present|seen|found|observed|shown|detected|there|to\s+be\s+seen)\b"
    r"|\s+(?:cannot|can't|can\s+not|could\s+not|couldn't)\s+be\s+(?:seen|found|observed|spotted|identified|detected)\b"
    r"|\s+(?:is|are)\s+(?:absent|missing)\b", re.I)
_SCENE_BEFORE = re.compile(r"\b(?:image|view|picture|photo|photograph|scene)\b.*\b(?:showing|shows|show|depicting|"
                           r"depicts|displaying|displays|of)\s*$", re.I)
_WINDOW = 240  # characters before a class noun that can hold its determiner
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bapprox)[.!?]+(?=\s|$)")
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+|[a-z]+(?:['-][a-z]+)*|[^\sa-z\d]")
_COLOURS = frozenset("white gray grey black red blue yellow green orange brown purple pink silver golden beige dark "
                     "light bright".split())
_NOT_MODIFIERS = frozenset(
    ("a an the this that these those its their his her our my your some any no not nor neither either each every all "
     "both few many several most more less much such another of in on at to from by with without near around about "
     "over under above below behind beside besides between along across through into onto inside outside among and "
     "or but while whereas as than like including is are was were be been being has have had can could may might "
     "will would there here it they we you which who whom whose where when also only just even very too so then "
     "total lot lots number variety plenty couple pair dozen dozens hundred hundreds single numerous multiple "
     "various countless zero none half part rest majority remainder approximately roughly nearly almost estimated "
     "close up least cannot").split())
_NOT_PLURAL = frozenset({"gas", "grass", "glass", "various", "numerous", "previous"})


# ---------------------------------------------------------------------------------------------
# Result records


@dataclass(frozen=True)
class Phrase:
    """One place where a caption names a class, with the quantity written before it."""

    category: str  # a DOTA class, or VEHICLE
    lemma: str  # the name used ("car", "bus", "large vehicle"): counts of different kinds add up
    text: str  # as written, quantity included: "thirty-seven large-vehicles"
    span: tuple[int, int]  # caption[span[0]:span[1]] == text
    # "number", "restated" (a definite number), "more_than", "article", "another", "predicate", "vague",
    # "partitive", "repeat" (a sentence said before), "none" or "negated"
    kind: str
    count: int | None  # the number stated (the bound for "more_than", 0 when negated)
    bounds: tuple[int, int | None] | None  # the true counts the phrase admits; None: it states none
    quantifier: str | None  # a vague quantifier as written ("several", "many rows of", "about 20")
    negated: bool
    scene: bool  # names the scene ("an aerial image showing a harbor"), not an object
    sentence: int  # index of the sentence the phrase is in


@dataclass(frozen=True)
class Mention:
    """Everything a caption says about one class: its phrases merged into one claim."""

    category: str
    kind: str  # as Phrase.kind, for the claim that decides the count
    count: int | None
    bounds: tuple[int, int | None] | None
    quantifier: str | None
    negated: bool  # every phrase of the class is negated: the caption says there are none
    scene: bool  # every phrase is a scene phrase
    text: str  # the phrase the count comes from (the first when several add up)
    span: tuple[int, int]
    spans: tuple[tuple[int, int], ...]  # every phrase naming the class, in caption order


@dataclass(frozen=True)
class ClassGrounding:
    """One class (or group) of one caption: its true count, what the caption says, and the verdict."""

    category: str
    true_count: int
    # "ok", "miscounted" (exact count wrong), "vague_mismatch", "hallucinated" (named, absent),
    # "missed" (present, never named), "denied" (present, said to be absent)
    status: str
    count_correct: bool | None  # None: no checkable count stated
    vague_correct: bool | None  # None: no vague quantifier decides the claim
    mention: Mention | None
    covered_by: str | None = None  # a group key ("vehicle") that names this class


@dataclass(frozen=True)
class Grounding:
    """One caption against one crop's annotations."""

    caption: str  # the text the spans index
    true_counts: dict[str, int]  # DOTA classes present
    classes: dict[str, ClassGrounding]  # classes mentioned or present (and groups mentioned)
    hallucinated: list[str]
    missed: list[str]
    denied: list[str]
    miscounted: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Reading a caption


_SURFACE_OF = [(c, lemma) for c, lemmas in SURFACES.items() for lemma in lemmas]  # group "s{i}" -> (class, lemma)
_SURFACE_RE = re.compile(r"\b(?:" + "|".join(
    [f"(?P<skip>{_NOT_OBJECTS})"]  # first: "jet bridges" is no plane, "car park" no car
    + [f"(?P<s{i}>{SURFACES[c][lemma]})" for i, (c, lemma) in enumerate(_SURFACE_OF)]
    + [r"(?P<court>courts?)"]) + r")\b")


@dataclass(frozen=True)
class _Det:
    kind: str
    start: int | None  # character offset of the determiner's first word; None: not next to the noun
    count: int | None = None
    bounds: tuple[int, int | None] | None = None
    quantifier: str | None = None


def _to_int(text: str) -> int:
    t = text.replace(",", "").strip()
    if t.isdigit():
        return int(t)
    if t.endswith("hundred"):
        return 100
    if t.endswith("dozen"):
        return 12
    if t in ("a pair of", "both"):
        return 2
    if t.endswith("single"):
        return 1
    n = parse_number(t.replace(" ", "-"))
    if n is None:
        raise ValueError(f"unparsed number {text!r}")
    return n


def _is_modifier(word: str) -> bool:
    plural = word.endswith("s") and not word.endswith(("ss", "us", "'s")) and word not in _NOT_PLURAL
    return (word[:1].isalpha() and word not in _NOT_MODIFIERS and not plural and "n't" not in word
            and not _EXACT.search(word) and all(ch.isalpha() or ch in "-'" for ch in word))


def _strip_modifiers(words: Sequence[str], end: int) -> int:
    """Index where the modifiers before words[end] begin ("seven long yellow| buses", "a white and green| plane")."""
    i, taken = end, 0
    while i > 0 and taken < 4:
        w = words[i - 1]
        if _is_modifier(w):
            i, taken = i - 1, taken + 1
        elif (w in ("and", "or", ",") and i < end and i >= 2 and words[i] in _COLOURS
              and words[i - 2] in _COLOURS | {"large", "small", "big", "long", "short"}):
            i -= 1
        else:
            break
    return i


def _determiner(words: Sequence[str], starts: Sequence[int], end: int) -> _Det | None:
    """The quantity (or negation) that ends at words[end - 1], if any."""
    text = " ".join(words[:end])

    def at(m: re.Match[str]) -> int:
        return starts[end - len(m.group().split())]

    if m := _PARTITIVE.search(text):
        return _Det("partitive", at(m))
    if _DEFINITE_OF.search(text):
        return None
    if m := _NEGATED.search(text):
        return _Det("negated", at(m), 0, (0, 0))
    if _NEGATED_LIST.search(text):  # a later item of a negated list: the span stays on the noun
        return _Det("negated", None, 0, (0, 0))
    if m := _BOUND.search(text):
        n = _to_int(re.sub(r"^ ?(?:more than|over|at least|greater than|upwards of|no fewer than|no less than|"
                           r"not less than) ", "", m.group()))
        return _Det("more_than", at(m), n, (n, None), m.group().strip())
    if m := _APPROX.search(text):
        word, number = re.match(r" ?(an estimated|close to|up to|\S+) (.+)$", m.group()).groups()
        n = _to_int(number)
        low, high = (1, n) if word == "up to" else (math.floor(0.75 * n), n if word in ("nearly", "almost") else
                                                    math.ceil(1.25 * n))
        return _Det("vague", at(m), None, (low, high), m.group().strip())
    if m := _EXACT.search(text):
        n, first = _to_int(m.group()), end - len(m.group().split())
        # "the two ships", "all three planes", "both bridges" refer back to objects counted already
        definite = m.group().strip() == "both" or (first > 0 and words[first - 1] in _DEFINITE_NUMBER)
        return _Det("restated" if definite else "number", at(m), n, (n, n))
    if m := _VAGUE_END.search(text):
        q = m.group().strip()
        return _Det("vague", at(m), None, VAGUE[q], q)
    if m := _ARTICLE.search(text):
        first = end - len(m.group().split())
        if _is_predicate(words[:first]):  # "the ship is a small vessel": it classifies, it adds no object
            return _Det("predicate", at(m))
        more = m.group().strip() in ("another", "one more") or (end < len(words) and words[end] in _ORDINALS)
        return _Det("another" if more else "article", at(m), 1, (1, 1))
    if m := _CONTAINER.search(text):  # "many rows of cars", "a group of three ..." (the inner number wins above)
        head = end - len(m.group().split())
        inner = _determiner(words, starts, _strip_modifiers(words, head))
        if inner and inner.kind == "negated":
            return inner
        first = starts.index(inner.start) if inner and inner.start is not None else head
        bounds = inner.bounds if inner and inner.kind == "vague" else (2, None)
        return _Det("vague", starts[first], None, bounds, " ".join(words[first:end]))
    if m := _EXAMPLE.search(text):  # "no objects such as planes": the negation of the example's head
        head = end - len(m.group().split()) - 1  # skip the head noun ("objects")
        if head > 0:
            outer = _determiner(words, starts, _strip_modifiers(words, head))
            if outer and outer.kind == "negated":
                return _Det("negated", None, 0, (0, 0))
    return None


def _is_predicate(before: Sequence[str]) -> bool:
    """Whether an article after `before` opens a predicate nominative ("it is a", "the ship is a").

    Not when the subject is "there" / "here" (existential: "there is a ship"), nor in an inversion,
    where a place comes first and the "a ..." is the subject ("next to the pier is a ship", "beside
    it is a boat": the clause opens with a preposition, or one stands right before the copula's
    subject, and that subject is no pronoun in the nominative).
    """
    m = _PREDICATE.search(" ".join(before))
    if not m:
        return False
    subject = m.group("subject") or m.group("contracted")
    i = len(before) - len(m.group().split())  # the subject's index
    if subject in ("there", "here") or (i > 0 and before[i - 1] in _PREPOSITIONS):
        return False
    if subject in _PRONOUNS:  # "... and it is a tanker"
        return True
    clause = max((j + 1 for j in range(i) if before[j] in (",", ";", ":")), default=0)
    return before[clause] not in _PREPOSITIONS


def _sentence_starts(caption: str) -> list[int]:
    return [0] + [m.end() for m in _SENTENCE_END.finditer(caption)]


def phrases(caption: str) -> list[Phrase]:
    """Every phrase of `caption` that names a DOTA class (or VEHICLE), in caption order."""
    low = caption.lower().replace("\u2019", "'")
    sentence_starts = _sentence_starts(low)
    out: list[Phrase] = []
    last_court: str | None = None
    for m in _SURFACE_RE.finditer(low):
        if m.group("skip"):
            continue
        if m.group("court"):
            if last_court is None:
                continue
            category, lemma = last_court, _OWN_LEMMA[last_court]
        else:
            category, lemma = _SURFACE_OF[int(m.lastgroup[1:])]
        if category in ("tennis-court", "basketball-court"):
            last_court = category
        sentence = bisect.bisect_right(sentence_starts, m.start()) - 1
        s0 = sentence_starts[sentence]
        # a determiner is a few words long: read at most _WINDOW characters back (a looping caption
        # with no full stop would otherwise cost quadratic time), minus a word cut in half
        lo = max(s0, m.start() - _WINDOW)
        toks = list(_TOKEN.finditer(low, lo, m.start()))[1 if lo > s0 else 0:]
        words, starts = [t.group() for t in toks], [t.start() for t in toks]
        compound = _COMPOUND_HEAD.match(low, m.end()) is not None
        det = None if compound else _determiner(words, starts, _strip_modifiers(words, len(words)))
        kind = det.kind if det else "none"
        if kind == "another" and _PARTITION.search(low, lo, det.start):  # "two of the ships ..., another ship"
            kind, det = "partitive", _Det("partitive", det.start)
        # "ships are not visible"; not "the plane's head is not visible", not "two ships are not visible"
        negated = kind == "negated" or (kind == "none" and not low.startswith("'", m.end())
                                        and _ABSENT_AFTER.match(low, m.end()) is not None)
        start = det.start if det and det.start is not None else m.start()
        scene = (category in SCENE_CLASSES and kind == "article"
                 and _SCENE_BEFORE.search(low[s0:start]) is not None)
        out.append(Phrase(
            category=category, lemma=lemma, text=caption[start:m.end()], span=(start, m.end()),
            kind="negated" if negated else kind, count=0 if negated else det.count if det else None,
            bounds=(0, 0) if negated else det.bounds if det else None,
            quantifier=det.quantifier if det and not negated else None,
            negated=negated, scene=scene, sentence=sentence,
        ))
    return _mark_repeats(low, sentence_starts, _inherit_negation(low, out))


def _inherit_negation(low: str, found: list[Phrase]) -> list[Phrase]:
    """A phrase with no determiner after a negated one in a list is negated too ("no planes, ships or cars")."""
    out: list[Phrase] = []
    for p in found:
        prev = out[-1] if out else None
        between = _TOKEN.findall(low, prev.span[1], p.span[0]) if prev is not None else []
        while between[:1] and between[0] in (",", "and", "or", "nor"):
            between.pop(0)
        if (prev is not None and prev.negated and p.kind == "none" and prev.sentence == p.sentence
                and all(map(_is_modifier, between))):
            p = Phrase(**{**asdict(p), "kind": "negated", "count": 0, "bounds": (0, 0), "negated": True})
        out.append(p)
    return out


def _mark_repeats(low: str, sentence_starts: Sequence[int], found: list[Phrase]) -> list[Phrase]:
    """A sentence said before word for word (a looping caption) states nothing new: kind "repeat", no count."""
    seen: set[str] = set()
    repeated = set()
    for i, a in enumerate(sentence_starts):
        b = sentence_starts[i + 1] if i + 1 < len(sentence_starts) else len(low)
        said = " ".join(w for w in _TOKEN.findall(low, a, b) if w[0].isalnum())  # a cut-off last one too
        if said in seen:
            repeated.add(i)
        seen.add(said)
    return [replace(p, kind="repeat", count=None, bounds=None, quantifier=None)
            if p.sentence in repeated and not p.negated else p for p in found]


def _tally(found: list[Phrase]) -> tuple[int, bool, list[Phrase]]:
    """Per lemma, the largest total a sentence states; lemmas add up. (total, any lower bound, phrases used).

    A sentence states the sum of its numbers (or a larger restated one, or with neither the total so
    far), plus one per "another".
    """
    total, bound, used = 0, False, []
    for lemma in dict.fromkeys(p.lemma for p in found):
        by_sentence: dict[int, list[Phrase]] = {}
        for p in found:
            if p.lemma == lemma:
                by_sentence.setdefault(p.sentence, []).append(p)
        best, best_used = 0, []
        for ps in by_sentence.values():  # in caption order
            numbers = [p for p in ps if p.kind in ("number", "more_than")]
            base, base_used = (sum(p.count for p in numbers), numbers) if numbers else (best, best_used)
            for p in ps:  # a restated number never adds, but it may be the largest said
                if p.kind == "restated" and p.count > base:
                    base, base_used = p.count, [p]
            more = [p for p in ps if p.kind == "another"]
            if base + len(more) > best:
                best, best_used = base + len(more), base_used + more
        total += best
        bound |= any(p.kind == "more_than" for p in best_used)
        used += best_used
    return total, bound, sorted(used, key=lambda p: p.span)


def _merge(category: str, found: list[Phrase]) -> Mention:
    positive = [p for p in found if not p.negated and not p.scene]
    numbered = [p for p in positive if p.kind in ("number", "more_than", "restated")]
    vague = [p for p in positive if p.kind == "vague"]
    articles = [p for p in positive if p.kind in ("article", "another")]
    negated = not positive and any(p.negated for p in found)
    if numbered:
        own = [p for p in numbered if p.lemma == _OWN_LEMMA[category]]
        more = [p for p in positive if p.kind == "another"]  # counted on top of the class's own name, if written
        total, bound, used = _tally(sorted(own + [replace(p, lemma=_OWN_LEMMA[category]) for p in more]
                                           if own else numbered + more, key=lambda p: p.span))
        quantifier = next((p.quantifier for p in used if p.kind == "more_than"), None)
        kind, count, bounds = ("more_than" if bound else "number"), total, (total, None if bound else total)
    elif vague:
        used = [max(vague, key=lambda p: p.bounds[0])]  # the strongest claim: "several ... many cars" -> many
        kind, count, bounds, quantifier = "vague", None, used[0].bounds, used[0].quantifier
    elif articles:
        used, kind, count, bounds, quantifier = articles, "article", len(articles), (len(articles),) * 2, None
    elif positive and all(p.kind in ("predicate", "repeat") for p in positive):  # "it is a plane" (, again)
        used, kind, count, bounds, quantifier = positive[:1], "predicate", 1, (1, 1), None
    elif positive:
        used, kind, count, bounds, quantifier = positive[:1], positive[0].kind, None, None, None
    elif negated:
        used, kind, count, bounds, quantifier = [p for p in found if p.negated][:1], "negated", 0, (0, 0), None
    else:  # scene phrases only
        used, kind, count, bounds, quantifier = found[:1], "none", None, None, None
    return Mention(category=category, kind=kind, count=count, bounds=bounds, quantifier=quantifier,
                   negated=negated, scene=all(p.scene for p in found), text=used[0].text, span=used[0].span,
                   spans=tuple(p.span for p in found))


def mentions(caption: str) -> dict[str, Mention]:
    """Class (or VEHICLE) -> what `caption` says about it, for every class it names."""
    by: dict[str, list[Phrase]] = {}
    for p in phrases(caption):
        by.setdefault(p.category, []).append(p)
    order = {c: i for i, c in enumerate(SURFACES)}
    return {c: _merge(c, by[c]) for c in sorted(by, key=order.__getitem__)}


# ---------------------------------------------------------------------------------------------
# Checking against annotations


def true_counts(objects: Iterable[Mapping[str, Any] | CropObject]) -> dict[str, int]:
    """DOTA class -> number of objects, every object counted (truncated and difficult too, like `describe`)."""
    counts: dict[str, int] = {}
    for i, o in enumerate(objects):
        cat = o["category"] if isinstance(o, Mapping) else o.category
        if cat not in DOTA_V15_CLASSES:
            raise ValueError(f"object {i}: category {cat!r} is not a DOTA v1.5 class; map it to one of "
                             f"{', '.join(DOTA_V15_CLASSES)} before grounding")
        counts[cat] = counts.get(cat, 0) + 1
    return {c: counts[c] for c in DOTA_V15_CLASSES if c in counts}


def _admits(bounds: tuple[int, int | None], n: int) -> bool:
    low, high = bounds
    return low <= n and (high is None or n <= high)


def _check(category: str, true: int, m: Mention | None, covered_by: str | None) -> ClassGrounding:
    if m is None:
        status = "missed" if true and not covered_by else "ok"
        return ClassGrounding(category, true, status, None, None, None, covered_by)
    if m.scene:
        return ClassGrounding(category, true, "ok", None, None, m, covered_by)
    checkable = m.bounds is not None and m.kind != "vague"
    count_ok = _admits(m.bounds, true) if checkable else None
    vague_ok = _admits(m.bounds, true) if m.kind == "vague" else None
    if m.negated:
        status = "denied" if true else "ok"
    elif not true:
        status = "hallucinated"
    elif count_ok is False:
        status = "miscounted"
    elif vague_ok is False:
        status = "vague_mismatch"
    else:
        status = "ok"
    return ClassGrounding(category, true, status, count_ok, vague_ok, m, covered_by)


def ground(caption: str, objects: Iterable[Mapping[str, Any] | CropObject]) -> Grounding:
    """What `caption` says per class, checked against one crop's objects (dicts as in captions.json, or CropObjects)."""
    truth = true_counts(objects)
    said = mentions(caption)
    classes: dict[str, ClassGrounding] = {}
    for c in DOTA_V15_CLASSES:
        if c in truth or c in said:
            group = next((g for g, members in GROUPS.items()
                          if c in members and g in said and not said[g].negated), None)
            classes[c] = _check(c, truth.get(c, 0), said.get(c), group)
    for g, members in GROUPS.items():
        if g in said:
            classes[g] = _check(g, sum(truth.get(c, 0) for c in members), said[g], None)
    return Grounding(
        caption=caption, true_counts=truth, classes=classes,
        hallucinated=[c for c, r in classes.items() if r.status == "hallucinated"],
        missed=[c for c, r in classes.items() if r.status == "missed"],
        denied=[c for c, r in classes.items() if r.status == "denied"],
        miscounted=[c for c, r in classes.items() if r.status == "miscounted"],
    )


def _pct(k: int, n: int) -> float | None:
    return round(100.0 * k / n, 2) if n else None


def aggregate(groundings: Iterable[Grounding | Mapping[str, Any]]) -> dict[str, Any]:
    """Totals and rates over many captions; takes `Grounding`s or their `to_dict()` (JSON lines).

    count_accuracy: % of checkable counts (numbers, bounds, articles, negations) that admit the
    true count; vague_accuracy likewise for vague quantifiers; hallucination_rate: % of classes
    named (not negated, not as the scene) that are absent; miss_rate: % of present DOTA classes
    never named. Rates are None when their denominator is 0.
    """
    keys = ("present", "missed", "mentioned", "hallucinated", "denied", "counted", "count_correct", "vague_counted",
            "vague_correct")
    total = dict.fromkeys(keys, 0)
    per_class: dict[str, dict[str, int]] = {}
    images = 0
    for g in groundings:
        d = g.to_dict() if isinstance(g, Grounding) else g
        images += 1
        for c, r in d["classes"].items():
            m = r["mention"]
            row = {
                "present": int(r["true_count"] > 0 and c not in GROUPS), "missed": int(r["status"] == "missed"),
                "mentioned": int(m is not None and not m["negated"] and not m["scene"]),
                "hallucinated": int(r["status"] == "hallucinated"), "denied": int(r["status"] == "denied"),
                "counted": int(r["count_correct"] is not None), "count_correct": int(r["count_correct"] is True),
                "vague_counted": int(r["vague_correct"] is not None), "vague_correct": int(r["vague_correct"] is True),
            }
            acc = per_class.setdefault(c, dict.fromkeys(keys, 0))
            for k, v in row.items():
                acc[k] += v
                total[k] += v
    order = {c: i for i, c in enumerate(SURFACES)}
    return {
        "images": images,
        "count_accuracy": _pct(total["count_correct"], total["counted"]),
        "vague_accuracy": _pct(total["vague_correct"], total["vague_counted"]),
        "hallucination_rate": _pct(total["hallucinated"], total["mentioned"]),
        "miss_rate": _pct(total["missed"], total["present"]),
        **total,
        "per_class": {c: per_class[c] for c in sorted(per_class, key=order.__getitem__)},
    }


def annotated(totals: Mapping[str, Any] | None) -> bool:
    """Whether an `aggregate` result covers any image: a set without object annotations (folder,
    Karpathy) aggregates 0 images, and its rates are None, not 0 %. A result written before
    `images` was counted is taken as annotated."""
    return bool(totals) and bool(totals.get("images", 1))
