"""synth -> validate -> prepare on a few small scenes: the RSICap / RSIEval outputs."""
import json
import shutil

import pytest

from rsmoe.data.aspects import split_caption
from rsmoe.data.dota import read_label
from rsmoe.data.prepare import assign_splits, prepare
from rsmoe.data.synth import synthesize
from rsmoe.data.tiling import windows
from rsmoe.data.validation import validate
from rsmoe.data.records import QA_TYPES
from rsmoe.params import Params

PARAMS = Params()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    synthesize(root, 4, seed=3, min_size=1024, max_size=1100)
    # a human caption for one crop, joined by filename
    human = "This is an aerial image written by a person. There are two white planes. A road runs next to the apron."
    (root / "captions.json").write_text(json.dumps({"annotations": [
        {"image_id": "h1", "filename": "P0001_0002.png", "text_input": "Describe this image in detail.",
         "text_output": human}]}))
    return root


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    report = validate(raw, PARAMS.validate_, captions=raw / "captions.json")
    assert report.ok, report.summary()
    out = tmp_path_factory.mktemp("prep") / "prepared"
    stats = prepare(raw, out, PARAMS.prepare, captions=raw / "captions.json", report=report, progress=False)
    return out, stats


def _load(out, name):
    return json.loads((out / name).read_text())["annotations"] if name != "splits.json" else json.loads(
        (out / name).read_text())


def test_crops_follow_windows_and_rsicap_naming(raw, prepared):
    out, stats = prepared
    from PIL import Image

    expected = []
    for img in sorted((raw / "images").glob("*.png")):
        w, h = Image.open(img).size
        expected += [f"{img.stem}_{win.index:04d}.png" for win in windows(w, h, 512, 128)]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(expected)
    assert sum(stats["crops"].values()) == len(expected)
    assert Image.open(out / "images" / expected[0]).size == (512, 512)
    assert not out.with_name("prepared.partial").exists()


def test_captions_json_is_rsicap_format_with_segments(prepared):
    out, _ = prepared
    anns = _load(out, "captions.json")
    for a in anns:
        assert {"image_id", "filename", "text_input", "text_output", "segments", "objects", "split"} <= set(a)
        assert set(a["segments"]) == {"theme", "objects", "positions", "relations"}
        joined = " ".join(s for s in a["segments"].values() if s)
        assert joined.split() == a["text_output"].split() or a["caption_source"] == "human"
        for o in a["objects"]:
            assert all(-0.01 <= v <= 512.01 for pt in o["polygon"] for v in pt)
            assert o["visible"] >= PARAMS.prepare.keep_threshold
    assert len({a["image_id"] for a in anns}) == len(anns)


def test_objects_are_counted_once_per_crop(raw, prepared):
    out, _ = prepared
    anns = {a["filename"]: a for a in _load(out, "captions.json")}
    scene0 = read_label(raw / "labelTxt" / "P0000.txt")
    first = anns["P0000_0000.png"]  # window (0, 0, 512)
    inside = [o for o in scene0.objects if all(0 <= x <= 512 and 0 <= y <= 512 for x, y in o.polygon)]
    assert len([o for o in first["objects"] if not o["truncated"]]) >= len(inside)


def test_human_caption_wins_and_is_split_into_aspects(prepared):
    out, stats = prepared
    ann = next(a for a in _load(out, "captions.json") if a["filename"] == "P0001_0002.png")
    assert ann["caption_source"] == "human" and ann["image_id"] == "h1"
    assert ann["text_output"].startswith("This is an aerial image written by a person.")
    assert ann["segments"] == split_caption(ann["text_output"])
    assert stats["caption_sources"]["human"] == 1 and stats["unjoined_human_captions"] == []


def test_splits_are_by_scene_without_leakage(prepared):
    out, _ = prepared
    splits = _load(out, "splits.json")
    scenes = [s for v in splits.values() for s in v]
    assert sorted(scenes) == ["P0000", "P0001", "P0002", "P0003"] and len(set(scenes)) == 4
    scene_split = {s: k for k, v in splits.items() for s in v}
    for a in _load(out, "captions.json"):
        assert a["split"] == scene_split[a["scene"]] and a["filename"].startswith(a["scene"] + "_")
    for q in _load(out, "qa.json"):
        assert q["split"] == scene_split[q["filename"].split("_")[0]]


