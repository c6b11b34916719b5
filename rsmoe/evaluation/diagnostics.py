"""Caption diagnostics that show a collapse at a glance, for the model and every baseline alike.

A model that learned "the average caption" can score a respectable CIDEr; these numbers cannot
hide it:

- `distinct`: the fraction (%) of distinct generated captions (1 caption for 32 crops: 3.1 %);
- `theme_accuracy`: the percent of crops whose generated theme names the crop's scene type.
  The rule: the caption is split into aspects (`rsmoe.data.aspects.split_caption`, the splitter
  that makes the experts' targets); the first scene type named in its theme sentences
  (`scene_type_named`) must be the crop's own (`scene_type` in captions.json, from
  `rsmoe.data.describe.scene_type`). No theme sentence, or no scene type named, is wrong.
  Crops without a known scene type (human records without annotations) are left out;
- `repetition`: the percent of captions that say one sentence twice (case and spaces ignored),
  the signature of a decoding loop;
- `words` / `reference_words`: the mean length in words of the generated and reference captions.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rsmoe.data.aspects import split_caption, split_sentences
from rsmoe.data.describe import SCENE_TYPES

# Scene type -> the words a caption uses for it. The search takes the earliest match in the
# text, and at one position the longest, so "rural area with a road" is not an "urban area"
# and "river with a bridge" is not a "road junction".
SCENE_PATTERNS: dict[str, str] = {
    "airport": r"airports?|airfields?|air ?strips?|aerodromes?",
    "harbor": r"harbou?rs?|ports?|docks?|marinas?|quays?|wharf|wharves|piers?",
    "oil depot": r"oil (?:depots?|storage(?: facility| area)?|terminals?)|tank farms?|fuel depots?",
    "industrial area": r"industrial (?:areas?|zones?|parks?|sites?|estates?|facilit(?:y|ies))|factor(?:y|ies)",
    "sports ground": r"sports? (?:grounds?|fields?|complex(?:es)?|facilit(?:y|ies)|centers?|centres?)|stadiums?",
    "road junction": r"(?:road )?junctions?|intersections?|interchanges?|crossroads",
    "river with a bridge": r"rivers?(?: with an? bridges?)?",
    "residential area": r"residential (?:areas?|districts?|zones?)|housing (?:areas?|estates?)|neighbou?rhoods?|"
                        r"suburbs?|suburban areas?",
    "parking lot": r"parking (?:lots?|areas?|spaces?)|car parks?",
    "urban area": r"urban areas?|city|cities|towns?|downtown",
    "rural area with a road": r"rural (?:areas?|roads?|landscapes?)(?: with an? roads?)?|countryside",
    "open area": r"open areas?",
    "area of open water": r"(?:areas? of )?open water|lakes?|seas?|ocean|bay",
    "farmland": r"farmlands?|farms?|croplands?|agricultural (?:land|fields?|areas?)|(?:crop|farm) fields",
    "area of bare land": r"(?:areas? of )?bare (?:land|soil|ground)|barren land|desert",
}
assert set(SCENE_PATTERNS) == set(SCENE_TYPES), "every scene type needs a pattern"


def scene_type_named(text: str) -> str | None:
    """The first scene type (`SCENE_TYPES`) that `text` names, or None."""
    found = [(m.start(), -len(m.group()), kind) for kind, pattern in SCENE_PATTERNS.items()
             if (m := re.search(rf"\b(?:{pattern})\b", text, re.I))]
    return min(found)[2] if found else None


def theme_of(caption: str) -> str:
    """The theme sentences of a caption (the aspect splitter's), '' when it has none."""
    return split_caption(caption)["theme"]


def theme_correct(caption: str, scene_type: str) -> bool:
    """Does the caption's theme name `scene_type` first? (see the module doc)"""
    return scene_type_named(theme_of(caption)) == scene_type


def _norm(sentence: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", sentence.lower()))


def repeats_sentence(caption: str) -> bool:
    sentences = [s for s in map(_norm, split_sentences(caption)) if s]
    return len(sentences) != len(set(sentences))


def _words(text: str) -> int:
    return len(text.split())


def diagnose(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]],
             scene_types: Mapping[str, str | None] | None = None) -> dict[str, float | None]:
    """{id: caption}, {id: [reference, ...]} and {id: scene type} -> the diagnostics (see module doc)."""
    caps = list(candidates.values())
    if not caps:
        raise ValueError("diagnose: no captions")
    known = {k: t for k, t in (scene_types or {}).items() if t and k in candidates}
    theme = (100.0 * sum(theme_correct(candidates[k], t) for k, t in known.items()) / len(known)) if known else None
    refs = [r for k in candidates for r in references.get(k, ())]
    return {
        "distinct": round(100.0 * len({" ".join(c.split()) for c in caps}) / len(caps), 2),
        "theme_accuracy": None if theme is None else round(theme, 2),
        "repetition": round(100.0 * sum(map(repeats_sentence, caps)) / len(caps), 2),
        "words": round(sum(map(_words, caps)) / len(caps), 2),
        "reference_words": round(sum(map(_words, refs)) / len(refs), 2) if refs else None,
    }
