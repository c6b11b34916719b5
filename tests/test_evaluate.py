"""The evaluate stage end to end on the tiny preset: train (a few steps), then score the test
split of real RSIEval captions and questions; the metrics file, per-sample JSON lines and the
report agree with each other and with direct recomputation."""
import json
from pathlib import Path

import pytest

from rsmoe.evaluation.baselines import RANDOM_SEEDS, random_caption
from rsmoe.evaluation.captions import LENGTH_DIAGNOSTICS, METRICS, score
from rsmoe.evaluation.diagnostics import diagnose
from rsmoe.evaluation.scoring import EMPTY
from rsmoe.evaluation.vqa import QTYPE_ASPECT, expert_for, is_correct
from rsmoe.stages import load
from train_fixtures import RSIEVAL, add_test_split, make_prepared, tiny_params


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    prepared = add_test_split(make_prepared(root, n=8))
    # a Karpathy-format set (as UCM-Captions / RSICD ship) for the zero-shot evaluation
    karpathy = {"images": [{"filename": f"T000{i}_0000.png", "imgid": i, "split": split,
                            "sentences": [{"raw": a["caption"]}, {"tokens": ["many", "cars"]}]}
                           for i, (a, split) in enumerate(zip(json.loads(RSIEVAL.read_text())["annotations"],
                                                              ["test", "test", "train"]))]}
    (root / "dataset_ucm.json").write_text(json.dumps(karpathy))
    params = tiny_params(root, stage1={"max_steps": 2}, stage2={"max_steps": 2},
                         evaluate={"batch_size": 4, "max_new_tokens": 6, "vqa_max_new_tokens": 4, "samples": 3,
                                   "zero_shot": {"ucm": {"annotations": str(root / "dataset_ucm.json"),
                                                         "images": str(prepared / "images")}}})
    for stage in ("stage1", "propagate", "stage2"):
        load(stage).run(params)
    result = load("evaluate").run(params)
    return root, params, result


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_metrics_file_has_every_section(evaluated):
    root, _, result = evaluated
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert metrics["images"] == 6 and metrics["experts"] == ["theme", "objects", "relations"]
    diagnostics = {"distinct", "theme_accuracy", "repetition", "words", "reference_words"}
    rows = {"captions": {*METRICS, *LENGTH_DIAGNOSTICS, "empty_captions", *diagnostics, "unfinished_segments"},
            "stage1_captions": {*METRICS, *LENGTH_DIAGNOSTICS, "empty_captions", *diagnostics}}
    for key, keys in rows.items():
        assert set(metrics[key]) == keys, key
    # segments cut by the token budget (6 here), recounted from the written predictions
    predicted = [json.loads(line) for line in (root / "reports" / "predictions.jsonl").read_text().splitlines()]
    segs = [s for p in predicted for s in p["segments"].values() if s]
    cut = sum(not s.rstrip().endswith((".", "!", "?")) for s in segs)
    assert metrics["captions"]["unfinished_segments"] == pytest.approx(100 * cut / len(segs), abs=0.01)
    assert set(metrics["baselines"]) == {"random_caption", "scene_caption", "retrieval_oracle", "blind"}
    for name, row in metrics["baselines"].items():
        assert {*METRICS, *diagnostics} <= set(row), name
    assert metrics["baselines"]["random_caption"]["seeds"] == len(RANDOM_SEEDS)
    assert metrics["theme_accuracy"] == metrics["captions"]["theme_accuracy"]
    for model_row in ("stage2", "stage1"):
        for m in METRICS:
            d = metrics["margins"][model_row][m]
            row = metrics["captions" if model_row == "stage2" else "stage1_captions"]
            assert d["best_baseline"] in ("random_caption", "scene_caption", "blind")
            assert d["margin"] == pytest.approx(row[m] - max(metrics["baselines"][b][m]
                                                            for b in ("random_caption", "scene_caption", "blind")),
                                                        abs=1e-3)
    assert set(metrics["vqa"]["baseline"]["per_type"]) == set(metrics["vqa"]["per_type"])
    assert set(metrics["aspects"]) <= {"theme", "objects", "relations"}
    assert metrics["vqa"]["n"] == sum(len(a["qa_pairs"]) for a in json.loads(RSIEVAL.read_text())["annotations"])
    assert set(metrics["vqa"]["per_type"]) <= set(QTYPE_ASPECT)
    assert metrics["grounding"]["images"] == 2  # only the two crops with DOTA objects
    assert "SPICE" in metrics["spice"]
    assert metrics["zero_shot"]["ucm"]["images"] == 2 and set(METRICS) <= set(metrics["zero_shot"]["ucm"])
    assert result["captions"] == metrics["captions"]