def test_qa_is_rsieval_format(prepared):
    out, _ = prepared
    qa = _load(out, "qa.json")
    assert qa, "no QA written"
    types = set()
    for item in qa:
        assert item["filename"].endswith(".png") and item["caption"]
        for p in item["qa_pairs"]:
            assert p["question"].strip() and p["answer"].strip() and p["type"] in QA_TYPES
            types.add(p["type"])
    assert {"presence", "quantity", "scene"} <= types


def test_prepare_is_deterministic_and_replaces_old_output(raw, prepared, tmp_path):
    out, _ = prepared
    again = tmp_path / "prepared"
    (again / "images").mkdir(parents=True)
    (again / "images" / "stale.png").write_bytes(b"old")
    prepare(raw, again, PARAMS.prepare, captions=raw / "captions.json", progress=False)
    assert not (again / "images" / "stale.png").exists()
    for name in ("captions.json", "qa.json", "splits.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert (again / "images" / "P0002_0004.png").read_bytes() == (out / "images" / "P0002_0004.png").read_bytes()


def test_quarantined_records_are_skipped(raw, tmp_path):
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    with open(bad / "labelTxt" / "P0000.txt", "a") as f:
        f.write("10 10 20 10 20 20 10 20 flying-saucer 0\n")
    (bad / "images" / "P0003.png").write_bytes(b"not a png")
    report = validate(bad, PARAMS.validate_)
    assert report.ok
    stats = prepare(bad, tmp_path / "out", PARAMS.prepare, report=report, progress=False)
    assert stats["scenes"] == 3  # the corrupt scene is left out, the rest carry on
    names = {a["filename"] for a in _load(tmp_path / "out", "captions.json")}
    assert not any(n.startswith("P0003_") for n in names)


def test_assign_splits_counts_and_determinism():
    ids = [f"P{i:04d}" for i in range(24)]
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    assert a == assign_splits(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 19, "val": 3, "test": 2} or counts == {"train": 19, "val": 2, "test": 3}
    assert a != assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, 1)
    small = assign_splits(["P0000", "P0001", "P0002"], {"train": 0.8, "val": 0.1, "test": 0.1}, 0)
    assert sorted(small.values()) == ["test", "train", "val"]
    assert set(assign_splits(["P0000"], {"train": 1.0}, 0).values()) == {"train"}


def test_stratified_splits_put_every_type_in_val_and_test():
    ids = [f"P{i:04d}" for i in range(48)]
    strata = {sid: ("airport", "harbor", "farmland", "parking lot", "lonely")[i % 4 if i < 46 else 4]
              for i, sid in enumerate(ids)}
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, strata)
    assert a == assign_splits(list(reversed(ids)), {"train": 0.8, "val": 0.1, "test": 0.1}, 0, strata)
    for kind in ("airport", "harbor", "farmland", "parking lot"):  # 11 or 12 scenes each
        got = sorted(a[s] for s in ids if strata[s] == kind)
        assert got.count("val") >= 1 and got.count("test") >= 1, kind
        assert got.count("train") >= 9, kind
    assert [a[s] for s in ids if strata[s] == "lonely"] == ["train", "train"]  # too few to share out


def test_stratified_splits_still_fill_val_and_test_when_every_type_is_alone():
    """One scene per type (the tiny deploy corpus): no stratum can share out, yet val and test
    each get a scene, as an unstratified split would give them."""
    ids = ["P0000", "P0001", "P0002"]
    strata = {"P0000": "airport", "P0001": "harbor", "P0002": "farmland"}
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, strata)
    assert sorted(a.values()) == ["test", "train", "val"]
    ids = [f"P{i:04d}" for i in range(24)]  # 12 types of 2 scenes: floor(0.1 * 24) = 2 each
    a = assign_splits(ids, {"train": 0.8, "val": 0.1, "test": 0.1}, 0, {s: str(i // 2) for i, s in enumerate(ids)})
    assert [list(a.values()).count(s) for s in ("train", "val", "test")] == [20, 2, 2]
