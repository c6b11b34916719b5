"""Baselines (random / scene-type / oracle captions, blind derangement, majority answers) and the
caption diagnostics (distinct, theme accuracy, repetition, lengths)."""
import json

import pytest

from rsmoe.data.describe import SCENE_TYPES, describe, scene_type
from rsmoe.data.records import DOTA_V15_CLASSES, CropObject
from rsmoe.evaluation import baselines
from rsmoe.evaluation.diagnostics import diagnose, repeats_sentence, scene_type_named, theme_correct, theme_of


def rec(name, scene, text, split="train", **counts):
    objects = [{"category": c.replace("_", "-")} for c, n in counts.items() for _ in range(n)]
    return {"filename": name, "scene_type": scene, "text_output": text, "split": split, "objects": objects,
            "land_cover": {"water": 0.1, "built": 0.9}}


TRAIN = [rec("a.png", "harbor", "A harbor with two ships.", ship=2),
         rec("b.png", "harbor", "A harbor with nine ships.", ship=9),
         rec("c.png", "airport", "An airport with a plane.", plane=1),
         rec("d.png", "parking lot", "A parking lot with cars.", small_vehicle=30)]
TEST = [rec("t1.png", "harbor", "ref", "test", ship=8), rec("t2.png", "airport", "ref", "test", plane=3),
        rec("t3.png", "farmland", "ref", "test")]


def test_random_caption_is_seeded_and_drawn_from_train():
    a, b = baselines.random_caption(TEST, TRAIN, 0), baselines.random_caption(TEST, TRAIN, 0)
    assert a == b and set(a) == {"t1.png", "t2.png", "t3.png"}
    assert set(a.values()) <= {t["text_output"] for t in TRAIN}
    draws = {tuple(baselines.random_caption(TEST, TRAIN, s).values()) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match="train-split"):
        baselines.random_caption(TEST, [], 0)


def test_scene_caption_keeps_the_scene_type_and_falls_back_to_any():
    for seed in range(5):
        out = baselines.scene_caption(TEST, TRAIN, seed)
        assert out["t1.png"] in {"A harbor with two ships.", "A harbor with nine ships."}
        assert out["t2.png"] == "An airport with a plane."
        assert out["t3.png"] in {t["text_output"] for t in TRAIN}  # no farmland in train


def test_retrieval_oracle_takes_the_closest_counts_of_the_scene_type():
    out = baselines.retrieval_oracle(TEST, TRAIN)
    assert out["t1.png"] == "A harbor with nine ships."  # |8-9| < |8-2|
    assert out["t2.png"] == "An airport with a plane."
    assert out["t3.png"] == "An airport with a plane."  # no farmland in train: the fewest objects of all
    assert baselines.counts(TEST[0])[DOTA_V15_CLASSES.index("ship")] == 8


@pytest.mark.parametrize("n", [2, 3, 7, 32, 33])
def test_derangement_moves_every_crop(n):
    perm = baselines.derangement(n)
    assert sorted(perm) == list(range(n)) and all(p != i for i, p in enumerate(perm))


def test_derangement_needs_two_images():
    with pytest.raises(ValueError, match="at least 2"):
        baselines.derangement(1)


def test_majority_answers_compare_normalised_forms():
    qa = [{"type": "presence", "answer": a} for a in ("Yes.", "yes", "No.", "Yes, there are.")]
    qa += [{"type": "quantity", "answer": a} for a in ("Two.", "2", "Three.", "two")]
    out = baselines.majority_answers(qa)
    assert out["presence"] in ("Yes.", "yes", "Yes, there are.") and out["quantity"] in ("Two.", "two", "2")


# ---------------------------------------------------------------------------------------------
# Diagnostics


@pytest.mark.parametrize("kind", SCENE_TYPES)
def test_each_scene_type_is_read_back_from_its_theme_sentence(kind):
    article = "" if kind == "farmland" else ("an " if kind[0] in "aeiou" else "a ")
    assert scene_type_named(f"This is a high-resolution aerial image showing {article}{kind}.") == kind
    assert scene_type_named(f"The image is a high-resolution aerial view of {article}{kind}.") == kind


