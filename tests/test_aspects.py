"""The aspect splitter on the hand-labelled real sentences, the whole real corpora and edge cases.

Run with `pytest -s` to see the agreement, the confusion pairs and the coverage statistics.
"""
import json
from collections import Counter

import pytest
from conftest import FIXTURES

from rsmoe.data.aspects import (
    EXPERT_GROUPS,
    classify_sentence,
    coverage,
    group_segments,
    label_sentences,
    main,
    split_caption,
    split_sentences,
)
from rsmoe.data.loaders import load_rsicap, load_rsieval
from rsmoe.data.records import ASPECTS

SAMPLE = json.loads((FIXTURES / "aspect_sentences.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def real_captions(shared_data):
    """Every human caption in the two real files: (file, filename, text)."""
    caps = [("rsicap/captions.json", r.filename, r.caption)
            for r in load_rsicap(shared_data / "rsicap" / "captions.json")]
    caps += [("rsieval/annotations.json", r.filename, r.caption)
             for r in load_rsieval(shared_data / "rsieval" / "annotations.json") if r.caption]
    return caps


def test_sample_is_real_verbatim_and_labelled(real_captions):
    rows = SAMPLE["sentences"]
    assert len(rows) >= 60 and {"source", "definitions"} <= set(SAMPLE)
    texts = {(f, n): t for f, n, t in real_captions}
    for row in rows:
        assert row["aspect"] in ASPECTS, row
        assert row["text"] in texts[row["file"], row["filename"]], row  # copied verbatim
    assert {r["file"] for r in rows} == {"rsicap/captions.json", "rsieval/annotations.json"}
    assert set(Counter(r["aspect"] for r in rows)) == set(ASPECTS)


def test_agreement_with_hand_labels_is_at_least_90_percent():
    rows = SAMPLE["sentences"]
    predicted = [classify_sentence(r["text"]) for r in rows]
    agree = sum(p == r["aspect"] for p, r in zip(predicted, rows)) / len(rows)
    confusion = Counter((r["aspect"], p) for p, r in zip(predicted, rows) if p != r["aspect"])
    print(f"\naspect agreement with hand labels: {agree:.1%} of {len(rows)} sentences")
    for (gold, pred), n in confusion.most_common():
        print(f"  hand {gold:9s} -> rules {pred:9s} x{n}")
    assert agree >= 0.90, confusion


def test_coverage_of_the_real_corpora(real_captions):
    for file in ("rsicap/captions.json", "rsieval/annotations.json"):
        stats = coverage(t for f, _, t in real_captions if f == file)
        print(f"\ncoverage of {file}: {json.dumps(stats)}")
        assert stats["sentences"] == sum(stats["sentences_per_aspect"].values())
        assert stats["share_non_empty"]["theme"] >= 0.9  # every real caption opens with the image type
        assert all(stats["sentences_per_aspect"][a] > 0 for a in ASPECTS)


def test_every_real_sentence_lands_in_exactly_one_segment_in_order(real_captions):
    for _, name, text in real_captions:
        sentences = split_sentences(text)
        assert " ".join(sentences) == " ".join(text.split()), name  # nothing lost, nothing added
        segments = split_caption(text)
        assert list(segments) == list(ASPECTS)
        parts = {a: split_sentences(s) for a, s in segments.items()}
        assert Counter(s for p in parts.values() for s in p) == Counter(sentences), name
        labels = label_sentences(text)
        for aspect, part in parts.items():
            assert part == [s for s, a in labels if a == aspect], name  # caption order kept


@pytest.mark.parametrize("text, expected", [
    ("The GSD is 0.5 m. There are approx. 20 cars, e.g. sedans and vans.",
     ["The GSD is 0.5 m.", "There are approx. 20 cars, e.g. sedans and vans."]),
    ("There are seven cars.The road is wide.", ["There are seven cars.", "The road is wide."]),
    ("A U.S. highway runs here.  It is   wide.", ["A U.S. highway runs here.", "It is wide."]),
    ("The answer is no. No. 5 is a white plane", ["The answer is no.", "No. 5 is a white plane"]),
    ("Is it a harbor? Yes! A ship is moored... Then P0001.png ends", ["Is it a harbor?", "Yes!", "A ship is moored...",
                                                                    "Then P0001.png ends"]),
    ("It is 2.5 km long", ["It is 2.5 km long"]),
])
def test_sentence_splitting_is_robust(text, expected):
    assert split_sentences(text) == expected
    assert "".join("".join(split_sentences(text)).split()) == "".join(text.split())  # only whitespace changes


def test_edge_cases():
    assert split_caption("") == {a: "" for a in ASPECTS}
    assert split_caption("   \n ") == {a: "" for a in ASPECTS}
    one = split_caption("there are three white planes")  # one sentence, no final period
    assert one == {"theme": "", "objects": "there are three white planes", "positions": "", "relations": ""}
    assert split_caption("This is an aerial image")["theme"] == "This is an aerial image"


@pytest.mark.parametrize("sentence, aspect", [
    ("This is a panchromatic satellite image.", "theme"),
    ("Overall, the harbor is busy.", "theme"),
    ("In the top left corner of the image, a ship is moored next to the pier.", "positions"),  # frame beats relation
    ("The ships are moored along the harbor.", "relations"),
    ("The cars are parked in two rows.", "relations"),
    ("There are around 20 cars.", "objects"),  # "around" a number is not a relation
    ("The building is under construction.", "objects"),
    ("Most of the trucks are white.", "objects"),
])
def test_priority_and_cues(sentence, aspect):
    assert classify_sentence(sentence) == aspect


def test_reduced_aspect_list_keeps_every_sentence():
    text = ("This is an aerial image. There are two planes. A hangar is in the top left of the image. "
            "The planes are next to the hangar.")
    three = split_caption(text, ("theme", "objects", "relations"))
    assert three == {"theme": "This is an aerial image.", "objects": "There are two planes.",
                     "relations": "A hangar is in the top left of the image. The planes are next to the hangar."}
    assert split_caption(text, ("theme",))["theme"] == " ".join(text.split())
    with pytest.raises(ValueError, match="unknown aspect"):
        split_caption(text, ("theme", "colour"))


def test_group_segments_for_one_to_four_experts():
    seg = {"theme": "T.", "objects": "O.", "positions": "", "relations": "R."}
    assert group_segments(seg, 1) == {"caption": "T. O. R."}
    assert group_segments(seg, 2) == {"theme": "T.", "details": "O. R."}
    assert group_segments(seg, 3) == {"theme": "T.", "objects": "O.", "relations": "R."}
    assert group_segments(seg, 4) == seg
    for n, groups in EXPERT_GROUPS.items():
        covered = [a for g in groups.values() for a in g]
        assert len(groups) == n and sorted(covered) == sorted(ASPECTS), n  # each aspect in exactly one expert
    with pytest.raises(ValueError, match="n_experts"):
        group_segments(seg, 5)


def test_cli_prints_coverage(shared_data, capsys):
    assert main([str(shared_data / "rsicap" / "captions.json")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["captions"] == 17 and set(stats["sentences_per_aspect"]) == set(ASPECTS)
    assert main([str(shared_data / "rsieval" / "annotations.json")]) == 0
    assert json.loads(capsys.readouterr().out)["captions"] == 6
    assert main([str(shared_data / "missing.json")]) == 2
    assert "missing.json: file: not found" in capsys.readouterr().err
