"""Loaders on the real RSICap / RSIEval files in ../shared/data and on format fixtures."""
import json

import pytest

from conftest import FIXTURES
from rsmoe.data.dota import LabelFormatError, read_label, write_label
from rsmoe.data.loaders import AnnotationError, load_karpathy, load_rsicap, load_rsieval
from rsmoe.data.records import DOTA_V10_CLASSES


def test_rsicap_real_file(shared_data):
    records = load_rsicap(shared_data / "rsicap" / "captions.json")
    assert len(records) == 17
    first = records[0]
    assert (first.image_id, first.filename) == ("0", "P0378_0001.png")
    assert first.instruction == "Take a look at this image and describe what you notice."
    assert first.caption.startswith("This is an aerial image showing a parking lot")
    assert all(r.filename.endswith(".png") and len(r.caption.split()) > 10 for r in records)
    assert len({r.filename for r in records}) == 17


def test_rsicap_with_image_dir_requires_images(shared_data, tmp_path):
    with pytest.raises(AnnotationError, match=r"annotation 0 \(P0378_0001.png\).*not found"):
        load_rsicap(shared_data / "rsicap" / "captions.json", image_dir=tmp_path)


def test_rsieval_real_file_normalises_types_and_keeps_answers(shared_data):
    records = load_rsieval(shared_data / "rsieval" / "annotations.json")
    assert len(records) == 6
    pairs = [p for r in records for p in r.qa]
    assert len(pairs) == 58
    types = {p.type for p in pairs}
    assert types <= {"presence", "quantity", "color", "ab_position", "re_position", "area_comp", "road_ori",
                     "image", "scene", "reasoning"}
    assert {"presence", "quantity", "ab_position", "reasoning"} <= types
    answers = {p.answer for p in pairs}
    assert {"Ten.", "more than 100", "31", "Yes.", "yes"} <= answers  # verbatim, not normalised
    assert records[1].filename == "P0003_0003.png" and records[1].caption.startswith("This is a high-resolution")


def test_rsieval_bad_records_are_named(tmp_path):
    f = tmp_path / "annotations.json"
    f.write_text(json.dumps({"annotations": [{"filename": "P0001_0000.png", "caption": "x",
                                              "qa_pairs": [{"question": "What?", "answer": "No.", "type": "weather"}]}]}))
    with pytest.raises(AnnotationError, match=r"qa 0 of P0001_0000.png: unknown question type 'weather'"):
        load_rsieval(f)
    f.write_text("{not json")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_rsieval(f)
    f.write_text(json.dumps({"images": []}))
    with pytest.raises(AnnotationError, match="no 'annotations' list"):
        load_rsieval(f)


def test_karpathy_fixture_all_and_one_split():
    path = FIXTURES / "karpathy_sample.json"
    images = load_karpathy(path)
    assert [i.filename for i in images] == ["1.tif", "2.tif", "3.tif"]
    assert [i.split for i in images] == ["train", "val", "test"]
    test = load_karpathy(path, split="test")
    assert len(test) == 1 and len(test[0].sentences) == 3
    assert test[0].sentences[1] == "boats are docked next to the pier"  # empty raw falls back to tokens


def test_karpathy_image_without_sentences_is_an_error(tmp_path):
    f = tmp_path / "dataset_rsicd.json"
    f.write_text(json.dumps({"images": [{"filename": "a.jpg", "imgid": 0, "split": "test", "sentences": []}]}))
    with pytest.raises(AnnotationError, match=r"image 0 \(a.jpg\): no sentences"):
        load_karpathy(f)


def test_dota_v10_with_null_gsd():
    label = read_label(FIXTURES / "dota" / "P0706_v10.txt", classes=DOTA_V10_CLASSES)
    assert label.imagesource == "GoogleEarth" and label.gsd is None
    assert [o.category for o in label.objects] == ["plane", "large-vehicle", "small-vehicle"]
    assert label.objects[0].polygon[0] == (2753.0, 2408.0) and label.objects[2].difficult == 1


def test_dota_v15_classes_and_header():
    label = read_label(FIXTURES / "dota" / "P2802_v15.txt")
    assert label.gsd == pytest.approx(0.117)
    assert "container-crane" in [o.category for o in label.objects]
    with pytest.raises(LabelFormatError, match="P2802_v15.txt:4: unknown category 'container-crane'"):
        read_label(FIXTURES / "dota" / "P2802_v15.txt", classes=DOTA_V10_CLASSES)


def test_dota_without_header_or_difficult_flag_and_round_trip(tmp_path):
    label = read_label(FIXTURES / "dota" / "P0001_noheader.txt")
    assert label.imagesource is None and [o.difficult for o in label.objects] == [0, 0]
    out = tmp_path / "P0001.txt"
    write_label(out, label)
    assert read_label(out) == label


@pytest.mark.parametrize("row, fragment", [
    ("1 2 3 4 5 6 plane 0", "expected 8 coordinates"),
    ("1 2 3 4 5 6 7 x plane 0", "non-numeric coordinate"),
    ("1 2 3 4 5 6 7 8 car 0", "unknown category 'car'"),
    ("1 2 3 4 5 6 7 8 plane 2", "difficult flag '2'"),
    ("1 2 3 4 5 6 7 nan plane 0", "NaN"),
])
def test_dota_bad_rows_name_file_line_and_fix(tmp_path, row, fragment):
    f = tmp_path / "P0009.txt"
    f.write_text(f"imagesource:GoogleEarth\ngsd:0.2\n0 0 5 0 5 5 0 5 ship 0\n{row}\n")
    with pytest.raises(LabelFormatError) as err:
        read_label(f)
    assert f"{f}:4:" in str(err.value) and fragment in str(err.value) and "Fix:" in str(err.value)


def test_prepared_records_without_a_split_are_named(tmp_path):
    from rsmoe.data.loaders import load_prepared

    (tmp_path / "captions.json").write_text(json.dumps({"annotations": [
        {"filename": "a.png", "split": "train"}, {"filename": "b.png"}]}))
    with pytest.raises(AnnotationError, match=r"annotation 1 \(b.png\).*split None.*re-run the prepare stage"):
        load_prepared(tmp_path, "captions.json")
    with pytest.raises(AnnotationError, match="qa.json.*not found.*qa_per_image"):
        load_prepared(tmp_path, "qa.json", missing_fix=", or set train.qa_per_image: 0")