@pytest.mark.parametrize("text, expected", [
    ("aerial image of a rural area", "rural area with a road"),  # not an urban area
    ("The image shows an urban area.", "urban area"),
    ("A river with a bridge and a road junction.", "river with a bridge"),  # the first one named
    ("A harbor. The image is mostly covered by water.", "harbor"),
    ("This is a satellite image of a small boat.", None),
    ("The sports ground has soccer fields.", "sports ground"),
    ("This airport has a long runway, not a sports complex.", "airport"),
])
def test_scene_type_named(text, expected):
    assert scene_type_named(text) == expected


def _objects(category, n):
    return [CropObject(category, ((0, 0), (9, 0), (9, 4), (0, 4)), (100.0 + 30 * i, 200.0), 36.0, 9.0, 4.0, 0.0,
                       1.0, False) for i in range(n)]


COVERS = [{"water": 0.7, "vegetation": 0.1, "bare_soil": 0.1, "built": 0.1},
          {"water": 0.0, "vegetation": 0.8, "bare_soil": 0.1, "built": 0.1},
          {"water": 0.0, "vegetation": 0.1, "bare_soil": 0.7, "built": 0.2},
          {"water": 0.0, "vegetation": 0.1, "bare_soil": 0.1, "built": 0.8},
          {"water": 0.0, "vegetation": 0.0, "bare_soil": 0.0, "built": 0.0}]


def test_reference_captions_name_their_own_scene_type():
    """Every caption `describe` writes has 100 % theme accuracy: the rule reads what it writes."""
    seen = set()
    for i, (cat, n) in enumerate([(c, n) for c in DOTA_V15_CLASSES for n in (1, 3, 12)] + [(None, 0)] * 3):
        for j, cover in enumerate(COVERS):
            objects = _objects(cat, n) if cat else []
            text = describe(objects, cover, 512, key=f"k{i}-{j}")["text"]
            kind = scene_type(objects, cover)
            assert theme_correct(text, kind), (kind, theme_of(text))
            seen.add(kind)
    assert seen == set(SCENE_TYPES)  # every scene type was exercised


def test_theme_accuracy_distinct_repetition_and_lengths():
    cands = {"a": "This is an airport. There are planes. There are planes.", "b": "This is an airport.",
             "c": "This is an airport.", "d": "There are two ships."}
    refs = {k: ["one two three four"] for k in cands}
    types = {"a": "airport", "b": "airport", "c": "harbor", "d": "harbor", "e": "harbor"}
    d = diagnose(cands, refs, types)
    assert d["distinct"] == 75.0  # b == c
    assert d["theme_accuracy"] == 50.0  # a, b right; c wrong type; d has no theme; e not captioned
    assert d["repetition"] == 25.0 and repeats_sentence("A ship. a  ship!") and not repeats_sentence("A. B.")
    assert d["words"] == pytest.approx((10 + 4 + 4 + 4) / 4) and d["reference_words"] == 4.0
    assert diagnose(cands, refs)["theme_accuracy"] is None  # no scene types known


def test_margins_skip_a_missing_blind_control():
    """One evaluated image leaves no other crop to borrow features from: evaluate leaves the
    blind row out, and the margins are taken over the baselines that were scored."""
    from rsmoe.evaluation.captions import METRICS
    from rsmoe.evaluation.scoring import margins

    base = {"random_caption": {m: 10.0 for m in METRICS}, "scene_caption": {m: 20.0 for m in METRICS},
            "retrieval_oracle": {m: 90.0 for m in METRICS}}
    out = margins({"stage2": {m: 25.0 for m in METRICS}}, base)
    assert {d["best_baseline"] for d in out["stage2"].values()} == {"scene_caption"}
    assert all(d["margin"] == 5.0 and d["ratio"] == 1.25 for d in out["stage2"].values())


