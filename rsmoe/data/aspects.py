"""Split a caption into aspect segments, one per RS-MoE expert (theme / objects / positions / relations).

The paper trains one expert per aspect of a caption but does not say how reference captions are
cut into expert targets. We cut at sentence level with readable keyword rules: every sentence
goes to exactly one aspect, in caption order, and nothing is lost.

Aspects (the definitions the hand-labelled sample `tests/fixtures/aspect_sentences.json` uses):

- **theme**: the image as a whole. Image type or sensor ("This is a high-resolution aerial
  image"), resolution, colour mode (panchromatic, grayscale), quality, lighting, weather ("a sunny
  day since we can see the shadows"); the scene type or overall content stated at image level
  ("The image shows a parking lot", "This is ... showing an airport"); summaries ("Overall, ...").
- **objects**: which objects there are (or are absent), how many, their colours, sizes, shapes,
  states ("thirty-seven large-vehicles", "some of the trucks are white"). Being *in* the scene the
  theme already names ("In the parking lot, there are many vehicles") is not a relation.
- **positions**: something placed in the image frame: corners, halves, top / bottom / left /
  right / centre *of the image* ("in the top left of the image there is a structure", "at the
  bottom of the image", "The bottom left corner shows a structure").
- **relations**: a relation between two objects or regions, or how objects are arranged among
  themselves ("parked along the road", "next to the terminal", "surrounded by trees", "to the
  left of", "connected to", "parked in rows", "with a car driving on it").

Ties are broken by the priority theme > positions > relations > objects:
a sentence that states a property of the whole image is theme even when it also places things;
a frame position beats a relation ("In the bottom left corner of the image, there is a parking
lot next to the road" is positions: the frame anchors the sentence, and the N=3 grouping puts
positions and relations in one expert anyway); any relation beats plain object description,
because nearly every sentence names objects.

Sentence splitting (`split_sentences`) keeps abbreviations ("e.g.", "approx."), decimals
("0.5 m"), initials ("U.S.") together, splits a missing space after a period ("cars.The"),
collapses runs of whitespace and keeps a last sentence without a final period.

    python -m rsmoe.data.aspects CAPTIONS_JSON   # coverage statistics of an RSICap / RSIEval file
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from rsmoe.data.records import ASPECTS
from rsmoe.params import QUESTION_TYPES

# Number of experts -> expert name -> the aspects whose segments it writes (paper Table V).
EXPERT_GROUPS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {"caption": ASPECTS},
    2: {"theme": ("theme",), "details": ("objects", "positions", "relations")},
    3: {"theme": ("theme",), "objects": ("objects",), "relations": ("positions", "relations")},
    4: {a: (a,) for a in ASPECTS},
}

# RSIEval question type -> the caption aspect whose expert answers it (paper IV-E).
QTYPE_ASPECT: dict[str, str] = {
    "presence": "objects", "quantity": "objects", "color": "objects",
    "ab_position": "positions",
    "re_position": "relations", "area_comp": "relations", "road_ori": "relations",
    "image": "theme", "scene": "theme", "reasoning": "theme",
}
assert tuple(QTYPE_ASPECT) == QUESTION_TYPES, "rsmoe.params.QUESTION_TYPES and QTYPE_ASPECT name other types"


class UnknownQuestionType(ValueError):
    pass


def expert_for(qtype: str, n_experts: int) -> str:
    """The expert (of N = `n_experts`) that answers questions of `qtype`: the one whose aspects
    include the type's aspect (used to train on QA pairs and to route questions)."""
    if qtype not in QTYPE_ASPECT:
        raise UnknownQuestionType(f"unknown question type {qtype!r}; known types: {', '.join(QTYPE_ASPECT)}")
    if n_experts not in EXPERT_GROUPS:
        raise ValueError(f"n_experts must be one of {sorted(EXPERT_GROUPS)}, got {n_experts}")
    aspect = QTYPE_ASPECT[qtype]
    return next(name for name, aspects in EXPERT_GROUPS[n_experts].items() if aspect in aspects)


