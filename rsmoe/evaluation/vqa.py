"""RSIEval-style VQA: question type -> expert, and answers judged by what they say, per type.

RSIEval's gold answers are free text written by people ("Yes.", "yes", "Ten.", "10", "more than
100", "Yellow and White", "The storage tanks are underneath the trees.") and a zero-shot model
answers in sentences, so `normalize_answer(answer, qtype, question)` reduces an answer to the claim
it makes and `is_correct(prediction, gold, qtype, question)` compares claims. The question names
what is asked about ("How many *ships* ...", "... covered by *water* larger than ... *built-up
ground*"): objects are matched singular or plural, DOTA classes with their synonyms
(`grounding.SURFACES`: a car is a small vehicle, not a large one), a few other nouns too ("river"
for "waterbody"). Without a question each type falls back to a rule that needs none. Per type:

- presence, area_comp, and any yes/no question (starts "Is", "Does", "All"..., no " or "): the
  answer's polarity. A leading yes / no word decides. Else presence: a mention of the asked object
  not negated in its clause -> yes ("There are two ships."), only negated ones -> no ("There are
  no ships", "No ships can be seen", "ships are not visible"); an asked scene ("Is this an
  industrial area?") is no when another scene type is named. area_comp: a comparison affirms
  when it ranks the two areas as the question does ("water is larger than built-up ground",
  "built-up ground is smaller than water", "mostly covered by water"); "equal" / "similar" -> no.
  Otherwise a negation -> no, a bare affirmation ("There are.") -> yes, else undecided (wrong).
- quantity: the count stated about the asked object: digits, number words, "more than N", "many",
  "several", "no" = 0, "a" = 1 before the object's noun. A number about something else ("a
  sequence of three images" for "How many ships?") is not the answer; a bare number ("Ten.",
  "There are ten.") is. Without a question: the one count stated (numbers of images ignored);
  different counts -> undecided. An exact count above N meets "more than N" (`describe` writes
  "More than one hundred." from 100 on).
- color: the set of colour words (grey = gray, golden = gold, "not red" drops red).
- ab_position: the set of places, each a 3x3 grid label (top-left, top, ..., center, ...,
  bottom-right: "upper left", "top-left corner", "in the upper left part" -> top-left; "upper
  part / half / edge" -> top); "and" / "or" separate places; "scattered" -> everywhere; a
  negation with no place -> absent ("There is no water area in the image.").
- re_position: the relations (left, right, above, below, next to, around, inside, across,
  between) of the question's first object to its second; an answer whose subject is the second
  object is inverted ("the tanks are underneath the trees" = trees above tanks). A gold with a
  direction needs the same directions; else its relations must be among the prediction's.
- scene: the scene type named first (`diagnostics.scene_type_named`: "a car park" = parking lot).
- image: the attributes named (color / panchromatic, high / low resolution, aerial / satellite);
  the gold's must be among the prediction's. A yes/no image question compares the answer's
  attribute with the question's ("Is this a high resolution image?" "High resolution." = yes).
- road_ori: the orientation (horizontal, vertical, diagonal).
- color, ab_position, re_position read only the sentences that name the asked object(s).
- reasoning, or a gold no rule reads: its normalised words (lower case, no punctuation or
  articles, number words as digits), and for free-text types a prediction containing them all
  (singular, "is" / "are" ignored) is right too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rsmoe.data.aspects import QTYPE_ASPECT, UnknownQuestionType, expert_for  # noqa: F401 (re-exported)
from rsmoe.data.describe import number_word
from rsmoe.evaluation.diagnostics import scene_type_named
from rsmoe.evaluation.grounding import SURFACES, VEHICLE

FREE_TEXT = frozenset({"ab_position", "re_position", "road_ori", "image", "scene", "reasoning"})

_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative", "not", "none"})
_ARTICLES = frozenset({"a", "an", "the"})
_COLOURS = frozenset("white gray grey black red blue yellow green orange brown purple pink silver golden gold beige "
                     "cyan turquoise tan khaki maroon navy violet".split())
_NUMBERS = {number_word(i).replace("-", " "): i for i in range(100)} | {"hundred": 100, "one hundred": 100}
_NEG = re.compile(r"\b(?:no|not|none|never|neither|nor|without|zero|cannot|nothing|nowhere|absent|missing|lacks?|"
                  r"lacking)\b|n't\b")
_CLAUSE = re.compile(r"[,.;:!?]|\b(?:but|while|although|whereas|however)\b")
_YES_NO_QUESTION = re.compile(r"^(?:is|are|does|do|did|can|could|was|were|has|have|will|would|should|all|any)\b"
                              r"(?!.*\bor\b)")


def _check_type(qtype: str) -> None:
    if qtype not in QTYPE_ASPECT:
        raise UnknownQuestionType(f"unknown question type {qtype!r}; known types: {', '.join(QTYPE_ASPECT)}")


_GUESS = (  # (question pattern, type), first match wins; for questions that come without a type
    (r"^how many|\bnumber of\b|\bcount\b", "quantity"),
    (r"\b(?:panchromatic|resolution|colou?r image|satellite|aerial)\b", "image"),
    (r"\bcolou?rs?\b", "color"),
    (r"\brelative position\b|\bbetween\b.*\band\b|\b(?:left|right) of\b|\bnext to\b", "re_position"),
    (r"^where\b", "ab_position"),
    (r"\barea\b.*\b(?:larger|smaller|greater|less|more)\b", "area_comp"),
    (r"\broad\b.*\b(?:direction|run|runs|orient)", "road_ori"),
    (r"\btheme\b|\bscene\b|\bwhat kind of (?:area|place)\b", "scene"),
    (r"^(?:is|are|does|do|can)\b.*\b(?:there|contain|contains|show|any)\b", "presence"),
)


def guess_type(question: str) -> str:
    """An RSIEval question type for a free question (keyword rules; `reasoning` when none fits)."""
    q = question.lower().strip()
    return next((t for pattern, t in _GUESS if re.search(pattern, q)), "reasoning")


# ---------------------------------------------------------------------------------------------
# Text


def _low(text: str) -> str:
    """Lower case, hyphens and slashes as spaces ("top-left" = "top left"), 1,200 -> 1200."""
    text = re.sub(r"[-_/\u2013\u2014]", " ", text.lower().replace("\u2019", "'"))
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


def _words_to_digits(words: list[str]) -> list[str]:
    """Replace runs of number words ("thirty two") by digits ("32"), longest run first."""
    out, i = [], 0
    while i < len(words):
        for span in (3, 2, 1):
            phrase = " ".join(words[i:i + span])
            if len(words[i:i + span]) == span and phrase in _NUMBERS:
                out.append(str(_NUMBERS[phrase]))
                i += span
                break
        else:
            out.append(words[i])
            i += 1
    return out


def _tokens(answer: str) -> list[str]:
    """The words of an answer, articles and punctuation dropped; "3d" is a word, not the number 3."""
    words = re.findall(r"\d+(?:\.\d+)?(?![a-z\d])|[a-z\d]+", _low(answer))
    return _words_to_digits([w for w in words if w not in _ARTICLES])


def _content(text: str) -> set[str]:
    """Words of a free-text answer, singular, without "is" / "are" ("there are no pools" = "there is no pool")."""
    return {_lemma(w) for w in text.split() if w not in ("is", "are", "was", "were", "be", "been")}


def _lemma(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if re.search(r"(?:ch|sh|x|ss)es$", word):
        return word[:-2]
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _forms(word: str) -> str:
    """A regex for a noun in the singular and plural."""
    lemma = _lemma(word)
    if len(lemma) > 2 and lemma.endswith("y") and lemma[-2] not in "aeiou":
        return re.escape(lemma[:-1]) + "(?:y|ies)"
    return re.escape(lemma) + "(?:e?s)?"


# ---------------------------------------------------------------------------------------------
# What a question asks about


# Words that never name the thing asked about ("the area covered by water": water).
_FILLER = frozenset("a an the any some this that these those there is are of or and by up in on image images photo "
                    "picture area areas region regions part parts portion ground land surface cover covers covered "
                    "covering occupied occupy occupies taken total than one ones lot lots".split())
# Question noun -> what else in an answer names it (one way: a river is a waterbody, not back).
_WATERS = r"water ?bod(?:y|ies)|bod(?:y|ies) of water|rivers?|lakes?|ponds?|seas?|reservoirs?|canals?"
_ALSO = {"waterbody": "water|" + _WATERS, "water": _WATERS,
         "tree": r"forests?|woods|woodlands?", "grassland": r"grass|lawns?|meadows?",
         "building": r"houses?", "road": r"streets?|highways?|motorways?|roadways?"}
_CLASS_ENDS = [(c, re.compile(rf"\b(?:{p})$")) for c, lemmas in SURFACES.items() for p in lemmas.values()]


def _class_at(text: str, end: int) -> str | None:
    """The DOTA class (or VEHICLE) whose name ends at `end`, the longest name winning ("large vehicles")."""
    found = [(m.start(), c) for c, pattern in _CLASS_ENDS if (m := pattern.search(text[max(0, end - 40):end]))]
    return min(found)[1] if found else None


@dataclass(frozen=True)
class _Thing:
    """Something a question asks about, and how an answer names it."""

    pattern: re.Pattern[str]
    cls: str | None  # its DOTA class (or VEHICLE), if it names one
    scene: str | None  # the scene type it names ("industrial area"), if no class

    def find(self, low: str) -> list[tuple[int, int]]:
        """Spans naming it in a `_low` text; a name of another class ("large vehicles" for small) is not it."""
        allowed = {self.cls, None} | ({"small-vehicle", "large-vehicle"} if self.cls == VEHICLE else
                                      {VEHICLE} if self.cls in ("small-vehicle", "large-vehicle") else set())
        return [m.span() for m in self.pattern.finditer(low)
                if self.cls is None or _class_at(low, m.end()) in allowed]


def _thing(phrase: str) -> _Thing | None:
    low = _low(phrase).strip(" ?.,")
    words = [w for w in re.findall(r"[a-z]+", low) if w not in _FILLER]
    if not words:
        return None
    cls = _class_at(low, len(low))
    if cls is not None:  # its surfaces (a car is a small vehicle), and the question's own head noun
        groups = [cls] + (["small-vehicle", "large-vehicle"] if cls == VEHICLE else [])
        names = [p for c in groups for p in SURFACES[c].values()] + [_forms(words[-1])]
    else:
        names = [_forms(w) for w in words] + [_ALSO[_lemma(w)] for w in words if _lemma(w) in _ALSO]
    scene = None if cls else scene_type_named(low)
    return _Thing(re.compile(r"\b(?:" + "|".join(names) + r")\b"), cls, scene)


_OBJECT_END = (r"(?=\s+(?:are|is|can|could|do|does|was|were|there|in|on|over|at|near|inside|within|around|along|"
               r"visible|present|included|shown|parked|located|with|that|which|from|under|next|beside|by)\b|\s*[?.]|$)")
_PRESENCE_LEAD = re.compile(r"^(?:in (?:this|the) (?:image|photo|picture),? )?(?:is|are|does|do|can|could|was|were|"
                            r"has|have)\s+(?:(?:there|this|it|the|these|you)\b\s*)?(?:(?:image|photo|picture|scene)"
                            r"\b\s*)?(?:(?:contains?|shows?|includes?|has|have|see|display|depict)\b\s*)?"
                            r"(?:(?:any|an|a|the|some)\b\s*)?")


def _asked_object(question: str, qtype: str) -> _Thing | None:
    """The object a question asks about ("How many large vehicles ...", "Where is the road ...")."""
    q = question.lower().strip()
    if qtype == "quantity":
        m = re.search(r"\b(?:how many|number of|count)\s+(?:the\s+)?(.+?)" + _OBJECT_END, q)
    elif qtype == "ab_position":
        m = re.search(r"^where (?:is|are)\s+(.+?)" + _OBJECT_END, q)
    elif qtype == "color":
        m = re.search(r"\bcolou?rs? (?:of|is|are)\s+(.+?)" + _OBJECT_END, q)
    else:
        m = re.match(r"(.+?)" + _OBJECT_END, _PRESENCE_LEAD.sub("", q))
    return _thing(m.group(1)) if m else None


def _about(answer: str, things: list[_Thing]) -> str:
    """The sentences of `answer` that name most of `things` (all of it when none names any): a
    sentence answer may go on about other objects ("The ships are white. The harbor is gray.")."""
    sentences = re.split(r"(?<=[.!?;])\s+", answer.strip())
    named = [sum(bool(t.find(_low(s))) for t in things) for s in sentences]
    best = max(named, default=0)
    return " ".join(s for s, n in zip(sentences, named) if n == best) if best else answer


# ---------------------------------------------------------------------------------------------
# Polarity: presence, area comparison, yes/no questions


def _negated(low: str, span: tuple[int, int]) -> bool:
    """Is the mention at `span` denied in its clause ("no ships", "ships are not visible")?"""
    before = _CLAUSE.split(low[:span[0]])[-1].split()[-6:]
    after = _CLAUSE.split(low[span[1]:])[0].split()[:5]
    return bool(_NEG.search(" ".join(before)) or re.search(r"\b(?:not|never|cannot|absent|missing|nowhere)\b|n't\b",
                                                          " ".join(after)))


_AFFIRM = re.compile(r"^(?:there (?:is|are|exists?)|it (?:is|does|has|contains)|they (?:are|do)|(?:this|the) "
                     r"(?:image|photo|picture|scene) (?:contains|shows|has|includes|does|is))\b|"
                     r"\b(?:can be seen|(?:is|are) (?:visible|present)|exists?)\b")
_BARE = frozenset("there is are it does do they exist exists present visible some one several many few can be seen "
                  "in the this image photo picture indeed certainly definitely".split())


def _lead(answer: str) -> str | None:
    """"yes" / "no" when the answer starts with a yes or no word ("Yes, there are.", "Nope.")."""
    words = _tokens(answer)
    return None if not words else "yes" if words[0] in _YES else "no" if words[0] in _NO else None


def _polarity(answer: str, thing: _Thing | None = None) -> str | None:
    """"yes", "no", or None (undecided), about `thing` when the question names one."""
    low, lead = _low(answer).strip(), _lead(answer)
    words = re.findall(r"[a-z']+|\d+", low)
    if lead or not words:
        return lead
    if thing is not None:
        spans = thing.find(low)
        if spans:
            return "yes" if any(not _negated(low, s) for s in spans) else "no"
        named = scene_type_named(low) if thing.scene else None
        if named:
            return "no" if named != thing.scene or _NEG.search(low) else "yes"
    if _NEG.search(low):
        return "no"
    if _AFFIRM.search(low) and (thing is None or {w for w in _tokens(answer) if not w.isdigit()} <= _BARE):
        return "yes"
    return None


_BIGGER = r"larger|greater|bigger|more|higher|wider|exceeds?|outnumbers?"
_SMALLER = r"smaller|less|lesser|fewer|lower|narrower"
_EQUAL = r"same|equal|similar|comparable"
_DOMINANT = r"mostly|mainly|largely|predominantly|dominat\w*|majority|most|largest|biggest|greatest"
_COMPARATIVE = re.compile(rf"\b(?:(?P<big>{_BIGGER})|(?P<small>{_SMALLER})|(?P<eq>{_EQUAL})|(?P<dom>{_DOMINANT}))\b")


def _compared_areas(question: str) -> tuple[_Thing, _Thing, bool] | None:
    """(A, B, asks A bigger?) of "Is the area covered by A larger than that of B?"."""
    q = _low(question)
    m = re.search(rf"(?P<a>.*?)\b(?:(?P<big>{_BIGGER})|{_SMALLER})\b(?P<mid>.*?)\bthan\b(?P<b>.*)", q)
    if not m:
        return None
    a = re.sub(r"^.*?\b(?:occupied|covered|taken up) by\b", "", m["a"])
    a = a if _thing(a) else m["mid"]  # "is there more water than vegetation?"
    b = re.sub(r"^\s*(?:(?:that|those) of|the (?:area|one|ones)s? (?:occupied|covered|taken up) by)\b", "", m["b"])
    b = re.split(r"\b(?:in|on) (?:this|the) (?:image|photo|picture)\b|\?", b)[0]
    things = _thing(a), _thing(b)
    return (things[0], things[1], m["big"] is not None) if things[0] and things[1] else None


def _comparison(answer: str, question: str) -> str | None:
    """Does a sentence comparing the two areas affirm the question ("yes") or contradict it ("no")?"""
    areas = _compared_areas(question)
    low = _low(answer)
    cmp = _COMPARATIVE.search(low)
    if areas is None or cmp is None:
        return None
    if cmp["eq"]:
        return "no"
    a, b, asks_bigger = areas
    named = sorted([(s, "a") for s in a.find(low)] + [(s, "b") for s in b.find(low)])
    if cmp["dom"]:  # "mostly covered by water": the area named with it is the larger
        subject, end = (named[0][1], named[0][0][1]) if named else ("a", 0)
    else:  # the area named nearest before the comparative is its subject, else the other of the one after it
        before = [(s, who) for s, who in named if s[1] <= cmp.start()]
        after = [who for s, who in named if s[0] >= cmp.end()]
        subject, end = (before[-1][1], before[-1][0][1]) if before else ("b" if after[:1] == ["a"] else "a", 0)
    bigger = not cmp["small"]
    if _NEG.search(low[end:cmp.start()]):  # "is not larger"
        bigger = not bigger
    return "yes" if (subject == "a") == (bigger == asks_bigger) else "no"


# ---------------------------------------------------------------------------------------------
# Counts


_VAGUE = ((r"\b(?:a lot of|lots of|a (?:large|great) number of|plenty of|a great many|dozens of|hundreds of|"
           r"countless|numerous|lots|lot)\b", "many"),
          (r"\b(?:a few|a couple of|a handful of|a small number of|a number of|few)\b", "several"))
_COUNT_END = frozenset("and or in on at of with near by from to is are was were be been there which that who can could "
                       "may might will parked located visible seen present total altogether overall around along next "
                       "beside a an the".split())
_PICTURE = re.compile(r"\b(?:images?|pictures?|photos?|photographs?|frames?|views?|scenes?)\b")


def _claims(answer: str) -> list[tuple[str, str, bool]]:
    """(count, the words it counts, is an article) for each quantity stated, in order."""
    low = _low(answer)
    for pattern, word in _VAGUE:
        low = re.sub(pattern, word, low)
    words = _words_to_digits(re.findall(r"\d+(?:\.\d+)?(?![a-z\d])|[a-z\d]+(?:'[a-z]+)?|[.,;:!?]", low))
    if len(words) > 1 and (words[0] in _YES or words[0] in _NO):
        words = words[1:]  # "No, there are ten." states ten
    out, i = [], 0
    while i < len(words):
        w, nxt = words[i], words[i + 1:i + 3]
        j, count = i + 1, None
        if w in ("more", "greater") and len(nxt) == 2 and nxt[0] == "than" and nxt[1].isdigit():
            j, count = i + 3, f"more than {nxt[1]}"
        elif w in ("over", "above") and nxt[:1] and nxt[0].isdigit():
            j, count = i + 2, f"more than {nxt[0]}"
        elif w.isdigit():
            count = w
        elif w in ("no", "zero", "none"):
            count = "0"
        elif w in ("many", "several", "some"):
            count = "several" if w == "some" else w
        elif w in ("a", "an", "single", "another"):
            count = "1"
        if count is None:
            i += 1
            continue
        k = j
        while k < len(words) and k < j + 4 and words[k] not in _COUNT_END and words[k].isalpha():
            k += 1
        out.append((count, " ".join(words[j:k]), w in ("a", "an", "single", "another")))
        i = j
    return out


def _count(answer: str, thing: _Thing | None) -> str | None:
    """The count an answer states, about `thing` when the question names one (see the module doc)."""
    claims = _claims(answer)
    if thing is not None:
        about = [(c, article) for c, words, article in claims if thing.find(words)]
        stated = [c for c, article in about if not article] or [c for c, _ in about]
        if stated:
            return stated[0]
    numbers = [(c, words) for c, words, article in claims if not article and not _PICTURE.search(words)]
    if thing is not None and any(words for _, words in numbers):
        return None  # a number about something else ("three images" for "How many ships?")
    return numbers[0][0] if numbers and len({c for c, _ in numbers}) == 1 else None


# ---------------------------------------------------------------------------------------------
# Colours, places, relations, scenes, image attributes, road orientation


def _colours(answer: str) -> str | None:
    low = re.sub(r"\b(?:not|no)\s+(?:\w+\s+)?(?=\w)", " not_", _low(answer))  # "not red": not_red is no colour
    found = {{"grey": "gray", "golden": "gold"}.get(w, w) for w in re.findall(r"[a-z_]+", low) if w in _COLOURS}
    return " ".join(sorted(found)) or None


_TOP, _BOTTOM = r"\b(?:top|upper|uppermost|north\w*)\b", r"\b(?:bottom|lower|lowest|south\w*)\b"
_LEFT, _RIGHT = r"\b(?:left\w*|(?:north|south)?west\w*)\b", r"\b(?:right\w*|(?:north|south)?east\w*)\b"
_CENTRE = r"\b(?:cent(?:er|re|ral|rally)|middle)\b"
_SCATTERED = r"\b(?:scattered|spread|everywhere|throughout|all over|whole image|entire image)\b"


def _places(answer: str) -> str | None:
    """The set of places an ab_position answer names, as 3x3 grid labels (see the module doc)."""
    low = _low(answer)
    labels = set()
    for part in re.split(r"\b(?:and|or|while|but|whereas)\b|;", low):
        v = [name for name, p in (("top", _TOP), ("bottom", _BOTTOM)) if re.search(p, part)]
        h = [name for name, p in (("left", _LEFT), ("right", _RIGHT)) if re.search(p, part)]
        v, h = v if len(v) == 1 else [], h if len(h) == 1 else []  # "from top to bottom" is no one place
        if v or h:
            labels.add("-".join(v + h))
        elif re.search(_CENTRE, part):
            labels.add("center")
    if labels:
        return " and ".join(sorted(labels))
    if re.search(_SCATTERED, low):
        return "everywhere"
    return "absent" if _NEG.search(low) else None


_RELATIONS = (("left", r"\bleft\b|\bwest\b"),
              ("right", r"\bright\b(?! (?:next|beside|above|below|under|over|by|at|in|on|behind|along|across)\b)|"
                        r"\beast\b"),
              ("above", r"\babove\b|\bover\b|\bon (?:the )?top of\b|\bnorth of\b|\bupper\b"),
              ("below", r"\bbelow\b|\bunder(?:neath)?\b|\bbeneath\b|\bsouth of\b|\blower\b"),
              ("next to", r"\bnext to\b|\bbesides?\b|\badjacent\b|\balong(?:side)?\b|\bnear(?:by)?\b|\bclose to\b|"
                          r"\bneighbou?r\w*|\bborder\w*|\bside by side\b"),
              ("around", r"\baround\b|\bsurround\w*|\bencircl\w*|\benclos\w*"),
              ("inside", r"\binside\b|\bwithin\b|\bamong\b|\bamid\b|\bin the middle of\b"),
              ("across", r"\bacross\b|\bopposite\b|\bother side\b"), ("between", r"\bbetween\b"))
_INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above", "around": "inside",
            "inside": "around"}
_DIRECTIONS = frozenset({"left", "right", "above", "below"})


def _related_objects(question: str) -> tuple[_Thing, _Thing] | None:
    q = _low(question).strip()
    end = r"(?:\s+(?:in|on) (?:the|this) (?:image|photo|picture))?\s*[?.]?$"
    m = (re.search(r"\bbetween (?P<a>.+?) and (?P<b>.+?)" + end, q)
         or re.search(r"\b(?:position|location) of (?P<a>.+?) (?:relative to|with respect to|in relation to|"
                      r"compared (?:to|with)|to|and) (?P<b>.+?)" + end, q)
         or re.search(r"^where (?:is|are) (?P<a>.+?) (?:relative to|with respect to|in relation to|"
                      r"compared (?:to|with)) (?P<b>.+?)" + end, q))
    things = (_thing(m["a"]), _thing(m["b"])) if m else (None, None)
    return things if things[0] and things[1] else None  # type: ignore[return-value]


def _relations(answer: str, objects: tuple[_Thing, _Thing] | None) -> str | None:
    """The relations of the question's first object to its second (as stated, without a question)."""
    low = _low(answer)
    found = [(m.start(), name) for name, p in _RELATIONS if (m := re.search(p, low))]
    if not found:
        return None
    labels = {name for _, name in found}
    if objects:
        first = min(found)[0]  # the object named nearest before the first relation word is its subject
        named = sorted([(s, "a") for s in objects[0].find(low)] + [(s, "b") for s in objects[1].find(low)])
        before = [who for s, who in named if s[1] <= first]
        if before and before[-1] == "b":
            labels = {_INVERSE.get(x, x) for x in labels}
    return " and ".join(sorted(labels))


