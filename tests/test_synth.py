"""The embedded corpus generator: determinism, DOTA format, class coverage, labels on pixels."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image, ImageDraw
from shapely import STRtree
from shapely.geometry import Polygon

from rsmoe.data.dota import read_label
from rsmoe.data.records import DOTA_V15_CLASSES, DotaObject
from rsmoe.data.synth import (
    DIFFICULT_AREA,
    HEADLESS,
    IMAGESOURCE,
    THEMES,
    render_scene,
    synthesize,
    theme_of,
)


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, object, str]]:
    """Scenes 0..7 of seed 0: one per theme. (image (H, W, 3) uint8, DotaLabel, theme)."""
    return [render_scene(i, seed=0) for i in range(len(THEMES))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[object, list[str]]:
    out = tmp_path_factory.mktemp("synth")
    return out, synthesize(out, 2, seed=0, progress=True)


def _files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_other_seed_differs(corpus, tmp_path):
    first, ids = corpus
    assert ids == ["P0000", "P0001"]
    synthesize(tmp_path / "again", 2, seed=0)
    synthesize(tmp_path / "other", 1, seed=1)
    a, b = _files(first), _files(tmp_path / "again")
    assert sorted(a) == ["images/P0000.png", "images/P0001.png",
                         "labelTxt/P0000.txt", "labelTxt/P0001.txt"]
    assert a == b
    assert (tmp_path / "other" / "images" / "P0000.png").read_bytes() != a["images/P0000.png"]


def test_a_killed_synth_leaves_no_half_corpus(tmp_path, monkeypatch):
    """`make data` skips synth when data/raw/images exists: a run cut after 11 of 96 scenes once
    left a folder that the pipeline then took for the whole corpus."""
    import rsmoe.data.synth.api as api

    write = api._write_scene
    calls = []

    def dies_on_the_second(job):
        calls.append(job)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what Ctrl-C / a kill does mid-run
        return write(job)

    monkeypatch.setattr(api, "_write_scene", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "raw", 3, seed=0, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither raw/ nor its sibling
    monkeypatch.setattr(api, "_write_scene", write)
    (tmp_path / "raw.tmp-1").mkdir()  # a sibling a killed process could not remove
    assert synthesize(tmp_path / "raw", 2, seed=0, workers=1) == ["P0000", "P0001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    assert len(list((tmp_path / "raw" / "images").iterdir())) == 2


def test_written_scene_equals_the_one_rendered_alone(corpus, scenes):
    # a scene does not depend on how many scenes are generated with it
    root, _ = corpus
    arr = np.asarray(Image.open(root / "images" / "P0001.png"))
    assert np.array_equal(arr, scenes[1][0])


def test_label_files_are_dota_with_header_and_boxes_inside(corpus):
    root, ids = corpus
    for sid in ids:
        path = root / "labelTxt" / f"{sid}.txt"
        lines = path.read_text().splitlines()
        assert lines[0] == f"imagesource:{IMAGESOURCE}" and lines[1].startswith("gsd:")
        label = read_label(path)
        assert label.imagesource == IMAGESOURCE and 0.1 <= label.gsd <= 0.5
        with Image.open(root / "images" / f"{sid}.png") as im:
            assert im.mode == "RGB" and not im.info.get("dpi") and not getattr(im, "text", {})
            w, h = im.size
        assert 1024 <= w <= 1536 and 1024 <= h <= 1536
        assert label.objects
        for obj in label.objects:
            pts = np.asarray(obj.polygon)
            assert pts.min() >= 0 and pts[:, 0].max() <= w and pts[:, 1].max() <= h, obj


def test_every_class_and_every_theme_appears(scenes):
    assert {theme for _, _, theme in scenes} == set(THEMES)
    seen = {o.category for _, label, _ in scenes for o in label.objects}
    assert seen == set(DOTA_V15_CLASSES), f"missing {set(DOTA_V15_CLASSES) - seen}"


def test_themes_cycle_for_any_seed():
    for seed in (0, 3, 11):
        assert {theme_of(i, seed) for i in range(5, 5 + len(THEMES))} == set(THEMES)


def test_render_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_size"):
        render_scene(0, 0, min_size=1200, max_size=1100)
    with pytest.raises(ValueError, match="seed"):
        render_scene(0, -1)


def _shoelace(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def test_polygons_are_clockwise_rectangles_in_dota_order(scenes):
    for _, label, _ in scenes:
        for obj in label.objects:
            p = np.asarray(obj.polygon)
            area = _shoelace(p)
            assert area > 0, f"{obj} is not clockwise in image coordinates"
            e1, e2 = p[1] - p[0], p[3] - p[0]
            n1, n2 = np.linalg.norm(e1), np.linalg.norm(e2)
            assert abs(np.dot(e1, e2)) <= 0.02 * n1 * n2 + 0.1 * (n1 + n2), obj  # 0.1 px rounding
            if abs(area - DIFFICULT_AREA) > 1e-6:  # exactly at the threshold, float rounding decides
                assert obj.difficult == int(area < DIFFICULT_AREA), obj
            if obj.category in HEADLESS:  # no head: start at the top-left-most corner
                assert int(np.argmin(p.sum(axis=1))) == 0, obj
            elif obj.category in ("small-vehicle", "large-vehicle", "ship"):
                # head first: the first edge is the short front edge
                assert np.linalg.norm(e1) < np.linalg.norm(p[2] - p[1]), obj


def _grown(poly, g: float) -> list[tuple[float, float]]:
    """The rectangle `poly` grown outwards by g px on every side (shrunk when g < 0)."""
    p = np.asarray(poly, float)
    e1 = (p[1] - p[0]) / np.linalg.norm(p[1] - p[0])
    e2 = (p[3] - p[0]) / np.linalg.norm(p[3] - p[0])
    return [tuple(p[0] - g * (e1 + e2)), tuple(p[1] + g * (e1 - e2)),
            tuple(p[2] + g * (e1 + e2)), tuple(p[3] - g * (e1 - e2))]


def _inside_and_ring(img: np.ndarray, obj: DotaObject) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, 3) just inside the box, and of a ring 2..6 px outside it (blur-free margins)."""
    outer = _grown(obj.polygon, 6)
    xy = np.asarray(outer)
    h, w = img.shape[:2]
    x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int), (w, h))

    def mask(pts) -> np.ndarray:
        m = Image.new("L", (x1 - x0, y1 - y0))
        ImageDraw.Draw(m).polygon([(x - x0, y - y0) for x, y in pts], fill=1)
        return np.asarray(m, bool)

    crop = img[y0:y1, x0:x1].astype(float)
    return crop[mask(_grown(obj.polygon, -1))], crop[mask(outer) & ~mask(_grown(obj.polygon, 2))]