# ---------------------------------------------------------------------------------------------
# Sentence splitting

# Tokens that end in a period but do not end a sentence (compared lower-case, without the dot).
_ABBREVIATIONS = frozenset({
    "e.g", "i.e", "eg", "ie", "approx", "appr", "ca", "cf", "vs", "viz", "mr", "mrs", "dr", "sq", "resp", "incl", "al",
})
_BEFORE_NUMBER = frozenset({"no", "nos", "fig", "figs"})  # "No. 5", but "The answer is no. The cars ..."
_END = re.compile(r"[.!?]+[\"'”’)\]]*")
_LAST_TOKEN = re.compile(r"(\S+)$")


def _is_boundary(text: str, m: re.Match[str]) -> bool:
    """Does the punctuation run `m` (".", "?!", '."') end a sentence?"""
    end = m.end()
    if end >= len(text):
        return True
    nxt = text[end]
    if "." not in m.group() and nxt.isspace():  # "?" or "!" followed by a space
        return True
    token = _LAST_TOKEN.search(text, 0, m.start())
    raw = token.group(1) if token else ""  # the word before the period
    word = raw.lower()
    if word in _BEFORE_NUMBER and text[end:].lstrip()[:1].isdigit():
        return False
    if word in _ABBREVIATIONS or (len(raw) == 1 and raw.isupper()) or re.fullmatch(r"(\w\.)+\w", word):
        return False  # "approx. 20", "U.S. roads", "e.g. cars", "J. Smith"
    if nxt.isspace():
        return True
    # Missing space ("cars.The", "0.5 m.The"): split only before a capital, so decimals ("0.5")
    # and file names ("P0001.png") stay whole.
    return nxt.isupper() and word[-1:].isalnum()


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` in order. Only whitespace changes: runs collapse to one space and a
    sentence glued to the previous one ("cars.The") is split off, so no character is lost."""
    text = " ".join(text.split())
    out, start = [], 0
    for m in _END.finditer(text):
        if _is_boundary(text, m):
            out.append(text[start:m.end()].strip())
            start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


# ---------------------------------------------------------------------------------------------
# Sentence classification

_IMG = r"(?:image|picture|photo|photograph|scene|view|imagery)"
_NUM = r"(?:\d|one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|forty|fifty|a hundred|hundreds)"

# theme: the whole image is the subject, an image property is stated, or a summary opens.
_THEME = [
    re.compile(rf"^(?:this|the|it)\s+{_IMG}\b(?!')", re.I),  # "The image shows ...", "This image is ..."
    re.compile(r"^this\s+is\b", re.I),  # "This is a remote sensing image ...", "This is a parking lot."
    re.compile(r"^(?:overall|in general|in summary|in short|all in all|generally speaking)\b", re.I),
    re.compile(r"\b(?:resolution|panchromatic|gr[ae]yscale|monochrome|contrast|well-lit|"
               r"black[- ]and[- ]white image|colou?r image|sunny|cloudy|overcast|hazy|foggy)\b", re.I),
]

# positions: an explicit reference to the image frame.
_FRAME_WORD = (r"(?:top|bottom|upper|lower|left|right|cent(?:er|re)|middle|edge|corner|side|part|half|border|"
               r"portion|quarter|area|region)")
_NOT_OF_OTHER = r"(?!\s+of\s+(?!the\s+image|this\s+image))"  # "the top" but not "the top of the tower"
_POSITIONS = [
    re.compile(rf"\b{_FRAME_WORD}s?\b[\w\s,'-]{{0,30}}?\bof\s+(?:the|this)\s+(?:whole\s+|entire\s+)?{_IMG}\b", re.I),
    re.compile(rf"\b(?:the|this)\s+{_IMG}'s\s+(?:very\s+)?{_FRAME_WORD}", re.I),  # "the image's top left"
    re.compile(r"\b(?:top|bottom|upper|lower)[\s-]*(?:left|right)\b", re.I),  # corners, even without "of the image"
    re.compile(r"\bcorners?\b", re.I),
    re.compile(rf"\b(?:top|bottom|left|right|upper|lower)\s+(?:edge|half|border)\b{_NOT_OF_OTHER}", re.I),
    re.compile(rf"\b(?:at|along|near|in|across)\s+the\s+(?:very\s+)?(?:top|bottom)\b{_NOT_OF_OTHER}", re.I),
    re.compile(rf"\bin\s+the\s+(?:upper|lower)\s+(?:part|half|portion|area|region)\b{_NOT_OF_OTHER}", re.I),
    re.compile(r"\b(?:in|at)\s+the\s+(?:very\s+)?(?:middle|cent(?:er|re))\b(?!\s+(?:of|between)\b)", re.I),
    re.compile(rf"\b(?:all\s+over|throughout|across)\s+the\s+(?:whole\s+|entire\s+)?{_IMG}\b", re.I),
    # "On the left, ..." / "... on the right." name the frame; a bare "on the left side" mid-sentence
    # is usually relative to an object ("buildings on the left side" of a road) and is not counted.
    re.compile(r"^(?:on|to|at)\s+the\s+(?:far\s+)?(?:left|right)(?:\s+(?:side|part|half|edge))?\s*,", re.I),
    re.compile(r"\b(?:on|to|at)\s+the\s+(?:far\s+)?(?:left|right)\s*[.!?]?$", re.I),
]

# relations: a relation between two things, or an arrangement of objects among themselves.
_RELATIONS = [
    re.compile(r"\b(?:next to|close to|near|nearby|beside|adjacent|alongside|along|between|among|amid(?:st)?|"
               r"in front of|behind|opposite|facing|parallel|perpendicular|across|through|"
               r"above|below|under|underneath|beneath|on top of|"
               r"surround(?:s|ed|ing)?|encircl(?:es|ed|ing)|border(?:s|ed|ing)|flank(?:s|ed|ing)|lined with|"
               r"connect(?:s|ed|ing)|link(?:s|ed|ing)|lead(?:s|ing) to|cross(?:es|ed|ing)?|intersect(?:s|ed|ing)?|"
               r"divid(?:es|ed|ing)|separat(?:es|ed|ing)|span(?:s|ned|ning)?|"
               r"arranged|aligned|lined up|side by side|roadside)\b", re.I),
    re.compile(r"\b(?:moored|docked|berthed|anchored)\s+(?:at|in|to|along|beside|near|by)\b", re.I),
    re.compile(rf"\baround\b(?!\s+{_NUM})", re.I),  # "around the court", not "around 20 cars"
    re.compile(r"\bsides?\s+of\b", re.I),  # "on the side of the road", "on both sides of"
    re.compile(r"\b(?:to\s+the\s+)?(?:left|right|north|south|east|west)\s+of\b", re.I),
    re.compile(r"\bin\s+(?:[\w-]+\s+)?(?:rows?|lines?|columns?|clusters?|grids?)\b(?!\s+of)", re.I),  # "in two rows"
    re.compile(r"\b(?:on|in|at|over|by|beside|around|near)\s+(?:it|them|its|their)\b", re.I),  # "driving on it"
    re.compile(r"\b(?:on|along|over|by)\s+the\s+(?:road|roads|street|streets|highway|bridge|river|lake|water|"
               r"runway|shore|coast|dock|pier|quay)\b", re.I),
]
# Phrases that look relational but are not ("under construction", "scattered throughout").
_NOT_RELATION = re.compile(r"\bunder\s+construction\b|\bthroughout\b", re.I)


def classify_sentence(sentence: str) -> str:
    """The aspect of one sentence, by the priority theme > positions > relations > objects."""
    s = sentence.strip()
    if any(p.search(s) for p in _THEME):
        return "theme"
    if any(p.search(s) for p in _POSITIONS):
        return "positions"
    if any(p.search(_NOT_RELATION.sub(" ", s)) for p in _RELATIONS):
        return "relations"
    return "objects"


def label_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, aspect) pairs in caption order."""
    return [(s, classify_sentence(s)) for s in split_sentences(text)]


# Where a sentence goes when its own aspect is not in the requested list (nearest aspect first;
# positions and relations stand in for each other, as in the N=3 grouping).
_FALLBACK: dict[str, tuple[str, ...]] = {
    "theme": ("theme", "objects", "positions", "relations"),
    "objects": ("objects", "positions", "relations", "theme"),
    "positions": ("positions", "relations", "objects", "theme"),
    "relations": ("relations", "positions", "objects", "theme"),
}


def _fallback(aspect: str, kept: Sequence[str]) -> str:
    return next(a for a in _FALLBACK[aspect] if a in kept)


def split_caption(text: str, aspects: Sequence[str] = ASPECTS) -> dict[str, str]:
    """Caption -> {aspect: its sentences joined by one space} with every aspect key present.

    With a reduced `aspects` list (e.g. the paper's N=3: theme, objects, relations), a sentence
    whose aspect is not listed goes to the nearest listed one (`_FALLBACK`), so nothing is dropped.
    """
    if not aspects:
        raise ValueError("split_caption needs at least one aspect, e.g. ASPECTS")
    unknown = [a for a in aspects if a not in ASPECTS]
    if unknown:
        raise ValueError(f"unknown aspect(s) {unknown}; valid aspects are {list(ASPECTS)}")
    parts: dict[str, list[str]] = {a: [] for a in aspects}
    for sentence, aspect in label_sentences(text):
        parts[_fallback(aspect, aspects)].append(sentence)
    return {a: " ".join(v) for a, v in parts.items()}


def group_segments(segments: dict[str, str], n_experts: int) -> dict[str, str]:
    """Aspect segments -> one target per expert of `EXPERT_GROUPS[n_experts]`.

    A group's segments are joined in caption order, i.e. the aspect order of `ASPECTS` (theme,
    objects, positions, relations), the order in which the experts' parts make up a caption.
    """
    if n_experts not in EXPERT_GROUPS:
        raise ValueError(f"n_experts must be one of {sorted(EXPERT_GROUPS)}, got {n_experts}")
    return {name: " ".join(segments.get(a, "") for a in group if segments.get(a, ""))
            for name, group in EXPERT_GROUPS[n_experts].items()}


# ---------------------------------------------------------------------------------------------
# Coverage statistics


def coverage(captions: Iterable[str]) -> dict[str, object]:
    """How a corpus splits: sentences per aspect and the share of captions with each segment non-empty."""
    captions = list(captions)
    per_aspect: Counter[str] = Counter({a: 0 for a in ASPECTS})
    non_empty: Counter[str] = Counter({a: 0 for a in ASPECTS})
    for text in captions:
        labels = [a for _, a in label_sentences(text)]
        per_aspect.update(labels)
        non_empty.update(set(labels))
    n = max(len(captions), 1)
    return {
        "captions": len(captions),
        "sentences": sum(per_aspect.values()),
        "sentences_per_aspect": dict(per_aspect),
        "share_non_empty": {a: round(non_empty[a] / n, 4) for a in ASPECTS},
    }


def _load_captions(path: Path) -> list[str]:
    from rsmoe.data.loaders import load_rsicap, load_rsieval, read_json

    items = read_json(path, "annotations", '{"annotations": [{"filename", "text_output" or "caption"}]}')
    if items and isinstance(items[0], dict) and "text_output" not in items[0] and "caption" in items[0]:
        return [r.caption for r in load_rsieval(path) if r.caption]
    return [r.caption for r in load_rsicap(path)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsmoe.data.aspects", description=__doc__.splitlines()[0])
    parser.add_argument("captions", type=Path, help="RSICap captions.json (or RSIEval annotations.json)")
    args = parser.parse_args(argv)
    from rsmoe.data.loaders import AnnotationError

    try:
        captions = _load_captions(args.captions)
    except AnnotationError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(coverage(captions), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