def _relation_match(prediction: str, gold: str) -> bool:
    p, g = set(prediction.split(" and ")), set(gold.split(" and "))
    return p & _DIRECTIONS == g & _DIRECTIONS if g & _DIRECTIONS else g <= p


_IMAGE = (("bands", "panchromatic", r"panchromatic|black and white|gr[ae]y ?scale|monochrom\w*|single band"),
          ("bands", "color", r"colou?r(?:ed|ful)?|rgb|true colou?r|multi ?spectral"),
          ("resolution", "high resolution", r"(?:very )?high(?:er)? (?:spatial )?resolution|vhr|fine resolution|"
                                            r"sub ?met(?:er|re)"),
          ("resolution", "low resolution", r"low(?:er)? (?:spatial )?resolution|coarse resolution|blurry|blurred"),
          ("platform", "aerial", r"aerial|airborne|drone|uav"), ("platform", "satellite", r"satellite|spaceborne"))


def _image_attributes(text: str) -> dict[str, str]:
    """Family -> value of the first attribute named and not negated ("not a panchromatic image")."""
    low, found = _low(text), []
    for family, value, pattern in _IMAGE:
        for m in re.finditer(rf"\b(?:{pattern})\b", low):
            if not re.search(r"\b(?:not|non|no)\s+(?:an?\s+)?$", low[:m.start()]):
                found.append((m.start(), family, value))
    out: dict[str, str] = {}
    for _, family, value in sorted(found):
        out.setdefault(family, value)
    return out