SOLID = ("small-vehicle", "large-vehicle", "ship", "storage-tank", "swimming-pool", "harbor",
         "bridge", "tennis-court", "basketball-court", "soccer-ball-field")


def test_objects_are_drawn_where_labelled(scenes):
    # objects filling their box: the mean colour inside differs clearly from the ring outside
    dist = defaultdict(list)
    for img, label, _ in scenes:
        for obj in label.objects:
            if obj.category in SOLID:
                inside, ring = _inside_and_ring(img, obj)
                dist[obj.category].append(np.linalg.norm(inside.mean(0) - ring.mean(0)))
    assert set(dist) == set(SOLID)
    for category, d in dist.items():
        assert np.mean(np.asarray(d) > 15) >= 0.9, (category, np.round(sorted(d)[:5], 1))


def test_sparse_objects_are_drawn_where_labelled(scenes):
    # planes, helicopters, cranes, tracks, roundabouts fill only part of their box: a share of the
    # pixels inside must still be far from the surroundings' typical colour
    for img, label, _ in scenes:
        for obj in label.objects:
            if obj.category in SOLID:
                continue
            inside, ring = _inside_and_ring(img, obj)
            far = np.linalg.norm(inside - np.median(ring, axis=0), axis=1) > 30
            assert far.mean() > 0.15, (obj, far.mean())


def _sides_m(obj: DotaObject, gsd: float) -> tuple[float, float]:
    p = np.asarray(obj.polygon)
    a, b = np.linalg.norm(p[1] - p[0]) * gsd, np.linalg.norm(p[2] - p[1]) * gsd
    return max(a, b), min(a, b)


def test_sizes_are_plausible_in_metres(scenes):
    sizes = defaultdict(list)  # category -> [(long side, short side)] in metres
    for _, label, _ in scenes:
        for obj in label.objects:
            sizes[obj.category].append(_sides_m(obj, label.gsd))
    med = {k: np.median(np.asarray(v), axis=0) for k, v in sizes.items()}
    assert 3 <= med["small-vehicle"][0] <= 7 and 1.4 <= med["small-vehicle"][1] <= 2.6
    assert 7 <= med["large-vehicle"][0] <= 18
    assert 25 <= med["plane"][0] <= 70 and med["plane"][0] > 4 * med["small-vehicle"][0]
    assert all(10 <= L <= 160 for L, _ in sizes["ship"])
    assert all(5 <= L <= 60 for L, _ in sizes["storage-tank"])
    assert all(165 <= L <= 185 and 85 <= W <= 100 for L, W in sizes["ground-track-field"])
    assert all(95 <= L <= 115 and 60 <= W <= 80 for L, W in sizes["soccer-ball-field"])
    assert all(25 <= L <= 40 and 13 <= W <= 20 for L, W in sizes["tennis-court"])
    assert all(8 <= L <= 20 for L, _ in sizes["helicopter"])


def test_objects_do_not_overlap_each_other(scenes):
    for _, label, theme in scenes:
        polys = [Polygon(o.polygon) for o in label.objects]
        tree = STRtree(polys)
        for i, j in zip(*tree.query(polys, predicate="intersects")):
            if i < j:
                shared = polys[i].intersection(polys[j]).area
                assert shared <= 0.05 * min(polys[i].area, polys[j].area), \
                    (theme, label.objects[i], label.objects[j])


def test_arrangements_parked_cars_are_parallel(scenes):
    # the parking scene's cars stand in rows: most share one of two axes (nose in / backed in)
    _, label, theme = scenes[THEMES.index("parking")]
    assert theme == "parking"
    angles = []
    for obj in label.objects:
        if obj.category == "small-vehicle":
            p = np.asarray(obj.polygon)
            d = p[3] - p[0]  # along the length
            angles.append(math.degrees(math.atan2(d[1], d[0])))
    folded = (np.asarray(angles) - angles[0] + 45) % 90 - 45  # deviation from the first car's axis
    assert len(angles) > 40 and np.mean(np.abs(folded - np.median(folded)) < 8) > 0.8