def test_scores_recompute_from_the_written_predictions(evaluated):
    root, _, _ = evaluated
    rows = _jsonl(root / "reports" / "predictions.jsonl")
    assert len(rows) == 6
    for row in rows:  # the caption is the experts' segments joined in order
        assert row["caption"] == " ".join(s for s in row["segments"].values() if s)
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    again = score({r["filename"]: r["caption"] or EMPTY for r in rows}, {r["filename"]: [r["reference"]] for r in rows})
    assert again == pytest.approx({k: metrics["captions"][k] for k in (*METRICS, *LENGTH_DIAGNOSTICS)})
    assert metrics["captions"]["empty_captions"] == sum(not r["caption"] for r in rows)


def test_each_question_went_to_the_expert_of_its_type(evaluated):
    root, _, _ = evaluated
    rows = _jsonl(root / "reports" / "vqa.jsonl")
    assert rows and all(r["expert"] == expert_for(r["type"], 3) for r in rows)
    assert all(r["correct"] == is_correct(r["prediction"], r["answer"], r["type"], question=r["question"]) for r in rows)
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert metrics["vqa"]["overall"] == pytest.approx(100 * sum(r["correct"] for r in rows) / len(rows))


def test_report_is_written_and_self_contained(evaluated):
    root, _, result = evaluated
    html = (root / "reports" / "report.html").read_text()
    assert result["report"].endswith("report.html")
    assert "BLEU-4" in html and "data:image/png;base64," in html
    for label in ("random train caption", "scene type", "blind", "oracle", "best baseline", "majority baseline"):
        assert label in html, label
    assert "https://" not in html and "http://" not in html
    assert str(root) not in html  # no machine paths


def test_baselines_recompute_from_the_prepared_split(evaluated):
    """The random-caption row is the mean over seeds of the same scorer on the same split."""
    root, params, _ = evaluated
    records = json.loads((params.paths.prepared / "captions.json").read_text())["annotations"]
    test = [r for r in records if r["split"] == "test"]
    train = [r for r in records if r["split"] == "train"]
    refs = {r["filename"]: [r["text_output"]] for r in test}
    rows = [score(random_caption(test, train, s), refs) for s in RANDOM_SEEDS]
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    for m in METRICS:
        assert metrics["baselines"]["random_caption"][m] == pytest.approx(sum(r[m] for r in rows) / len(rows))
    predictions = {r["filename"]: r["caption"] for r in _jsonl(root / "reports" / "predictions.jsonl")}
    assert metrics["captions"]["distinct"] == diagnose(predictions, refs)["distinct"]


def test_vqa_majority_baseline_is_scored_like_the_model(evaluated):
    root, _, _ = evaluated
    rows = _jsonl(root / "reports" / "vqa.jsonl")
    base = json.loads((root / "metrics" / "evaluate.json").read_text())["vqa"]["baseline"]
    for qtype, r in base["per_type"].items():
        of_type = [x for x in rows if x["type"] == qtype]
        answer = base["answers"].get(qtype, "")
        expected = 100 * sum(is_correct(answer, x["answer"], qtype, question=x["question"]) for x in of_type) / len(of_type)
        assert r["accuracy"] == pytest.approx(expected), qtype


def test_model_folders_carry_model_cards(evaluated):
    """stage1 / stage2 cards say what made the model; the ONNX folder's card (export runs after
    evaluate) adds the scores beside the baselines."""
    import yaml
    from rsmoe.evaluation.card import data_version
    root, params, result = evaluated
    assert data_version(Path("data") / "raw").startswith("`data.dvc` md5 ")  # the repository's corpus
    for name in ("stage1", "stage2"):
        card = (params.paths.models / name / "README.md").read_text()
        front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
        assert yaml.safe_load(front)["base_model_preset"] == "tiny"
        assert f"# rsmoe `{name}`: RS-MoE, preset `tiny`, 3 expert(s), two-stage" in body
        shown = yaml.safe_load(body.split("```yaml\n")[1].split("```")[0])
        assert shown["train"]["lr"] == params.train.lr and shown["stage1"]["max_steps"] == 2
        assert ("stage2" in shown) == (name == "stage2")  # only the settings its stage reads
        steps = json.loads((params.paths.metrics / f"{name}.json").read_text())["steps"]
        assert f"- steps: {steps}" in card and "- precision: no" in card
        assert f"{params.paths.raw} is not tracked by DVC" in card  # the test's raw folder has no .dvc
        assert "`evaluate` runs after this folder is written" in card and "## Limits" in card
    load("export").run(params)
    card = (params.paths.onnx / "README.md").read_text()
    scores = json.loads((params.paths.metrics / "evaluate.json").read_text())
    assert f"| stage2 | {scores['captions']['BLEU-1']:.2f} |" in card
    assert "*baseline: random_caption*" in card and "| **average over types** |" in card
    assert "`evaluate` runs after" not in card