def _image_polarity(answer: str, question: str) -> str | None:
    """A yes/no image question: the answer's attribute against the question's."""
    asked, said = _image_attributes(question), _image_attributes(answer)
    shared = [f for f in asked if f in said]
    if shared and not _lead(answer):
        return "yes" if all(asked[f] == said[f] for f in shared) else "no"
    return _polarity(answer)


_ORIENTATIONS = (("diagonal", r"diagonal\w*|(?:north|south) ?(?:east|west)\w*|(?:top|bottom|upper|lower) (?:left|right)"
                              r" (?:\w+ )?to (?:the )?(?:top|bottom|upper|lower) (?:left|right)"),
                 ("horizontal", r"horizontal\w*|east (?:to )?west|west (?:to )?east|(?:left|right) to (?:the )?"
                                r"(?:left|right)|side to side"),
                 ("vertical", r"vertical\w*|north (?:to )?south|south (?:to )?north|(?:top|bottom) to (?:the )?"
                              r"(?:top|bottom)|up and down"))


def _orientation(answer: str) -> str | None:
    low = _low(answer)
    return next((name for name, p in _ORIENTATIONS if re.search(rf"\b(?:{p})\b", low)), None)


# ---------------------------------------------------------------------------------------------
# Judging


def _asks_yes_no(qtype: str, question: str | None, answer: str) -> bool:
    if qtype in ("presence", "area_comp") or question is not None:
        return qtype in ("presence", "area_comp") or bool(_YES_NO_QUESTION.match(question.lower().strip()))
    return qtype not in ("quantity", "color", "ab_position") and _lead(answer) is not None  # as answered


