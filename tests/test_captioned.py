"""Captioned sets besides DOTA (RSICap, Karpathy, a plain folder): read, validate with quarantine,
prepare with every reference kept, then train and evaluate on them with the tiny preset."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsmoe.data.captioned import prepared_name, read_captioned
from rsmoe.data.prepare_captioned import prepare_captioned
from rsmoe.data.validation import validate_captioned
from rsmoe.params import PrepareParams, ValidateParams
from rsmoe.stages import load

from train_fixtures import tiny_params

SENTENCES = ["many green trees are around a white building", "a white building is surrounded by green trees",
             "several cars are parked beside the road", "a long road goes through the dense forest",
             "two planes are parked on the apron", "some storage tanks stand near the harbor"]


def _image(path: Path, seed: int, size: tuple[int, int] = (96, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)


def good_images(root: Path, n: int = 8) -> list[tuple[str, list[str], str]]:
    """n images under root/images (one in a subfolder, one larger than a crop), each with 2-3
    references and a split (train first, then val, then test)."""
    out = []
    for i in range(n):
        name = f"sub/img{i}.jpg" if i == 1 else f"img{i}.png"
        _image(root / "images" / name, i, (700, 600) if i == 2 else (96, 80))
        refs = [SENTENCES[(i + k) % len(SENTENCES)] + f" number {i}" for k in range(2 + i % 2)]
        out.append((name, refs, "train" if i < n - 4 else ("val" if i < n - 2 else "test")))
    return out


def write_karpathy(root: Path, images, bad: bool = True) -> Path:
    items = [{"filename": f, "imgid": i, "split": "restval" if (s == "train" and i == 0) else s,
              "sentences": [{"raw": r, "tokens": r.split()} for r in refs]} for i, (f, refs, s) in enumerate(images)]
    if bad:
        _image(root / "images" / "broken.png", 99)
        (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
        (root / "outside.png").write_bytes((root / "images" / "img0.png").read_bytes())
        items += [
            {"filename": "missing.png", "imgid": 100, "split": "train", "sentences": [{"raw": SENTENCES[0]}]},
            {"filename": "broken.png", "imgid": 101, "split": "train", "sentences": [{"raw": SENTENCES[1]}]},
            {"filename": "../outside.png", "imgid": 102, "split": "train", "sentences": [{"raw": SENTENCES[2]}]},
            {"filename": "img0.png", "imgid": 103, "split": "holdout", "sentences": [{"raw": SENTENCES[3]}]},
        ]
        # sentence-level problems on a good image: an empty one and a duplicate, the rest kept
        items[3]["sentences"] += [{"raw": "  "}, {"raw": items[3]["sentences"][0]["raw"].upper()}]
    path = root / "dataset_test.json"
    path.write_text(json.dumps({"images": items, "dataset": "test"}))
    return path


def write_rsicap(root: Path, images, bad: bool = True) -> Path:
    anns = [{"image_id": f"{i}-{k}", "filename": f, "text_input": "Describe this image in detail.", "text_output": r}
            for i, (f, refs, _) in enumerate(images) for k, r in enumerate(refs)]
    if bad:
        anns += [{"image_id": "x", "filename": "missing.png", "text_output": SENTENCES[0]},
                 {"image_id": "y", "text_output": SENTENCES[1]},  # no filename
                 {"image_id": "z", "filename": "img3.png", "text_output": ""}]  # an empty extra reference
    path = root / "captions.json"
    path.write_text(json.dumps({"annotations": anns}))
    return path


def write_folder(root: Path, images, bad: bool = True, jsonl: bool = False) -> Path:
    rows = [{"filename": f, "caption": r} for f, refs, _ in images for r in refs]
    if bad:
        rows += [{"filename": "/etc/passwd", "caption": SENTENCES[0]}, {"filename": "img4.png", "caption": "two"}]
    if jsonl:
        path = root / "captions.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    path = root / "captions.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["filename", "caption"])
        w.writeheader()
        w.writerows(rows)
    return path


WRITERS = {"karpathy": write_karpathy, "rsicap": write_rsicap, "folder": write_folder}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    out = {}
    for fmt, write in WRITERS.items():
        root = tmp_path_factory.mktemp(fmt)
        images = good_images(root)
        out[fmt] = (root, write(root, images), images)
    return out


def test_each_format_groups_every_reference_of_an_image(sets):
    for fmt, (root, path, images) in sets.items():
        items = {}
        for i in read_captioned(fmt, path):
            items.setdefault(i.filename, i)  # karpathy: a bad second record of img0.png follows
        for f, refs, split in images:
            got = [s for s in items[f].sentences if s]
            assert got[:len(refs)] == refs, fmt
        if fmt == "karpathy":
            assert items["img0.png"].split == "restval" and items["img5.png"].split == "val"
        else:
            assert items["img0.png"].split is None


def test_validate_quarantines_each_bad_record_and_keeps_the_good(sets):
    root, path, images = sets["karpathy"]
    report = validate_captioned("karpathy", path, root / "images", ValidateParams())
    assert report.ok, report.summary()
    problems = {i.record: i.problem for i in report.quarantine}
    assert "not found" in problems["image 8 (missing.png)"]
    assert "image 9 (broken.png)" in problems
    assert "leaves the image folder" in problems["image 10 (../outside.png)"]
    assert "unknown split 'holdout'" in problems["image 11 (img0.png)"]
    assert report.quarantined_captioned() == {8, 9, 10, 11}
    assert report.quarantined_sentences() == {(3, 3), (3, 4)}  # the empty and the repeated sentence
    assert "empty" in problems["image 3 (img3.png) sentence 3"]
    assert "repeats an earlier caption" in problems["image 3 (img3.png) sentence 4"]
    assert all(i.fix for i in report.quarantine)
    assert report.counts["captioned"] == {"total": 12, "kept": 8, "quarantined": 4}

    root, path, _ = sets["folder"]
    report = validate_captioned("folder", path, root / "images", ValidateParams())
    problems = {i.record: i.problem for i in report.quarantine}
    assert "leaves the image folder" in problems[f"row {len(open(path).readlines()) - 1} (/etc/passwd)"]
    assert any("1 words" in p for p in problems.values())  # "two": below caption_min_words
    assert report.counts["captioned"]["kept"] == 8

    root, path, _ = sets["rsicap"]
    report = validate_captioned("rsicap", path, root / "images", ValidateParams())
    problems = {i.record: i.problem for i in report.quarantine}
    assert problems["annotation 21 (None)"] == "missing or empty filename"
    assert "not found" in problems["annotation 20 (missing.png)"]
    assert "empty" in problems["annotation 22 (img3.png)"]  # a fourth reference of img3, named by its own record


def test_a_file_that_is_not_its_format_is_a_hard_error_naming_the_fix(tmp_path):
    (tmp_path / "images").mkdir()
    bad = tmp_path / "captions.csv"
    bad.write_text("image;text\na.png;a caption\n")
    report = validate_captioned("folder", bad, tmp_path / "images", ValidateParams())
    assert not report.ok and "no caption or filename column" in report.hard_errors[0].problem
    assert "filename,caption" in report.hard_errors[0].fix


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_prepare_keeps_every_reference_and_the_sets_own_split(sets, tmp_path, fmt):
    root, path, images = sets[fmt]
    report = validate_captioned(fmt, path, root / "images", ValidateParams())
    stats = prepare_captioned(fmt, path, root / "images", tmp_path / "prepared", PrepareParams(), report=report,
                              progress=False)
    records = {r["source_file"]: r for r in json.loads((tmp_path / "prepared" / "captions.json").read_text())
               ["annotations"]}
    assert sorted(records) == sorted(f for f, _, _ in images)  # the quarantined ones are gone
    for f, refs, split in images:
        r = records[f]
        assert r["references"] == refs and r["text_output"] == refs[0]
        assert (tmp_path / "prepared" / "images" / r["filename"]).is_file()
        if fmt == "karpathy":
            assert r["split"] == split  # its own split; restval counts as train
    assert records["sub/img1.jpg"]["filename"] == "sub__img1.png"
    with Image.open(tmp_path / "prepared" / "images" / records["img2.png"]["filename"]) as im:
        assert max(im.size) == 512  # 700 x 600 scaled down to the crop size, aspect kept
    assert sum(stats["crops"].values()) == 8
    if fmt != "karpathy":  # no split in the file: split by image with prepare.splits, each split non-empty
        assert all(stats["crops"][s] for s in ("train", "val", "test"))
    assert json.loads((tmp_path / "prepared" / "qa.json").read_text()) == {"annotations": []}


def test_prepared_names_are_flat_and_unique():
    taken: set[str] = set()
    assert [prepared_name(f, taken) for f in ("a/b.jpg", "a__b.png", "c d.tif", "x.png")] == [
        "a__b.png", "a__b-1.png", "c_d.png", "x.png"]


def test_jsonl_folder_reads_like_csv(tmp_path):
    images = good_images(tmp_path, 4)
    a = read_captioned("folder", write_folder(tmp_path, images, bad=False))
    b = read_captioned("folder", write_folder(tmp_path, images, bad=False, jsonl=True))
    assert [(i.filename, i.sentences) for i in a] == [(i.filename, i.sentences) for i in b]


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_stages_train_and_evaluate_on_a_captioned_set(sets, tmp_path, fmt):
    """validate -> prepare -> stage1 -> propagate -> stage2 -> evaluate with the tiny preset, the
    set named by data.format / data.annotations / data.images; every reference is a training
    example and a scoring reference."""
    from rsmoe.data.loaders import load_prepared
    from rsmoe.training.data import load_examples

    root, path, images = sets[fmt]
    params = tiny_params(tmp_path, data={"format": fmt, "annotations": str(path), "images": str(root / "images")},
                         stage1={"max_steps": 2}, stage2={"max_steps": 2},
                         evaluate={"split": "val", "batch_size": 4, "max_new_tokens": 4, "stage1": False,
                                   "samples": 1})
    for stage in ("validate", "prepare"):
        load(stage).run(params)
    records = load_prepared(params.paths.prepared, "captions.json")
    train = [r for r in records if r["split"] == "train"]
    examples = load_examples(params.paths.prepared, "train", 3)
    assert [e.caption for e in examples] == [ref for r in train for ref in r["references"]]
    for stage in ("stage1", "propagate", "stage2", "evaluate"):
        load(stage).run(params)
    metrics = json.loads((params.paths.metrics / "evaluate.json").read_text())
    val = [r for r in records if r["split"] == "val"]
    assert metrics["images"] == len(val) and metrics["split"] == "val" and metrics["dataset"] == fmt
    assert metrics["references"] == sum(len(r["references"]) for r in val) > len(val)
    assert set(metrics["baselines"]) >= {"random_caption"} and "scene_caption" not in metrics["baselines"]
    predictions = [json.loads(line) for line in (params.paths.reports / "predictions.jsonl").read_text().splitlines()]
    assert [p.get("references", [p["reference"]]) for p in predictions] == [r["references"] for r in val]
