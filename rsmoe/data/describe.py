"""Captions and QA pairs written from annotations, in RSICap / RSIEval style, for crops without human text.

`prepare` tiles DOTA scenes into crops; each crop has its `CropObject`s (class, clipped polygon,
centre, size, angle, truncation, measured colour) and its pixels. From these we write:

- `describe`: a caption as aspect segments, theme -> objects -> positions -> relations, e.g.
  "This is a high-resolution aerial image showing a harbor. There are five ships and one harbor
  in the image. Most of the ships are white. In the top-left corner of the image, there are five
  ships. The ships are moored along the harbor." Counts are exact and written as number words
  like RSICap ("thirty-seven"; "more than one hundred" from 100 on); positions come from the
  centres (a 3x3 grid, halves, edges); relations from the geometry (rows from angles and
  centres, left / right / above / below from the groups' extents, "next to" from distances).
- `make_qa`: RSIEval-style questions with RSIEval type labels, only of the types the
  annotations can answer (no road direction, no free reasoning).

Wording varies between crops but not between runs: every choice is a stable hash (sha256) of
the crop's key and the sentence slot. Every sentence is written so that
`rsmoe.data.aspects.classify_sentence` puts it in the aspect it was written for (tested over
random layouts), so generated and human captions are split into expert targets the same way.

Quantity answers are capitalised number words with a full stop ("Five.", "Thirty-seven.",
"More than one hundred."), the most common convention in RSIEval ("Ten.", "Two.").
"""
from __future__ import annotations

import colorsys
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsmoe.data.records import DOTA_V15_CLASSES, QA_TYPES, CropObject

# The RSIEval types `make_qa` writes; road_ori and reasoning need annotations DOTA does not have.
GENERATED_QA_TYPES: tuple[str, ...] = tuple(t for t in QA_TYPES if t not in ("road_ori", "reasoning"))
COVER_CLASSES: tuple[str, ...] = ("water", "vegetation", "bare_soil", "built")
COVER_NAMES = {"water": "water", "vegetation": "vegetation", "bare_soil": "bare soil",
               "built": "built-up or paved ground"}

# DOTA class -> (singular, plural) as written in captions and questions.
NOUNS: dict[str, tuple[str, str]] = {
    "plane": ("plane", "planes"), "ship": ("ship", "ships"), "storage-tank": ("storage tank", "storage tanks"),
    "baseball-diamond": ("baseball diamond", "baseball diamonds"), "tennis-court": ("tennis court", "tennis courts"),
    "basketball-court": ("basketball court", "basketball courts"),
    "ground-track-field": ("ground track field", "ground track fields"), "harbor": ("harbor", "harbors"),
    "bridge": ("bridge", "bridges"), "large-vehicle": ("large vehicle", "large vehicles"),
    "small-vehicle": ("small vehicle", "small vehicles"), "helicopter": ("helicopter", "helicopters"),
    "roundabout": ("roundabout", "roundabouts"), "soccer-ball-field": ("soccer field", "soccer fields"),
    "swimming-pool": ("swimming pool", "swimming pools"), "container-crane": ("container crane", "container cranes"),
}
_VEHICLES = frozenset({"small-vehicle", "large-vehicle"})
# Large structures whose mean pixel mixes several surfaces: their "colour" is not worth a sentence.
_NO_COLOUR = frozenset({"harbor", "bridge", "roundabout", "ground-track-field", "soccer-ball-field",
                        "baseball-diamond"})
_PARKED = {"small-vehicle": "parked", "large-vehicle": "parked", "plane": "parked", "helicopter": "parked",
           "ship": "moored"}


# ---------------------------------------------------------------------------------------------
# Pixels: colour names and land cover