def _claim(answer: str, qtype: str, question: str | None) -> str | None:
    """The canonical claim of an answer (see the module doc); None when no rule reads one."""
    if _asks_yes_no(qtype, question, answer):
        if qtype == "presence":
            return _polarity(answer, _asked_object(question, qtype) if question else None)
        if qtype == "area_comp":
            if not question or _lead(answer):
                return _polarity(answer)
            return _comparison(answer, question) or ("no" if _NEG.search(_low(answer)) else None)
        said = _image_polarity(answer, question) if qtype == "image" and question else _polarity(answer)
        if said:
            return said
    if qtype == "quantity":
        return _count(answer, _asked_object(question, qtype) if question else None)
    if qtype == "re_position":
        objects = _related_objects(question) if question else None
        return _relations(_about(answer, list(objects)) if objects else answer, objects)
    if qtype in ("color", "ab_position") and question and (thing := _asked_object(question, qtype)):
        answer = _about(answer, [thing])
    readers = {"color": _colours, "ab_position": _places, "scene": lambda a: scene_type_named(_low(a)),
               "road_ori": _orientation,
               "image": lambda a: " and ".join(sorted(_image_attributes(a).values())) or None}
    return readers[qtype](answer) if qtype in readers else None


def normalize_answer(answer: str, qtype: str, question: str | None = None) -> str:
    """The canonical form of an answer to a question of type `qtype` (see the module doc): its
    claim ("yes", "7", "more than 100", "white yellow", "top-left", "parking lot"), else its words."""
    _check_type(qtype)
    claim = _claim(answer, qtype, question)
    return claim if claim is not None else " ".join(_tokens(answer))


