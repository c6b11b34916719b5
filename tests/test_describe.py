"""Captions and QA written from annotations: truth against the objects, style, and the aspect round trip."""
import math
import re
from collections import Counter

import numpy as np
import pytest

from rsmoe.data.aspects import classify_sentence, split_caption, split_sentences
from rsmoe.data.describe import (
    COVER_NAMES,
    GENERATED_QA_TYPES,
    MANY,
    NOUNS,
    QA_TYPES,
    color_name,
    describe,
    infer_theme,
    land_cover,
    make_qa,
    number_word,
    parse_number,
)
from rsmoe.data.records import ASPECTS, DOTA_V15_CLASSES, CropObject
from rsmoe.data.records import QA_TYPES as RECORD_QA_TYPES

CROP = 512
COLOURS = ("white", "gray", "black", "red", "blue", "yellow", "green", "orange", "brown")
SIZE = {"plane": 60, "ship": 50, "storage-tank": 30, "baseball-diamond": 150, "tennis-court": 40,
        "basketball-court": 40, "ground-track-field": 300, "harbor": 150, "bridge": 200, "large-vehicle": 20,
        "small-vehicle": 10, "helicopter": 25, "roundabout": 80, "soccer-ball-field": 150, "swimming-pool": 15,
        "container-crane": 40}
COVER = {"water": 0.55, "vegetation": 0.05, "bare_soil": 0.0, "built": 0.4}


def box(cat, cx, cy, length, width, angle=0.0, color="white", visible=1.0):
    """A CropObject for an oriented box centred at (cx, cy), angle of the long side in degrees."""
    t = math.radians(angle)
    u, v = (math.cos(t), math.sin(t)), (-math.sin(t), math.cos(t))
    pts = tuple((cx + a * length / 2 * u[0] + b * width / 2 * v[0], cy + a * length / 2 * u[1] + b * width / 2 * v[1])
                for a, b in ((1, 1), (1, -1), (-1, -1), (-1, 1)))
    return CropObject(cat, pts, (cx, cy), length * width * visible, length, width, angle % 180, visible,
                      visible < 0.98, 0, color)


def layout(rng):
    """Random objects of up to four classes: parked in rows, clustered in one place, or anywhere."""
    objects = []
    for cat in rng.choice(DOTA_V15_CLASSES, size=int(rng.integers(0, 5)), replace=False):
        vehicle = cat in ("small-vehicle", "large-vehicle")
        n = int(rng.choice([1, 1, 2, 3, 5, 8, 14, 37, 120] if vehicle else [1, 2, 3, 4, 6]))
        mode, size = int(rng.integers(0, 4)), SIZE[cat] * rng.uniform(0.6, 1.6)
        angle, per = float(rng.choice([0, 90]) + rng.normal(0, 3)), int(rng.integers(3, 8))
        x0, y0 = rng.uniform(20, CROP - 20, 2)
        for i in range(n):
            if mode == 0:  # rows: side by side along the row, rows one behind the other
                r, k = divmod(i, per)
                t = math.radians(angle)
                c = (x0 + r * 1.5 * size * math.cos(t) - k * 0.6 * size * math.sin(t),
                     y0 + r * 1.5 * size * math.sin(t) + k * 0.6 * size * math.cos(t))
                a = angle
            elif mode == 1:  # a cluster
                c, a = rng.normal([x0, y0], 25), rng.uniform(0, 180)
            else:
                c, a = rng.uniform(1, CROP - 1, 2), rng.uniform(0, 180)
            cx, cy = np.clip(c, 1, CROP - 1)
            ratio = 1.0 if cat in ("storage-tank", "roundabout") else rng.uniform(0.3, 0.5)
            visible = float(rng.choice([1.0, 1.0, 1.0, rng.uniform(0.7, 0.97)]))
            colour = None if rng.random() < 0.05 else str(rng.choice(COLOURS))
            objects.append(box(str(cat), float(cx), float(cy), size, size * ratio, a, colour, visible))
    cover = dict(zip(("water", "vegetation", "bare_soil", "built"), map(float, rng.dirichlet(np.ones(4) * 0.7))))
    return objects, cover


LAYOUTS = [layout(np.random.default_rng([7, i])) for i in range(300)]