def color_name(rgb: tuple[float, float, float]) -> str:
    """A basic colour name for an RGB triple in 0..255 (HSV thresholds)."""
    r, g, b = (min(max(float(v), 0.0), 255.0) / 255.0 for v in rgb)
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h *= 360.0
    if v < 0.22:
        return "black"
    if s < 0.18:
        return "white" if v > 0.78 else "gray" if v > 0.35 else "black"
    if h < 12 or h >= 340:
        return "red"
    if h < 42:
        return "brown" if v < 0.62 or s < 0.4 else "orange"
    if h < 70:
        return "yellow" if v >= 0.55 and s >= 0.4 else "brown"
    if h < 170:
        return "green"
    if h < 255:
        return "blue"
    return "purple"


def land_cover(rgb: np.ndarray) -> dict[str, float]:
    """Fractions of water, vegetation, bare soil and built/paved pixels; they sum to 1.

    Per-pixel colour rules, in this order: blue-dominant -> water (also dark teal water);
    green-dominant -> vegetation; warm tan/brown (r > b, g close to r) -> bare soil; the rest
    (grey roofs, asphalt, concrete, shadows) -> built. A heuristic, not a classifier: red roofs
    can count as soil and blue roofs as water.
    """
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] < 3 or a.shape[0] * a.shape[1] == 0:
        raise ValueError(f"land_cover needs an (H, W, 3) image, got shape {a.shape}")
    px = a[..., :3].astype(np.int32)  # (H, W, 3)
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    water = (b > r + 12) & (b >= g - 8)
    veg = ~water & (g > r + 8) & (g > b + 8)
    soil = ~water & ~veg & (r > b + 20) & (g * 10 >= r * 7) & (g <= r + 6)
    built = ~(water | veg | soil)
    n = float(r.size)
    return {k: float(m.sum()) / n for k, m in zip(COVER_CLASSES, (water, veg, soil, built))}


# ---------------------------------------------------------------------------------------------
# Words

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
MANY = "more than one hundred"


def number_word(n: int) -> str:
    """0..99 as English words ("thirty-seven"), `MANY` from 100 on (RSICap's wording)."""
    if n >= 100:
        return MANY
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + ("-" + _ONES[n % 10] if n % 10 else "")


def parse_number(text: str) -> int | None:
    """Inverse of `number_word` (also digits, "a single"); 100 for "more than one hundred"."""
    t = text.strip().lower().rstrip(".")
    if t.isdigit():
        return int(t)
    if t in ("a", "an", "a single", "single"):
        return 1
    if t in (MANY, "more than 100"):
        return 100
    words = {number_word(i): i for i in range(100)}
    return words.get(t)


def _index(key: str, slot: str, n: int) -> int:
    """A number in [0, n), stable across runs and machines for the same (key, slot) (not `hash()`)."""
    return int.from_bytes(hashlib.sha256(f"{key}|{slot}".encode()).digest()[:8], "big") % n


def _pick(key: str, slot: str, options: Sequence[str]) -> str:
    return options[_index(key, slot, len(options))]