def is_correct(prediction: str, gold: str, qtype: str, question: str | None = None) -> bool:
    """Does `prediction` say what `gold` says, in answer to `question` of type `qtype` (module doc)?"""
    _check_type(qtype)
    g, p = _claim(gold, qtype, question), _claim(prediction, qtype, question)
    if g is None:  # no rule reads the gold: its words, or for free-text types a sentence containing them
        g, p = " ".join(_tokens(gold)), " ".join(_tokens(prediction))
        return bool(g) and (p == g or (qtype in FREE_TEXT and _content(g) <= _content(p)))
    if p is None:
        return False
    if p == g:
        return True
    if qtype == "quantity" and g.startswith("more than ") and p.isdigit():
        return int(p) > int(g.split()[-1])
    if qtype == "re_position":
        return _relation_match(p, g)
    if qtype == "image" and g not in ("yes", "no"):
        return set(g.split(" and ")) <= set(p.split(" and "))
    return False


def accuracy(rows: list[dict]) -> dict:
    """rows with `type`, `prediction`, `answer`, optionally `question` and `correct` -> accuracy (%)
    per type, `average` (the mean of the per-type accuracies, as the paper reports) and `overall`
    (over all questions)."""
    per: dict[str, list[bool]] = {}
    for row in rows:
        ok = row["correct"] if "correct" in row else is_correct(row["prediction"], row["answer"], row["type"],
                                                                question=row.get("question"))
        per.setdefault(row["type"], []).append(bool(ok))
    per_type = {t: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)}
                for t, v in sorted(per.items(), key=lambda kv: list(QTYPE_ASPECT).index(kv[0])
                                   if kv[0] in QTYPE_ASPECT else 99)}
    total = [x for v in per.values() for x in v]
    return {"per_type": per_type,
            "average": sum(d["accuracy"] for d in per_type.values()) / len(per_type) if per_type else None,
            "overall": 100.0 * sum(total) / len(total) if total else None, "n": len(total)}