def _metrics_file(tmp_path):
    from rsmoe.evaluation.captions import METRICS
    from rsmoe.evaluation.scoring import margins

    model = {**{m: 12.0 for m in METRICS}, "distinct": 3.1, "theme_accuracy": 0.0, "CIDEr-nolen": 30.0,
             "length_gap": 12.5}
    base = {"random_caption": {**{m: 20.0 for m in METRICS}, "distinct": 100.0, "theme_accuracy": 9.0},
            "scene_caption": {**{m: 60.0 for m in METRICS}, "distinct": 90.0, "theme_accuracy": 100.0},
            "retrieval_oracle": {**{m: 130.0 for m in METRICS}, "distinct": 80.0, "theme_accuracy": 100.0},
            "blind": {**{m: 11.0 for m in METRICS}, "distinct": 3.1, "theme_accuracy": 0.0}}
    vqa = {"per_type": {"presence": {"accuracy": 40.0, "n": 10}, "scene": {"accuracy": 0.0, "n": 4}},
           "average": 20.0, "overall": 28.57, "n": 14,
           "baseline": {"per_type": {"presence": {"accuracy": 60.0, "n": 10}, "scene": {"accuracy": 25.0, "n": 4}},
                        "average": 42.5, "overall": 50.0, "n": 14}}
    m = {"split": "test", "images": 32, "experts": ["theme", "objects", "relations"], "strategy": "two-stage",
         "captions": model, "baselines": base, "margins": margins({"stage2": model}, base), "vqa": vqa,
         "grounding": {"count_accuracy": 8.0, "hallucination_rate": 77.0, "miss_rate": 50.0}}
    path = tmp_path / "evaluate.json"
    path.write_text(json.dumps(m))
    return path


def test_scores_markdown_puts_every_score_beside_its_baselines(tmp_path, capsys):
    """The tables of the Prefect artifact, `rsmoe scores` and the README: the model row, its
    margin over the best competitor (scene_caption here: 12 - 60 = -48), every baseline row and
    VQA per type beside the majority answer."""
    from rsmoe.cli import main

    assert main(["scores", str(_metrics_file(tmp_path))]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "| stage2 | 12.00 | 12.00 | 12.00 | 12.00 | 12.00 | 3.1 | 0.0 | 30.0 | 12.5 |" in lines
    assert "| *stage2 − best baseline* | -48.00 | -48.00 | -48.00 | -48.00 | -48.00 | | | | |" in lines
    # a baseline scored before the length diagnostics existed shows "-"
    assert "| *baseline: blind* | 11.00 | 11.00 | 11.00 | 11.00 | 11.00 | 3.1 | 0.0 | - | - |" in lines
    for name in ("random_caption", "scene_caption", "retrieval_oracle", "blind"):
        assert any(line.startswith(f"| *baseline: {name}* |") for line in lines)
    assert "| presence | 40.0 | 60.0 | 10 |" in lines and "| **average over types** | 20.0 | 42.5 | |" in lines
    assert "hallucination rate 77.0 %" in text


def test_scores_says_grounding_is_not_available_without_object_annotations(tmp_path, capsys):
    """A folder or Karpathy set has no object annotations: grounding aggregates 0 images and its
    rates are None, which must not print as "0.0 %" (a perfect hallucination rate)."""
    from rsmoe.cli import main
    from rsmoe.evaluation.grounding import aggregate

    path = _metrics_file(tmp_path)
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "grounding": aggregate([])}))
    assert main(["scores", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Grounding: not available" in text and "0.0 %" not in text
    # annotated images whose captions count nothing: the count rate has no denominator
    path.write_text(json.dumps({**m, "grounding": {"images": 3, "count_accuracy": None,
                                                   "hallucination_rate": 10.0, "miss_rate": 50.0}}))
    assert main(["scores", str(path)]) == 0
    assert "exact-count accuracy n/a, hallucination rate 10.0 %, miss rate 50.0 %." in capsys.readouterr().out


def test_scores_command_names_a_missing_metrics_file(tmp_path, capsys):
    from rsmoe.cli import main

    assert main(["scores", str(tmp_path / "evaluate.json")]) == 2
    err = capsys.readouterr().err
    assert "evaluate.json: not found" in err and "rsmoe stage evaluate" in err