# "thirty-seven small vehicles", "one large-vehicle", "more than one hundred small-vehicles"
_NUM = "|".join(sorted([re.escape(number_word(i)) for i in range(100)] + [MANY], key=len, reverse=True))
_NOUN_OF = {form: cat for cat, (one, many) in NOUNS.items() for form in (one, many, cat, cat + "s")}
_NOUN = "|".join(sorted(map(re.escape, _NOUN_OF), key=len, reverse=True))
_COUNTED = re.compile(rf"\b({_NUM})\s+({_NOUN})\b", re.I)


_COVER_OF = {name: k for k, name in COVER_NAMES.items()}


def _noun_in(text):
    m = re.search(rf"\b({_NOUN})\b", text)
    return _NOUN_OF[m.group(1)] if m else None


def _counts(objects):
    return Counter(o.category for o in objects)


# ---------------------------------------------------------------------------------------------
# pixels


def test_land_cover_on_synthetic_arrays():
    def solid(rgb):
        return np.broadcast_to(np.array(rgb, np.uint8), (16, 16, 3))

    assert land_cover(solid((0, 0, 255)))["water"] == pytest.approx(1.0)
    assert land_cover(solid((38, 66, 88)))["water"] == pytest.approx(1.0)  # dark blue-green river water
    assert land_cover(solid((0, 255, 0)))["vegetation"] == pytest.approx(1.0)
    assert land_cover(solid((88, 118, 62)))["vegetation"] == pytest.approx(1.0)  # grass
    assert land_cover(solid((135, 115, 88)))["bare_soil"] == pytest.approx(1.0)
    assert land_cover(solid((128, 128, 128)))["built"] == pytest.approx(1.0)
    half = np.zeros((10, 20, 3), np.uint8)
    half[:, :10] = (0, 0, 255)
    half[:, 10:] = (0, 200, 0)
    assert land_cover(half) == pytest.approx({"water": 0.5, "vegetation": 0.5, "bare_soil": 0.0, "built": 0.0})
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert sum(land_cover(noise).values()) == pytest.approx(1.0)
    assert land_cover(np.full((4, 4), 200, np.uint8))["built"] == 1.0  # a single-band crop is accepted
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        land_cover(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize("rgb, name", [
    ((250, 250, 248), "white"), ((128, 128, 130), "gray"), ((20, 20, 25), "black"), ((200, 30, 30), "red"),
    ((230, 130, 30), "orange"), ((230, 200, 40), "yellow"), ((40, 150, 60), "green"), ((40, 70, 160), "blue"),
    ((125, 88, 68), "brown"), ((110, 40, 140), "purple"),
])
def test_color_name(rgb, name):
    assert color_name(rgb) == name


def test_number_words_round_trip():
    assert [number_word(n) for n in (0, 1, 14, 20, 37, 99, 100, 250)] == [
        "zero", "one", "fourteen", "twenty", "thirty-seven", "ninety-nine", MANY, MANY]
    assert all(parse_number(number_word(n)) == n for n in range(100))
    assert parse_number("Thirty-seven.") == 37 and parse_number("31") == 31 and parse_number("lots") is None


# ---------------------------------------------------------------------------------------------
# captions


def test_golden_caption_and_determinism():
    ships = [box("ship", 60 + 40 * i, 80, 60, 12, 90, "white" if i < 4 else "gray") for i in range(5)]
    objects = ships + [box("harbor", 140, 140, 260, 30, 0, "gray")]
    out = describe(objects, COVER, CROP, "P0000_0000.png")
    assert list(out) == [*ASPECTS, "text"]
    assert out["text"] == (
        "This is an aerial image of a harbor with high resolution. Overall, the scene is mostly water, with some "
        "built-up or paved ground. There are five ships and one harbor in the image. Most of the ships are white, "
        "while the others are gray. In the upper half of the image, there are five ships. The harbor is in the "
        "upper-left corner of the image. The ships are moored in a row. Five ships are moored along the harbor.")
    assert describe(list(objects), dict(COVER), CROP, "P0000_0000.png") == out
    assert make_qa(objects, COVER, CROP, "P0000_0000.png") == make_qa(objects, COVER, CROP, "P0000_0000.png")


def test_wording_varies_with_the_key():
    objects, cover = LAYOUTS[3]
    texts = [describe(objects, cover, CROP, f"P0001_{i:04d}.png")["text"] for i in range(200)]
    themes = {split_sentences(t)[0] for t in texts}
    print(f"\n{len(set(texts))} distinct captions, {len(themes)} theme sentences over 200 keys")
    assert len(set(texts)) >= 10 and len(themes) >= 4


@pytest.mark.parametrize("objects, cover", LAYOUTS[:300:30])
def test_text_is_the_segments_in_order(objects, cover):
    out = describe(objects, cover, CROP, "k")
    assert out["text"] == " ".join(out[a] for a in ASPECTS if out[a])
    assert out["theme"] and out["objects"]


def test_every_generated_sentence_lands_in_its_aspect():
    wrong, total = [], 0
    for i, (objects, cover) in enumerate(LAYOUTS):
        out = describe(objects, cover, CROP, f"P{i:04d}_0000.png")
        for aspect in ASPECTS:
            for sentence in split_sentences(out[aspect]):
                total += 1
                if classify_sentence(sentence) != aspect:
                    wrong.append((aspect, sentence))
        assert split_caption(out["text"]) == {a: out[a] for a in ASPECTS}, i
    print(f"\n{total} generated sentences over {len(LAYOUTS)} layouts, {len(wrong)} in the wrong aspect")
    assert not wrong, wrong[:10]


def test_counts_in_captions_are_the_true_counts():
    for i, (objects, cover) in enumerate(LAYOUTS):
        if not objects:
            continue
        first = split_sentences(describe(objects, cover, CROP, f"k{i}")["objects"])[0]
        said = {_NOUN_OF[noun]: parse_number(num) for num, noun in _COUNTED.findall(first)}
        assert said == {c: min(n, 100) for c, n in _counts(objects).items()}, first


def test_truncated_objects_are_partially_visible_and_rows_are_found():
    cars = [box("small-vehicle", 200 + 12 * k, 300 + 30 * r, 10, 5, 90, "white") for r in range(2) for k in range(6)]
    out = describe(cars + [box("plane", 400, 100, 60, 50, 30, "white", visible=0.8)], COVER, CROP, "k")
    assert "The plane is only partially visible." in out["objects"]
    assert "in two rows" in out["relations"]
    assert "twelve small" in out["objects"]


def test_empty_crop_is_described_by_land_cover():
    farm = {"water": 0.0, "vegetation": 0.8, "bare_soil": 0.15, "built": 0.05}
    out = describe([], farm, CROP, "P0002_0003.png")
    assert out["positions"] == "" and out["relations"] == ""
    assert "farmland" in out["theme"] and "vegetation" in out["theme"]
    assert classify_sentence(out["objects"]) == "objects" and "no" in out["objects"].lower()
    qa = make_qa([], farm, CROP, "P0002_0003.png")
    assert {q["type"] for q in qa} <= {"presence", "area_comp", "scene"}
    assert all(q["answer"] == "No." for q in qa if q["type"] == "presence")
    assert any(q["type"] == "scene" and q["answer"] == "Farmland." for q in qa)
    assert describe([], {}, CROP, "k")["theme"] == "The image shows an open area, seen from above at high resolution."


@pytest.mark.parametrize("cats, theme", [
    (["plane", "small-vehicle"], "an airport"), (["ship", "harbor"], "a harbor"),
    (["storage-tank"] * 4, "an oil depot"), (["tennis-court"], "a sports ground"),
    (["roundabout", "small-vehicle"], "a road junction"), (["bridge"], "a river with a bridge"),
    (["swimming-pool", "small-vehicle"], "a residential area"), (["small-vehicle"] * 12, "a parking lot"),
    ([], "farmland"),
])
def test_infer_theme(cats, theme):
    objs = [box(c, 100, 100, 20, 10) for c in cats]
    assert infer_theme(objs, {"water": 0.1, "vegetation": 0.7, "bare_soil": 0.1, "built": 0.1}) == theme
    assert infer_theme([], {"water": 0.8, "vegetation": 0.1, "bare_soil": 0.0, "built": 0.1}) == "an area of open water"


# ---------------------------------------------------------------------------------------------
# QA


def _region_holds(answer, xy):
    """Does every normalised centre lie where the ab_position answer says?"""
    x, y = xy[:, 0], xy[:, 1]
    col, row = (x * 3).astype(int), (y * 3).astype(int)
    checks = {
        "top-left corner": (col == 0) & (row == 0), "top-right corner": (col == 2) & (row == 0),
        "bottom-left corner": (col == 0) & (row == 2), "bottom-right corner": (col == 2) & (row == 2),
        "at the top of": (col == 1) & (row == 0), "at the bottom of": (col == 1) & (row == 2),
        "left side": (col == 0) & (row == 1), "right side": (col == 2) & (row == 1),
        "center": (col == 1) & (row == 1),
        "upper half": y < 0.5, "lower half": y >= 0.5, "left half": x < 0.5, "right half": x >= 0.5,
        "top edge": y < 0.15, "bottom edge": y > 0.85, "left edge": x < 0.15, "right edge": x > 0.85,
    }
    hits = [ok for phrase, ok in checks.items() if phrase in answer.lower()]
    assert len(hits) == 1, answer
    return bool(hits[0].all())


_RE_POSITION = re.compile(rf"The ({_NOUN}) (?:is|are) (to the left of|to the right of|above|below) the ({_NOUN})\.")
_SIDE = {"to the left of": (0, 1), "to the right of": (0, -1), "above": (1, 1), "below": (1, -1)}  # axis, sign


def _check_answer(q, objects, cover):
    """Assert that one generated QA pair is true of the objects and the land cover."""
    counts = _counts(objects)
    by = {c: [o for o in objects if o.category == c] for c in counts}
    cat = _noun_in(q["question"])
    if q["type"] == "presence":
        assert q["answer"] == ("Yes." if counts[cat] else "No."), q
    elif q["type"] == "quantity":
        assert parse_number(q["answer"]) == min(counts[cat], 100), q
    elif q["type"] == "color":
        said = set(q["answer"].rstrip(".").lower().replace(" and ", ", ").split(", "))
        assert said == {o.color for o in by[cat]}, q
    elif q["type"] == "ab_position":
        assert _region_holds(q["answer"], np.clip([o.center for o in by[cat]], 0, 511.9) / CROP), q
    elif q["type"] == "re_position":
        m = _RE_POSITION.fullmatch(q["answer"])
        a = np.array([o.center for o in by[_NOUN_OF[m.group(1)]]])
        b = np.array([o.center for o in by[_NOUN_OF[m.group(3)]]])
        axis, sign = _SIDE[m.group(2)]
        assert (sign * (b[:, axis][:, None] - a[:, axis][None, :]) > 0).all(), q  # every a on that side of every b
    elif q["type"] == "area_comp" and "occupied by" in q["question"]:
        first, second = re.findall(rf"the ({_NOUN})", q["question"])
        bigger = sum(o.area for o in by[_NOUN_OF[first]]) > sum(o.area for o in by[_NOUN_OF[second]])
        assert q["answer"] == ("Yes." if bigger else "No."), q
    elif q["type"] == "area_comp":
        first, second = (_COVER_OF[n] for n in re.findall(r"covered by ([\w -]+?) (?:larger|in this)", q["question"]))
        assert q["answer"] == ("Yes." if cover[first] > cover[second] else "No."), q
    elif q["type"] == "scene":
        assert q["answer"].rstrip(".").lower() == re.sub(r"^an? ", "", infer_theme(objects, cover)), q


def test_qa_answers_are_true():
    seen = Counter()
    for i, (objects, cover) in enumerate(LAYOUTS):
        qa = make_qa(objects, cover, CROP, f"k{i}")
        for q in qa:
            seen[q["type"]] += 1
            assert q["type"] in GENERATED_QA_TYPES and q["question"].endswith("?")
            assert re.fullmatch(r"[A-Z].*\.", q["answer"]), q
            _check_answer(q, objects, cover)
        assert [q["answer"] for q in qa if q["type"] == "presence"].count("No.") >= 1  # an absent class is asked
    print(f"\nQA pairs per type over {len(LAYOUTS)} layouts: {dict(seen)}")
    assert set(seen) == set(GENERATED_QA_TYPES)


def test_qa_types_are_rsieval_types():
    assert QA_TYPES is RECORD_QA_TYPES
    assert set(GENERATED_QA_TYPES) == set(QA_TYPES) - {"road_ori", "reasoning"}
