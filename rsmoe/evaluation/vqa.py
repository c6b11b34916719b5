"""RSIEval-style VQA: question type -> expert, answer normalisation, accuracy per type.

RSIEval's gold answers are free text written by people, with their own inconsistencies ("Yes."
and "yes", "Ten." and "10", "more than 100", "Yellow and White"), so answers are compared after
`normalize_answer`:

- lower case, punctuation and articles dropped, hyphens split ("thirty-two" -> "thirty two");
- yes / no questions (an answer that starts with yes, yeah, yep, no, nope...): "yes" or "no",
  whatever follows ("Yes, there are." -> "yes");
- numbers: number words become digits ("Ten." -> "10", "thirty two" -> "32"); for `quantity`
  questions a sentence is reduced to its number ("There are seven planes in the image." -> "7");
  "more than 100" / "more than one hundred" / "over 100" -> "more than 100"; "many", "a lot
  (of ...)", "lots of", "numerous" -> "many";
- colour answers: the set of colour words, sorted ("Yellow and White" = "white and yellow").

`is_correct` is normalised equality, except for the free-text types (positions, relations,
scene, image, reasoning answers that are not yes/no): there the prediction is also right when it
contains every word of the normalised gold answer ("upper part" in "in the upper part of the
image"), because a zero-shot model answers in sentences.
"""
from __future__ import annotations

import re

from rsmoe.data.aspects import EXPERT_GROUPS
from rsmoe.data.describe import number_word

# RSIEval question type -> the caption aspect whose expert answers it (paper IV-E).
QTYPE_ASPECT: dict[str, str] = {
    "presence": "objects", "quantity": "objects", "color": "objects",
    "ab_position": "positions",
    "re_position": "relations", "area_comp": "relations", "road_ori": "relations",
    "image": "theme", "scene": "theme", "reasoning": "theme",
}
FREE_TEXT = frozenset({"ab_position", "re_position", "road_ori", "image", "scene", "reasoning"})

_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative", "not", "none"})
_ARTICLES = frozenset({"a", "an", "the"})
_COLOURS = frozenset("white gray grey black red blue yellow green orange brown purple pink silver golden gold beige "
                     "cyan turquoise tan khaki maroon navy violet".split())
_NUMBERS = {number_word(i).replace("-", " "): i for i in range(100)} | {"hundred": 100, "one hundred": 100}
_MANY = re.compile(r"^(?:many|lot|lots|numerous|plenty|countless|large number)\b")  # articles are gone
_MORE = re.compile(r"\b(?:more than|over|above|greater than) (\d+)\b")


class UnknownQuestionType(ValueError):
    pass


def expert_for(qtype: str, n_experts: int) -> str:
    """The expert (of N = `n_experts`) that answers questions of `qtype`."""
    if qtype not in QTYPE_ASPECT:
        raise UnknownQuestionType(f"unknown question type {qtype!r}; known types: {', '.join(QTYPE_ASPECT)}")
    aspect = QTYPE_ASPECT[qtype]
    if n_experts not in EXPERT_GROUPS:
        raise ValueError(f"n_experts must be one of {sorted(EXPERT_GROUPS)}, got {n_experts}")
    return next(name for name, aspects in EXPERT_GROUPS[n_experts].items() if aspect in aspects)


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
    text = answer.lower().replace("-", " ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,200 -> 1200
    words = re.findall(r"\d+(?:\.\d+)?(?![a-z\d])|[a-z\d]+", text)  # "3d" is a word, not the number 3
    return _words_to_digits([w for w in words if w not in _ARTICLES])


def normalize_answer(answer: str, qtype: str) -> str:
    """The canonical form of an answer to a question of type `qtype` (see the module doc)."""
    if qtype not in QTYPE_ASPECT:
        raise UnknownQuestionType(f"unknown question type {qtype!r}; known types: {', '.join(QTYPE_ASPECT)}")
    words = _tokens(answer)
    if not words:
        return ""
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO and (len(words) == 1 or qtype not in FREE_TEXT or words[1] in (",", "there", "it", "they")):
        return "no"
    text = " ".join(words)
    more = _MORE.search(text)
    if more:
        return f"more than {more.group(1)}"
    if _MANY.match(text):
        return "many"
    if qtype == "quantity":
        numbers = [w for w in words if w.isdigit()]
        if numbers:
            return numbers[0]
        if words[0] in ("several", "some", "few"):
            return "several"
    if qtype == "color":
        colours = sorted({"gray" if w == "grey" else w for w in words if w in _COLOURS})
        if colours:
            return " ".join(colours)
    return text


def is_correct(prediction: str, gold: str, qtype: str) -> bool:
    """Is `prediction` the gold answer, after normalisation (see the module doc)?"""
    p, g = normalize_answer(prediction, qtype), normalize_answer(gold, qtype)
    if not p or not g:
        return False
    if p == g:
        return True
    if qtype in FREE_TEXT and g not in ("yes", "no"):
        return set(g.split()) <= set(p.split())
    return False


def accuracy(rows: list[dict]) -> dict:
    """rows with `type`, `prediction`, `answer` (and optionally `correct`) -> accuracy (%) per
    type, `average` (the mean of the per-type accuracies, as the paper reports) and `overall`
    (over all questions)."""
    per: dict[str, list[bool]] = {}
    for row in rows:
        ok = row["correct"] if "correct" in row else is_correct(row["prediction"], row["answer"], row["type"])
        per.setdefault(row["type"], []).append(bool(ok))
    per_type = {t: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)}
                for t, v in sorted(per.items(), key=lambda kv: list(QTYPE_ASPECT).index(kv[0])
                                   if kv[0] in QTYPE_ASPECT else 99)}
    total = [x for v in per.values() for x in v]
    return {"per_type": per_type,
            "average": sum(d["accuracy"] for d in per_type.values()) / len(per_type) if per_type else None,
            "overall": 100.0 * sum(total) / len(total) if total else None, "n": len(total)}
