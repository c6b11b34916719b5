"""The validate stage's logic on tiny raw folders built in tmp_path, and on the real RSICap/RSIEval text."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rs_fixtures import (GOOD_ROWS, caption, label_text, make_raw, qa_entry, ramp, scene, truncate,
                         write_json, write_png)
from rsmoe.data.validation import Issue, ValidationReport, normalize_qa_type, validate
from rsmoe.data.records import QA_TYPES
from rsmoe.params import ValidateParams

SHARED = Path("/work/shared/data")
P = ValidateParams()


def by_file(issues: list[Issue]) -> dict[tuple[str, str], Issue]:
    return {(i.file, i.record): i for i in issues}


# ------------------------------------------------------------------ clean data

def test_clean_raw_dir_passes(tmp_path, capfd):
    raw = make_raw(tmp_path / "raw")
    write_json(raw / "captions.json", [caption("0", "P0001_0001.png"), caption("1", "P0002.png")])
    write_json(raw / "qa.json", [qa_entry("P0003_0000.png", [("Is there a plane?", "Yes.", "presence")])])
    report = validate(raw, P, captions=raw / "captions.json", qa=raw / "qa.json")
    assert report.ok, report.summary()
    assert report.quarantine == [] and report.warnings == [] and report.hard_errors == []
    assert report.counts["images"] == {"total": 3, "kept": 3, "quarantined": 0}
    assert report.counts["labels"] == {"total": 9, "kept": 9, "quarantined": 0}
    assert report.counts["captions"]["kept"] == 2 and report.counts["qa"]["kept"] == 1
    assert report.expectations and all(e["success"] for e in report.expectations)
    assert {e["table"] for e in report.expectations} == {"images", "label_files", "labels", "captions",
                                                         "qa_images", "qa"}
    assert report.kept_images()["P0001"]["width"] == 256
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX progress bars are off

    a, b = report.to_json(tmp_path / "a.json"), validate(raw, P, captions=raw / "captions.json",
                                                         qa=raw / "qa.json").to_json(tmp_path / "b.json")
    assert a.read_bytes() == b.read_bytes()  # deterministic
    text = a.read_text()
    assert str(tmp_path) not in text  # no absolute paths of this machine
    data = json.loads(text)
    assert data["ok"] is True and data["inputs"]["captions"] == "captions.json"
    assert data["quarantine"]["issues"] == [] and data["images"]["P0002"]["file"] == "images/P0002.png"
    assert "verdict: OK" in report.summary()


def test_progress_bar(tmp_path, capfd):
    raw = make_raw(tmp_path / "raw", ids=("P0001",))
    validate(raw, P, progress=True)
    assert "decode images" in capfd.readouterr().err


# ------------------------------------------------------------------ images

def test_bad_images_are_quarantined_good_ones_kept(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=tuple(f"P000{i}" for i in range(1, 9)))
    img = raw / "images"
    data = bytearray((img / "P0002.png").read_bytes())
    data[60:80] = b"\x00" * 20  # corrupt the compressed pixel data
    (img / "P0002.png").write_bytes(bytes(data))
    truncate(img / "P0003.png")
    write_png(img / "P0004.png", scene(32, 300))  # too small (one side < min_side)
    (img / "P0005.png").write_text("not an image")
    report = validate(raw, P)
    assert report.ok, report.summary()  # 4 of 8 = max_quarantine_fraction 0.5 is still allowed
    issues = by_file(report.quarantine)
    assert set(issues) == {("images/P0002.png", "image"), ("images/P0003.png", "image"),
                           ("images/P0004.png", "image"), ("images/P0005.png", "image")}
    assert "truncated" in issues["images/P0003.png", "image"].problem
    assert "re-download or re-export" in issues["images/P0003.png", "image"].fix
    assert "300x32" in issues["images/P0004.png", "image"].problem
    assert "min_side" in issues["images/P0004.png", "image"].fix
    assert "not a recognised image" in issues["images/P0005.png", "image"].problem
    assert report.quarantined_images() == {"P0002", "P0003", "P0004", "P0005"}
    assert report.counts["images"] == {"total": 8, "kept": 4, "quarantined": 4}
    assert set(report.kept_images()) == {"P0001", "P0006", "P0007", "P0008"}
    # labels of quarantined images are dropped with them (not checked, no issues), the others kept
    assert report.counts["labels"] == {"total": 24, "kept": 12, "quarantined": 12}
    assert report.quarantined_label_lines() == {}
    failed = {e["column"] for e in report.expectations if not e["success"]}
    assert {"truncated", "decodable", "height"} <= failed and "width" not in failed


def test_too_many_bad_images_is_a_hard_error(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002", "P0003"))
    truncate(raw / "images" / "P0001.png")
    truncate(raw / "images" / "P0002.png")
    report = validate(raw, P)
    assert not report.ok
    assert "2 of 3 images quarantined" in report.hard_errors[0].problem
    assert "max_quarantine_fraction" in report.hard_errors[0].fix
    assert validate(raw, ValidateParams(max_quarantine_fraction=0.7)).ok


def test_all_images_corrupt_is_a_hard_error(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002"))
    for p in (raw / "images").iterdir():
        p.write_bytes(b"")
    report = validate(raw, ValidateParams(max_quarantine_fraction=1.0))
    assert not report.ok
    assert any("no readable image" in i.problem for i in report.hard_errors)
    assert "FAILED" in report.summary()


def test_duplicate_ids_across_extensions_is_a_hard_error(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002"))
    tifffile.imwrite(raw / "images" / "P0001.tif", scene(256, 256), photometric="rgb")
    report = validate(raw, P)
    assert not report.ok
    err = report.hard_errors[0]
    assert err.file == "images/P0001.png, images/P0001.tif" and err.record == "image P0001"


def test_multiband_geotiff_and_bands(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001",))
    tifffile.imwrite(raw / "images" / "P0002.tif", ramp(128, 128, 4), photometric="minisblack",
                     planarconfig="contig")
    (raw / "labelTxt" / "P0002.txt").write_text(label_text(GOOD_ROWS[:1]))
    assert validate(raw, P, bands=(3, 2, 1)).quarantine == []
    report = validate(raw, P, bands=(5, 2, 1))
    (issue,) = report.quarantine
    assert issue.file == "images/P0002.tif" and "4 bands" in issue.problem and "data.bands" in issue.fix
    assert report.images["P0002"]["bands"] == 4 and report.images["P0002"]["dtype"] == "uint16"


def test_label_and_image_pairing(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002"))
    (raw / "labelTxt" / "P0002.txt").unlink()  # image without labels: fine, but warned
    (raw / "labelTxt" / "P0009.txt").write_text(label_text(GOOD_ROWS))  # orphan label: quarantined
    (raw / "images" / "notes.txt").write_text("hello")  # stray file: warned, ignored
    report = validate(raw, P)
    assert report.ok
    (orphan,) = report.quarantine
    assert (orphan.file, orphan.record, orphan.table) == ("labelTxt/P0009.txt", "file", "label_files")
    assert "add the image or delete" in orphan.fix
    warned = {w.file for w in report.warnings}
    assert warned == {"images/P0002.png", "images/notes.txt"}
    assert report.quarantined_images() == set()
    assert report.counts["label_files"] == {"total": 2, "kept": 1, "quarantined": 1}


# ------------------------------------------------------------------ label rows

def test_bad_label_rows_are_quarantined_one_by_one(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002"))
    bad = [
        "10 10 60 ten 60 40 10 40 plane 0",  # line 6: non-numeric
        "10 10 300 10 300 40 10 40 plane 0",  # line 7: 44 px outside a 256 px image
        "10 10 60 10 60 40 10 40 car 0",  # line 8: unknown class
        "10 10 60 10 60 40 10 40 plane 2",  # line 9: difficult not 0/1
        "10 10 60 10 60",  # line 10: too few fields
        "10 10 260 10 260 40 10 40 ship 0",  # line 11: 4 px outside, inside the 8 px tolerance: kept
        "10 10 60 10 60 40 10 40 ship",  # line 12: DOTA v1.0 row without difficult: kept
        "5 5 5 5 5 5 5 5 plane 0",  # line 13: zero area
        "nan 10 60 10 60 40 10 40 plane 0",  # line 14: not finite
    ]
    (raw / "labelTxt" / "P0001.txt").write_text(label_text(GOOD_ROWS + bad))
    report = validate(raw, P)
    assert report.ok
    issues = by_file(report.quarantine)
    f = "labelTxt/P0001.txt"
    assert set(issues) == {(f, f"line {n}") for n in (6, 7, 8, 9, 10, 13, 14)}
    assert "non-numeric" in issues[f, "line 6"].problem
    assert "44.0 px outside" in issues[f, "line 7"].problem
    assert "unknown category 'car'" in issues[f, "line 8"].problem
    assert "use one of the DOTA classes: plane, ship" in issues[f, "line 8"].fix
    assert "difficult flag '2'" in issues[f, "line 9"].problem
    assert "found 5 fields" in issues[f, "line 10"].problem
    assert "zero area" in issues[f, "line 13"].problem
    assert report.quarantined_label_lines() == {"P0001": {6, 7, 8, 9, 10, 13, 14}}
    assert report.counts["labels"] == {"total": 6 + 9, "kept": 8, "quarantined": 7}
    assert report.quarantined_images() == set()


# ------------------------------------------------------------------ captions and QA

def test_bad_captions_are_quarantined_good_ones_kept(tmp_path):
    raw = make_raw(tmp_path / "raw")
    anns = [
        caption("0", "P0001_0000.png"),  # 0 good: crop of scene P0001
        caption("1", "P0002.png"),  # 1 good: an image in images/
        caption("2", "P0003_0001.png", text="  "),  # 2 empty caption
        caption("3", "../secret/P0001_0002.png"),  # 3 '..'
        caption("4", "/abs/P0001_0003.png"),  # 4 absolute
        caption("5", "P0042_0000.png"),  # 5 scene P0042 missing
        caption("6", "holiday.png"),  # 6 neither an image nor a crop name
        caption("0", "P0002_0005.png"),  # 7 duplicate image_id '0': the first user keeps it
        caption("8", "P0003_0009.png"),  # 8 and 11 share a filename: both go (which is right?)
        caption("9", "P0003_0002.png", text="Two planes."),  # 9 too short
        "not an object",  # 10
        caption("11", "P0003_0009.png"),  # 11
    ]
    write_json(raw / "caps.json", anns)
    report = validate(raw, P, captions=raw / "caps.json")
    assert report.ok
    got = {i.key[0]: i for i in report.quarantine}
    assert set(got) == set(range(2, 12))
    assert all(i.file == "caps.json" and i.table == "captions" for i in got.values())
    assert got[2].record == "annotation 2 (P0003_0001.png)" and "text_output" in got[2].fix
    assert "contains '..'" in got[3].problem and got[3].fix == "remove '..' from the filename"
    assert "absolute path" in got[4].problem
    assert "scene P0042 is missing" in got[5].problem
    assert "not a crop name" in got[6].problem
    assert "duplicate image_id '0' (first used by annotation 0)" in got[7].problem
    assert "filename 'P0003_0009.png' is used by annotations 8, 11" in got[8].problem == got[11].problem
    assert "2 words" in got[9].problem and "caption_min_words" in got[9].fix
    assert "not a JSON object" in got[10].problem
    assert report.quarantined_caption_indices() == set(range(2, 12))
    assert report.quarantined_captions() == {a["filename"] for a in anns[2:] if isinstance(a, dict)}
    assert "P0001_0000.png" not in report.quarantined_captions()  # what prepare asks
    assert report.counts["captions"] == {"total": 12, "kept": 2, "quarantined": 10}


def test_caption_of_a_quarantined_scene_is_quarantined(tmp_path):
    raw = make_raw(tmp_path / "raw")
    truncate(raw / "images" / "P0002.png")
    write_json(raw / "caps.json", [caption("0", "P0002_0000.png"), caption("1", "P0001_0000.png")])
    report = validate(raw, P, captions=raw / "caps.json")
    assert report.quarantined_captions() == {"P0002_0000.png"}
    assert "scene P0002, which is quarantined" in report.quarantine[-1].problem


def test_bad_qa_pairs_are_quarantined_good_ones_kept(tmp_path):
    raw = make_raw(tmp_path / "raw")
    anns = [
        qa_entry("P0001_0000.png", [
            ("Is there a plane?", "Yes.", "presence"),  # (0, 0) good
            ("How many planes?", "", "quantity"),  # (0, 1) empty answer
            ("Where is the plane?", "Top left.", "Absolute Position"),  # (0, 2) normalises: good
            ("What colour is the tank?", "White.", "paint"),  # (0, 3) unknown type
            ("", "Yes.", "presence"),  # (0, 4) empty question
            ("Is the road north-south?", "Yes", " Road-Direction "),  # (0, 5) normalises: good
        ]),
        qa_entry("../P0002_0000.png", [("Any ships?", "No.", "presence")]),  # whole annotation dropped
        qa_entry("P0003_0001.png", [("Is it urban?", 1, "scene")]),  # numeric answer is fine
    ]
    write_json(raw / "qa.json", anns)
    report = validate(raw, P, qa=raw / "qa.json")
    assert report.ok
    qa_issues = {(i.key[0], i.key[2]): i for i in report.quarantine if i.table == "qa"}
    assert set(qa_issues) == {(0, 1), (0, 3), (0, 4)}
    assert qa_issues[0, 1].record == "qa 1 of P0001_0000.png" and "answer" in qa_issues[0, 1].problem
    assert "unknown question type 'paint'" in qa_issues[0, 3].problem
    assert "presence" in qa_issues[0, 3].fix and "ab_position" in qa_issues[0, 3].fix
    assert report.quarantined_qa_annotations() == {"../P0002_0000.png"}
    assert report.quarantined_qa_indices() == {(0, 1), (0, 3), (0, 4), (1, 0)}
    assert report.quarantined_qa() == {("P0001_0000.png", 1), ("P0001_0000.png", 3), ("P0001_0000.png", 4),
                                       ("../P0002_0000.png", 0)}
    assert ("P0001_0000.png", 2) not in report.quarantined_qa()  # what prepare asks
    assert report.counts["qa"] == {"total": 8, "kept": 4, "quarantined": 4}


def test_normalize_qa_type():
    for t in QA_TYPES:
        assert normalize_qa_type(t) == t and normalize_qa_type(t.upper()) == t
    assert normalize_qa_type("absolute position") == "ab_position"
    assert normalize_qa_type("Relative-Position") == "re_position"
    assert normalize_qa_type(" area comparison ") == "area_comp"
    assert normalize_qa_type("road orientation") == "road_ori"
    assert normalize_qa_type("colour") == "color"
    assert normalize_qa_type("counting") == "quantity"
    assert normalize_qa_type("weather") is None and normalize_qa_type(None) is None and normalize_qa_type(3) is None


# ------------------------------------------------------------------ hard errors

def test_missing_dirs_are_hard_errors(tmp_path):
    report = validate(tmp_path / "nope", P)
    assert not report.ok and "does not exist" in report.hard_errors[0].problem
    (tmp_path / "raw").mkdir()
    report = validate(tmp_path / "raw", P)
    assert not report.ok and report.hard_errors[0].file == "images/"
    (tmp_path / "raw" / "images").mkdir()
    assert "no image files" in validate(tmp_path / "raw", P).hard_errors[0].problem


@pytest.mark.parametrize("content, expect", [
    ('{"annotations": [ {"filename": "a.png",  ', "not valid JSON"),
    ('[{"filename": "a.png"}]', "wrong top-level structure (got list)"),
    ('{"images": []}', "wrong top-level structure (got keys ['images'])"),
    (None, "file not found"),
])
def test_unreadable_annotation_files_are_hard_errors(tmp_path, content, expect):
    raw = make_raw(tmp_path / "raw", ids=("P0001",))
    path = tmp_path / "elsewhere" / "captions.json"
    if content is not None:
        path.parent.mkdir()
        path.write_text(content)
    report = validate(raw, P, captions=path)
    assert not report.ok
    (err,) = report.hard_errors
    assert err.file == "captions.json" and expect in err.problem  # named, without this machine's path
    assert "RSICap" in err.fix and "text_output" in err.fix
    assert report.counts["images"]["kept"] == 1  # the rest was still validated
    qa_report = validate(raw, P, qa=path)
    assert "RSIEval" in qa_report.hard_errors[0].fix


# ------------------------------------------------------------------ report file and summary

def test_report_json_and_summary(tmp_path):
    raw = make_raw(tmp_path / "raw", ids=("P0001", "P0002", "P0003"))
    truncate(raw / "images" / "P0003.png")
    (raw / "labelTxt" / "P0001.txt").write_text(label_text(GOOD_ROWS + ["10 10 60 10 60 40 10 40 car 0"]))
    write_json(raw / "caps.json", [caption("0", "P0001_0000.png", text="")])
    write_json(raw / "qa.json", [qa_entry("P0002_0001.png", [("Is there a car?", "Yes.", "car-type")])])
    report = validate(raw, P, captions=raw / "caps.json", qa=raw / "qa.json")
    path = report.to_json(tmp_path / "out" / "report.json")
    data = json.loads(path.read_text())
    q = data["quarantine"]
    assert q["images"] == ["P0003"] and q["label_lines"] == {"P0001": [6]}
    assert q["captions"] == ["P0001_0000.png"] and q["caption_indices"] == [0]
    assert q["qa"] == [["P0002_0001.png", 0]] and q["qa_indices"] == [[0, 0]] and q["qa_annotations"] == []
    assert {i["table"] for i in q["issues"]} == {"images", "labels", "captions", "qa"}
    assert data["counts"]["labels"]["quarantined"] == 4  # 1 bad row + the 3 rows of the truncated image
    assert data["ok"] is True and data["params"]["coord_tolerance"] == 8.0
    assert list(data) == sorted(data)
    assert any(e["table"] == "labels" and e["column"] == "category" and not e["success"]
               and e["unexpected_examples"] == ["car"] for e in data["expectations"])

    text = report.summary()
    for needle in ("images/P0003.png", "labelTxt/P0001.txt [line 6]", "caps.json [annotation 0 (P0001_0000.png)]",
                   "qa.json [qa 0 of P0002_0001.png]", "Fix: use one of the DOTA classes",
                   "Fix: re-download or re-export", "verdict: OK"):
        assert needle in text, needle

    loaded = ValidationReport.from_json(path)
    assert loaded.quarantined_images() == report.quarantined_images()
    assert loaded.quarantined_label_lines() == report.quarantined_label_lines()
    assert loaded.quarantined_captions() == {"P0001_0000.png"} and loaded.quarantined_qa() == {("P0002_0001.png", 0)}
    assert loaded.to_dict() == report.to_dict()


# ------------------------------------------------------------------ real RSICap / RSIEval text

def test_real_rsicap_and_rsieval_annotations_validate(tmp_path):
    caps = json.loads((SHARED / "rsicap" / "captions.json").read_text())["annotations"]
    evals = json.loads((SHARED / "rsieval" / "annotations.json").read_text())["annotations"]
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    blank = np.zeros((512, 512, 3), np.uint8)
    for a in caps + evals:
        write_png(raw / "images" / a["filename"], blank)
    shutil.copy(SHARED / "rsicap" / "captions.json", tmp_path / "captions.json")
    shutil.copy(SHARED / "rsieval" / "annotations.json", tmp_path / "annotations.json")
    report = validate(raw, P, captions=tmp_path / "captions.json", qa=tmp_path / "annotations.json")
    assert report.ok, report.summary()
    assert report.quarantine == [], report.summary()
    assert report.counts["captions"] == {"total": 17, "kept": 17, "quarantined": 0}
    assert report.counts["qa"] == {"total": 58, "kept": 58, "quarantined": 0}
    assert report.counts["images"]["kept"] == len(caps) + len(evals)
    assert {w.table for w in report.warnings} == {"images"}  # crops have no labelTxt: warned only


def test_gx_is_quiet_even_when_the_cli_logs_info(tmp_path):
    """A fresh process with INFO logging (as the CLI sets it): GX's import-time chatter stays out."""
    import subprocess
    import sys

    raw = make_raw(tmp_path / "raw", ids=("P0001",))
    code = ("import logging; logging.basicConfig(level=logging.INFO)\n"
            "from rsmoe.data.validation import validate; from rsmoe.params import ValidateParams\n"
            f"assert validate({str(raw)!r}, ValidateParams()).ok\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "great_expectations" not in run.stderr and "Calculating Metrics" not in run.stderr