def with_article(noun: str) -> str:
    """"plane" -> "a plane", "oil depot" -> "an oil depot"."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def capitalized(s: str) -> str:
    """The first letter upper-cased, the rest as it is."""
    return s[:1].upper() + s[1:]


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------------
# Geometry of object groups


@dataclass(frozen=True)
class _Group:
    """All objects of one class in a crop; coordinates normalised by the crop size."""

    category: str
    objects: tuple[CropObject, ...]
    size: float

    @property
    def n(self) -> int:
        return len(self.objects)

    def noun(self, plural: bool | None = None) -> str:
        """The class name, plural when the group has more than one object (or as asked)."""
        plain = self.category.replace("-", " ")
        one, many = NOUNS.get(self.category, (plain, plain + "s"))
        return many if (self.n != 1 if plural is None else plural) else one

    def xy(self) -> np.ndarray:  # (n, 2) centres in [0, 1]
        return np.clip(np.array([o.center for o in self.objects], float) / self.size, 0.0, 0.999)

    def the(self) -> str:
        return "the " + self.noun()

    def be(self) -> str:
        return "are" if self.n != 1 else "is"

    def counted(self) -> str:
        return f"{number_word(self.n)} {self.noun()}"


def _groups(objects: Sequence[CropObject], crop_size: int) -> list[_Group]:
    """Groups by class, most numerous first, ties in DOTA class order."""
    by: dict[str, list[CropObject]] = {}
    for o in objects:
        by.setdefault(o.category, []).append(o)
    order = {c: i for i, c in enumerate(DOTA_V15_CLASSES)}
    cats = sorted(by, key=lambda c: (-len(by[c]), order.get(c, len(order)), c))
    return [_Group(c, tuple(by[c]), float(crop_size)) for c in cats]


_CELLS = {
    (0, 0): ("in the top-left corner of the image", "in the upper-left corner of the image"),
    (1, 0): ("at the top of the image", "in the top part of the image"),
    (2, 0): ("in the top-right corner of the image", "in the upper-right corner of the image"),
    (0, 1): ("on the left side of the image", "in the left part of the image"),
    (1, 1): ("in the center of the image", "in the middle of the image"),
    (2, 1): ("on the right side of the image", "in the right part of the image"),
    (0, 2): ("in the bottom-left corner of the image", "in the lower-left corner of the image"),
    (1, 2): ("at the bottom of the image", "in the bottom part of the image"),
    (2, 2): ("in the bottom-right corner of the image", "in the lower-right corner of the image"),
}


@dataclass(frozen=True)
class _Placement:
    kind: str  # "all" (every object in `where`), "most" (>= 2/3 of them), "scattered"
    where: tuple[str, ...] = ()  # alternative phrasings of one place in the frame


def _placement(g: _Group) -> _Placement:
    """Where a group lies in the frame: one grid cell, one edge, one half, mostly one cell, or spread."""
    xy = g.xy()
    cells = [(int(x * 3), int(y * 3)) for x, y in xy]
    common, k = Counter(cells).most_common(1)[0]
    if k == g.n:
        return _Placement("all", _CELLS[common])
    x, y = xy[:, 0], xy[:, 1]
    edges = {"top": y < 0.15, "bottom": y > 0.85, "left": x < 0.15, "right": x > 0.85}
    for edge, near in edges.items():
        along = x if edge in ("top", "bottom") else y
        if near.all() and np.ptp(along) >= 0.3:
            return _Placement("all", (f"along the {edge} edge of the image",))
    halves = {"upper": y < 0.5, "lower": y >= 0.5, "left": x < 0.5, "right": x >= 0.5}
    for half, inside in halves.items():
        if inside.all():
            return _Placement("all", (f"in the {half} half of the image",))
    if g.n >= 3 and k * 3 >= 2 * g.n:
        return _Placement("most", _CELLS[common])
    return _Placement("scattered")


def unit_centre(center: Sequence[float], size: float) -> tuple[float, float]:
    """A centre in crop pixels -> normalised to [0, 1) the way `_Group.xy` does (clipped)."""
    x, y = (min(max(float(v) / size, 0.0), 0.999) for v in center)
    return x, y


def cell_index(x: float, y: float) -> int:
    """The 3x3 cell (3 * row + column, row 0 the top) of a centre normalised to [0, 1)."""
    return 3 * min(int(y * 3), 2) + min(int(x * 3), 2)


def cells_placement(cells: Sequence[int]) -> str:
    """The position rule (`_placement`) on one pseudo-object at the centre of each occupied cell:
    the phrase a caption writes ("in the top-left corner of the image", "in the upper half of the
    image"; "scattered" for a spread class). What the concept tokens' position head can say, from
    the cells it finds a class in; edges and "most" need real centres, so never come out of it."""
    if not cells:
        raise ValueError("cells_placement needs at least one occupied cell")
    return centres_placement([((i % 3 + 0.5) / 3, (i // 3 + 0.5) / 3) for i in sorted(set(cells))])


def centres_placement(centres: Sequence[tuple[float, float]]) -> str:
    """The phrase a caption writes (`_placement`) for a class whose objects have these centres
    (normalised to [0, 1]); "scattered" for a spread class."""
    p = _placement(_Group("object", tuple(_Centre(c) for c in centres), 1.0))  # type: ignore[arg-type]
    return "scattered" if p.kind == "scattered" else p.where[0]


@dataclass(frozen=True)
class _Centre:
    center: tuple[float, float]


def _rows(g: _Group) -> tuple[int, int] | None:
    """(rows, objects in them) when most objects of an elongated class are parallel and in rows."""
    if g.n < 3 or not _elongated(g):
        return None
    dom, dev = _heading(g)
    if np.mean(dev < 15) < 0.7:
        return None
    xy = np.array([o.center for o in g.objects], float)  # (n, 2) px
    u = np.array([math.cos(dom), math.sin(dom)])  # along the long sides (image coords, y down)
    lengths, widths = [o.length for o in g.objects], [o.width for o in g.objects]
    best = (0, 0)
    # side by side (a car park: same position along the heading) or end to end (along a street)
    for axis, gap in ((u, np.median(lengths)), (np.array([-u[1], u[0]]), np.median(widths))):
        proj = np.sort(xy @ axis)  # (n,)
        sizes = np.diff(np.flatnonzero(np.r_[True, np.diff(proj) > 0.6 * gap, True]))
        rows = sizes[sizes >= 3]
        best = max(best, (int(rows.sum()), len(rows)))
    covered, n_rows = best
    return (n_rows, covered) if covered * 10 >= 7 * g.n else None


def _heading(g: _Group) -> tuple[float, np.ndarray]:
    """Dominant orientation (radians) of the group and each object's deviation from it (degrees, 0..90).

    Orientations are axial (0 and 180 degrees are the same), so the mean is taken over doubled angles.
    """
    theta = np.radians([o.angle for o in g.objects])  # (n,)
    dom = 0.5 * math.atan2(np.sin(2 * theta).mean(), np.cos(2 * theta).mean())
    return dom, np.abs((np.degrees(theta - dom) + 90.0) % 180.0 - 90.0)


def _elongated(g: _Group) -> bool:
    return float(np.mean([o.length / max(o.width, 1e-6) for o in g.objects])) >= 1.5


def _parallel(g: _Group) -> bool:
    return g.n >= 2 and _elongated(g) and bool(np.all(_heading(g)[1] < 10))


def _gap(a: CropObject, b: CropObject) -> float:
    """Distance between two objects' footprints, approximated by circles of their half-length."""
    return math.dist(a.center, b.center) - (a.length + b.length) / 4


def _clustered(g: _Group) -> bool:
    """Every object has a neighbour of its class closer than its own length."""
    if g.n < 2:
        return False
    return all(min(_gap(a, b) for b in g.objects if b is not a) < a.length for a in g.objects)


@dataclass(frozen=True)
class _Relation:
    a: _Group
    b: _Group
    phrase: str  # "to the left of", "above", "next to", "moored along" ...

    def sentence(self) -> str:
        return f"{capitalized(self.a.the())} {self.a.be()} {self.phrase} {self.b.the()}."


_ALONG = {("ship", "harbor"): "moored along", ("container-crane", "harbor"): "standing along"}


def _relation(a: _Group, b: _Group) -> _Relation | None:
    """How group `a` lies relative to group `b`: separated along one axis, or close together."""
    if (b.category, a.category) in _ALONG or (b.category in _VEHICLES and a.category == "roundabout"):
        a, b = b, a  # "the ships are moored along the harbor", not the other way round
    pa, pb = np.array([o.center for o in a.objects]), np.array([o.center for o in b.objects])
    # clearance between the groups' centres along each direction (> 0: every a is on that side of every b)
    seps = {"to the left of": pb[:, 0].min() - pa[:, 0].max(), "to the right of": pa[:, 0].min() - pb[:, 0].max(),
            "above": pb[:, 1].min() - pa[:, 1].max(), "below": pa[:, 1].min() - pb[:, 1].max()}
    phrase, sep = max(seps.items(), key=lambda kv: kv[1])
    near = min(_gap(x, y) for x in a.objects for y in b.objects) < 0.08 * a.size
    if near and (a.category, b.category) in _ALONG:
        return _Relation(a, b, _ALONG[a.category, b.category])
    if near and a.category in _VEHICLES and b.category == "roundabout":
        return _Relation(a, b, "driving around")
    if sep > 0.05 * a.size:
        return _Relation(a, b, phrase)
    return _Relation(a, b, "next to") if near else None


def _relations(groups: list[_Group]) -> list[_Relation]:
    """Relations between the (up to four) largest groups, the smaller group as the subject."""
    out = []
    for i, b in enumerate(groups[:4]):
        for a in groups[i + 1:4]:
            rel = _relation(a, b)
            if rel is not None:
                out.append(rel)
    return out


# ---------------------------------------------------------------------------------------------
# Theme


# Every scene type `infer_theme` can name, without its article (records carry it as `scene_type`).
SCENE_TYPES: tuple[str, ...] = (
    "airport", "harbor", "oil depot", "industrial area", "sports ground", "road junction", "river with a bridge",
    "residential area", "parking lot", "urban area", "rural area with a road", "open area", "area of open water",
    "farmland", "area of bare land",
)


def scene_type(objects: Sequence[CropObject], cover: dict[str, float]) -> str:
    """The crop's scene type, one of `SCENE_TYPES` ("harbor"): `infer_theme` without the article."""
    return re.sub(r"^(a|an)\s+", "", infer_theme(objects, cover))


def infer_theme(objects: Sequence[CropObject], cover: dict[str, float]) -> str:
    """The scene type as a short noun phrase ("a harbor"), from the classes present, else the land cover."""
    cats = Counter(o.category for o in objects)
    vehicles = cats["small-vehicle"] + cats["large-vehicle"]
    if cats["plane"] or cats["helicopter"]:
        return "an airport"
    if cats["ship"] or cats["harbor"] or cats["container-crane"]:
        return "a harbor"
    if cats["storage-tank"]:
        return "an oil depot" if cats["storage-tank"] >= 3 else "an industrial area"
    if any(cats[c] for c in ("ground-track-field", "soccer-ball-field", "baseball-diamond", "tennis-court",
                             "basketball-court")):
        return "a sports ground"
    if cats["roundabout"]:
        return "a road junction"
    if cats["bridge"]:
        return "a river with a bridge"
    if cats["swimming-pool"]:
        return "a residential area"
    if vehicles >= 10:
        return "a parking lot"
    if vehicles:
        return "an urban area" if cover.get("built", 0) >= 0.4 else "a rural area with a road"
    if not any(cover.get(k, 0.0) for k in COVER_CLASSES):
        return "an open area"
    main = max(COVER_CLASSES, key=lambda k: cover.get(k, 0.0))
    return {"water": "an area of open water", "vegetation": "farmland", "bare_soil": "an area of bare land",
            "built": "an urban area"}[main]


def _cover_sentence(cover: dict[str, float], key: str) -> str:
    ranked = sorted(COVER_CLASSES, key=lambda k: -cover.get(k, 0.0))
    main, rest = ranked[0], [COVER_NAMES[k] for k in ranked[1:] if cover.get(k, 0.0) >= 0.15]
    how = "mostly" if cover.get(main, 0.0) >= 0.5 else "largely"
    tail = f", with some {_join(rest)}" if rest else ""
    return _pick(key, "cover", (
        f"The image is {how} covered by {COVER_NAMES[main]}{tail}.",
        f"Overall, the scene is {how} {COVER_NAMES[main]}{tail}.",
    ))


def _theme(objects: Sequence[CropObject], cover: dict[str, float], key: str) -> list[str]:
    theme = infer_theme(objects, cover)
    out = [_pick(key, "theme", (
        f"This is a high-resolution aerial image showing {theme}.",
        f"This is an aerial image of {theme} with high resolution.",
        f"The image shows {theme}, seen from above at high resolution.",
        f"This is a remote sensing image with high resolution, showing {theme}.",
        f"The image is a high-resolution aerial view of {theme}.",
    ))]
    natural = max(cover.get(k, 0.0) for k in ("water", "vegetation", "bare_soil"))
    if any(cover.get(k, 0.0) for k in COVER_CLASSES) and (not objects or natural >= 0.35):
        out.append(_cover_sentence(cover, key))
    return out


# ---------------------------------------------------------------------------------------------
# Objects, positions, relations


def _count_sentence(groups: list[_Group], key: str) -> str:
    # RSICap often writes vehicles with DOTA's hyphenated names ("thirty-seven large-vehicles")
    dota_style = _pick(key, "dota-nouns", ("plain", "plain", "dota")) == "dota"

    def noun(g: _Group) -> str:
        return g.category + ("s" if g.n != 1 else "") if dota_style and g.category in _VEHICLES else g.noun()

    items = [f"{number_word(g.n)} {noun(g)}" for g in groups]
    listed = _join(items)
    there = "is" if groups[0].n == 1 else "are"
    verb = "is" if len(items) == 1 and groups[0].n == 1 else "are"
    return _pick(key, "count", (
        f"There {there} {listed} in the image.",
        f"Specifically, {listed} can be observed in the image.",
        f"In total, {listed} can be seen.",
        f"{capitalized(listed)} {verb} visible.",
    ))


def _colour_sentence(g: _Group, key: str) -> str | None:
    colours = Counter(o.color for o in g.objects if o.color)
    if not colours or g.category in _NO_COLOUR:
        return None
    (c1, k1), *rest = sorted(colours.items(), key=lambda kv: (-kv[1], kv[0]))
    if g.n == 1:
        return f"The {g.noun()} is {c1}."
    if k1 == g.n:
        return _pick(key, f"colour-all-{g.category}", (f"All of the {g.noun()} are {c1}.",
                                                       f"The {g.noun()} are all {c1}."))
    others = _join([c for c, _ in rest[:2]]).replace(" and ", " or ") if rest else ""
    if k1 * 10 >= 6 * g.n:
        return f"Most of the {g.noun()} are {c1}" + (f", while the others are {others}." if others else ".")
    return f"Some of the {g.noun()} are {c1}" + (f", while others are {others}." if others else ".")


def _state_sentences(g: _Group, key: str) -> list[str]:
    out = []
    lengths = [o.length for o in g.objects]
    if g.n >= 2 and min(lengths) > 0 and max(lengths) >= 2 * min(lengths):
        out.append(_pick(key, f"size-{g.category}", (f"The {g.noun()} vary in size.",
                                                    f"The {g.noun()} come in different sizes.")))
    cut = sum(o.truncated for o in g.objects)
    if cut and g.n == 1:
        out.append(f"The {g.noun()} is only partially visible.")
    elif cut:
        be = "is" if cut == 1 else "are"
        out.append(f"{capitalized(number_word(cut))} of the {g.noun()} {be} only partially visible.")
    return out


def _objects(groups: list[_Group], key: str) -> list[str]:
    if not groups:
        return [_pick(key, "empty", (
            "There are no objects such as planes, ships or vehicles in the image.",
            "No planes, ships, vehicles or other annotated objects can be seen.",
        ))]
    out = [_count_sentence(groups, key)]
    for g in groups[:3]:
        colour = _colour_sentence(g, key)
        out += ([colour] if colour else []) + _state_sentences(g, key)
    return out


def _position_sentence(g: _Group, key: str) -> str | None:
    p = _placement(g)
    slot = f"pos-{g.category}"
    if p.kind == "scattered":
        return _pick(key, slot, (f"The {g.noun()} are scattered across the whole image.",
                                 f"The {g.noun()} are spread all over the image."))
    where = _pick(key, slot + "-where", p.where)
    if p.kind == "most":
        return f"Most of the {g.noun()} are {where}."
    return _pick(key, slot, (
        f"{capitalized(where)}, there {g.be()} {g.counted() if g.n > 1 else with_article(g.noun())}.",
        f"{capitalized(g.the())} {g.be()} {where}.",
        f"{capitalized(g.counted())} {g.be()} located {where}." if g.n > 1 else f"{capitalized(g.the())} is located {where}.",
    ))


def _arrangement_sentence(g: _Group, key: str) -> str | None:
    verb = _PARKED.get(g.category, "arranged")
    rows = _rows(g)
    slot = f"arr-{g.category}"
    if rows:
        n_rows, covered = rows
        most = "The" if covered == g.n else "Most of the"
        lines = "in a row" if n_rows == 1 else f"in {number_word(n_rows)} rows" if n_rows <= 5 else "in many rows"
        return _pick(key, slot, (f"{most} {g.noun()} are {verb} {lines}.",
                                 f"{most} {g.noun()} are {verb} side by side {lines}."))
    if _parallel(g):
        return _pick(key, slot, (f"The {g.noun()} are {verb} parallel to each other.",
                                 f"The {g.noun()} are {verb} side by side, facing the same direction."))
    if _clustered(g):
        return _pick(key, slot, (f"The {g.noun()} are close to each other.",
                                 f"The {g.noun()} are {verb} next to each other."))
    return None


def _relation_sentences(groups: list[_Group], key: str) -> list[str]:
    out = [s for g in groups[:3] if (s := _arrangement_sentence(g, key))][:2]
    for rel in _relations(groups)[: 3 - len(out)]:
        out.append(rel.sentence() if _pick(key, f"rel-{rel.a.category}", ("a", "b")) == "a" or rel.a.n == 1
                   else f"{capitalized(rel.a.counted())} {rel.a.be()} {rel.phrase} {rel.b.the()}.")
    return out


def describe(objects: Sequence[CropObject], cover: dict[str, float], crop_size: int, key: str) -> dict[str, str]:
    """Aspect segments {"theme", "objects", "positions", "relations"} and their join "text"."""
    groups = _groups(objects, crop_size)
    segments = {
        "theme": _theme(objects, cover, key),
        "objects": _objects(groups, key),
        "positions": [s for g in groups[:3] if (s := _position_sentence(g, key))],
        "relations": _relation_sentences(groups, key),
    }
    out = {k: " ".join(v) for k, v in segments.items()}
    out["text"] = " ".join(v for v in out.values() if v)
    return out


# ---------------------------------------------------------------------------------------------
# QA


def _qa(question: str, answer: str, qtype: str) -> dict[str, str]:
    assert qtype in QA_TYPES, qtype
    return {"question": question, "answer": answer, "type": qtype}


def _presence(groups: list[_Group], key: str) -> list[dict[str, str]]:
    out = []
    if groups:
        g = groups[_index(key, "presence-yes", min(len(groups), 3))]
        out.append(_qa(_pick(key, "presence-q", (f"Is there {with_article(g.noun(False))} in this image?",
                                                f"Are there any {g.noun(True)} in this image?",
                                                f"Does this image contain {g.noun(True)}?")), "Yes.", "presence"))
    absent = [c for c in DOTA_V15_CLASSES if c not in {g.category for g in groups}]
    if absent:
        one, many = NOUNS[_pick(key, "presence-no", absent)]
        out.append(_qa(_pick(key, "presence-q-no", (f"Is there {with_article(one)} in this image?",
                                                   f"Are there any {many} in this image?")), "No.", "presence"))
    return out


def _colour_qa(g: _Group) -> dict[str, str] | None:
    colours = Counter(o.color for o in g.objects)
    if None in colours or len(colours) > 3 or g.category in _NO_COLOUR:
        return None
    names = [c for c, _ in sorted(colours.items(), key=lambda kv: (-kv[1], kv[0]))]
    if g.n == 1:
        return _qa(f"What is the color of the {g.noun()}?", f"{capitalized(names[0])}.", "color")
    if len(names) == 1:
        return _qa(f"What color are the {g.noun()}?", f"{capitalized(names[0])}.", "color")
    return _qa(f"What are the colors of the {g.noun()} in the image?", f"{capitalized(_join(names))}.", "color")


def _area_qa(groups: list[_Group], cover: dict[str, float], key: str) -> dict[str, str] | None:
    areas = [(g, sum(o.area for o in g.objects)) for g in groups[:3]]
    pairs = [(a, b) for i, a in enumerate(areas) for b in areas[i + 1:] if max(a[1], b[1]) >= 2 * min(a[1], b[1])]
    if pairs:
        (ga, aa), (gb, ab) = pairs[0] if _pick(key, "area-order", "ab") == "a" else pairs[0][::-1]
        return _qa(f"Is the area occupied by the {ga.noun()} larger than that of the {gb.noun()}?",
                   "Yes." if aa > ab else "No.", "area_comp")
    ranked = sorted(COVER_CLASSES, key=lambda k: -cover.get(k, 0.0))
    a, b = ranked[0], ranked[1]
    if cover and cover.get(a, 0.0) - cover.get(b, 0.0) >= 0.15:
        a, b = (a, b) if _pick(key, "area-order", "ab") == "a" else (b, a)
        return _qa(f"Is the area covered by {COVER_NAMES[a]} larger than the area covered by {COVER_NAMES[b]} "
                   "in this image?", "Yes." if cover[a] > cover[b] else "No.", "area_comp")
    return None


def make_qa(objects: Sequence[CropObject], cover: dict[str, float], crop_size: int, key: str) -> list[dict[str, str]]:
    """RSIEval-style {"question", "answer", "type"} pairs that the annotations answer."""
    groups = _groups(objects, crop_size)
    out = _presence(groups, key)
    for g in groups[:2]:
        out.append(_qa(_pick(key, f"qty-{g.category}", (f"How many {g.noun(True)} are there in this image?",
                                                        f"How many {g.noun(True)} are in the image?")),
                       f"{capitalized(number_word(g.n))}.", "quantity"))
    out += [qa for g in groups[:2] if (qa := _colour_qa(g))]
    for g in groups[:2]:
        p = _placement(g)
        if p.kind == "all":
            out.append(_qa(f"Where {'is' if g.n == 1 else 'are'} {g.the()} in the image?", f"{capitalized(p.where[0])}.",
                           "ab_position"))
    rels = [r for r in _relations(groups) if r.phrase in ("to the left of", "to the right of", "above", "below")]
    if rels:
        r = rels[0]
        out.append(_qa(f"What is the relative position between {r.a.the()} and {r.b.the()}?", r.sentence(),
                       "re_position"))
    area = _area_qa(groups, cover, key)
    out += [area] if area else []
    if any(g.category == "small-vehicle" for g in groups):  # cars are resolvable: sub-metre imagery
        out.append(_qa("Is this a high resolution image?", "Yes.", "image"))
    theme = scene_type(objects, cover)
    question = _pick(key, "scene-q", ("What is the theme of the image?", "What type of scene does this image show?"))
    out.append(_qa(question, f"{capitalized(theme)}.", "scene"))
    return out
