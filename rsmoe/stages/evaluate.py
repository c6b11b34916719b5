"""Stage `evaluate`: score the trained model on the held-out split.

- captions of `evaluate.split` by the Stage II model (and the Stage I model, as a second row)
  against the reference captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, x100);
- per aspect: each expert's segment against the reference's segment of that expert's aspects;
- VQA: the split's RSIEval-format questions, each answered by the expert of its type;
- grounding: stated counts, hallucinated and missed classes against the DOTA annotations;
- zero-shot: Karpathy-format caption sets named in `evaluate.zero_shot`;

Writes `metrics/evaluate.json` (DVC metrics), `reports/predictions.jsonl` and `reports/vqa.jsonl`
(per sample) and `reports/report.html`.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

from rsmoe.data.aspects import group_segments, split_caption
from rsmoe.evaluation import captions, grounding, vqa
from rsmoe.evaluation.predict import answer_questions, caption_images, karpathy_references, load_questions
from rsmoe.params import Params
from rsmoe.stages import StageError
from rsmoe.training.features import FrozenFeatures
from rsmoe.training.stage import load_model

log = logging.getLogger("rsmoe")


def _test_records(params: Params) -> list[dict]:
    path = params.paths.prepared / "captions.json"
    if not path.is_file():
        raise StageError(f"{path} not found; run `rsmoe stage prepare` first")
    records = [a for a in json.loads(path.read_text(encoding="utf-8"))["annotations"]
               if a.get("split") == params.evaluate.split]
    if not records:
        raise StageError(f"{path}: no captions in split {params.evaluate.split!r}; check prepare.splits")
    return records


# What an empty generated caption is scored as: a word no reference uses, so the image scores ~0
# instead of being dropped (dropping would flatter the model); `empty_captions` counts them.
EMPTY = "nocaption"


def _score(cands: dict[str, str], refs: dict[str, list[str]], source: str) -> dict[str, float]:
    empty = [k for k, v in cands.items() if not v.strip()]
    if empty:
        log.warning("%s: %d empty captions are scored as %r", source, len(empty), EMPTY)
    scored = captions.score({k: v if v.strip() else EMPTY for k, v in cands.items()}, refs, source=source)
    return {**scored, "empty_captions": len(empty)}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _report(params: Params, metrics: dict, scores: dict, predictions: list[dict], out: Path) -> Path:
    """reports/report.html: the tables, the loss curves of both stages and `evaluate.samples`
    test images (the first ones, in split order: the same images every run)."""
    from rsmoe.evaluation import report  # matplotlib is imported only when a report is written

    losses = {name: report.read_steps(params.paths.metrics / f"{name}_steps.csv") for name in ("stage1", "stage2")
              if (params.paths.metrics / f"{name}_steps.csv").is_file()}
    samples = [report.sample_from_prediction(row, params.paths.prepared / "images" / row["filename"])
               for row in predictions[:params.evaluate.samples]]
    data = report.ReportData(
        preset=params.model.preset, experts=list(metrics["experts"]), strategy=params.train.strategy,
        date=datetime.date.today().isoformat(), split=params.evaluate.split, images=metrics["images"],
        scores={k: {m: v for m, v in s.items() if m in captions.METRICS} for k, s in scores.items()},
        aspects=metrics["aspects"], vqa=metrics["vqa"], grounding=metrics["grounding"], losses=losses,
        samples=samples, notes=[captions.SPICE_NOTE])
    return report.write_report(out, data)


def run(params: Params) -> dict:
    ev = params.evaluate
    src = params.paths.models / "stage2"
    if not (src / "config.json").is_file():
        raise StageError(f"{src} not found; run `rsmoe stage stage2` first")
    model = load_model(params, src)
    n = len(model.experts)
    features = FrozenFeatures(model, params.paths.features)
    records = _test_records(params)
    images = [params.paths.prepared / "images" / r["filename"] for r in records]
    refs = {r["filename"]: [r["text_output"]] for r in records}

    generated = caption_images(model, images, features, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                               desc="captions (stage2)")
    cands = {r["filename"]: c.text for r, c in zip(records, generated)}
    scores = {"stage2": _score(cands, refs, f"{ev.split} split, stage2")}
    ref_segments = {r["filename"]: group_segments(r.get("segments") or split_caption(r["text_output"]), n)
                    for r in records}
    per_aspect = captions.score_aspects({r["filename"]: c.segments for r, c in zip(records, generated)}, ref_segments)

    stage1_texts: dict[str, str] = {}
    if ev.stage1 and params.train.strategy == "two-stage":
        first = load_model(params, params.paths.models / "stage1")
        out = caption_images(first, images, FrozenFeatures(first, params.paths.features), batch_size=ev.batch_size,
                             stage1=True, max_new_tokens=ev.max_new_tokens, desc="captions (stage1)")
        stage1_texts = {r["filename"]: c.text for r, c in zip(records, out)}
        scores["stage1"] = _score(stage1_texts, refs, f"{ev.split} split, stage1")
        del first

    # grounding needs annotations: crops from DOTA scenes have `objects`, human-only records do not
    groundings = [grounding.ground(c.text, r["objects"]) if "objects" in r else None
                  for r, c in zip(records, generated)]
    questions = load_questions(params.paths.prepared, ev.split)
    answers = answer_questions(model, questions, features, max_new_tokens=ev.vqa_max_new_tokens) if questions else []
    for row in answers:
        row["correct"] = vqa.is_correct(row["prediction"], row["answer"], row["type"])

    zero_shot = {}
    for name, spec in ev.zero_shot.items():
        zrefs = karpathy_references(spec.annotations, spec.images, spec.split)
        zpaths = list(zrefs)
        zcaps = caption_images(model, zpaths, features, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                               desc=f"captions ({name})")
        zero_shot[name] = {**_score({str(p): c.text for p, c in zip(zpaths, zcaps)},
                                    {str(p): r for p, r in zrefs.items()}, str(spec.annotations)),
                           "images": len(zpaths)}

    metrics = {
        "split": ev.split, "images": len(records), "experts": list(model.experts), "strategy": params.train.strategy,
        "captions": scores["stage2"], **({"stage1_captions": scores["stage1"]} if "stage1" in scores else {}),
        "aspects": per_aspect,
        "vqa": vqa.accuracy(answers) if answers else {},
        "grounding": grounding.aggregate([g for g in groundings if g is not None]),
        **({"zero_shot": zero_shot} if zero_shot else {}),
        "spice": captions.SPICE_NOTE,
    }
    out = Path(params.paths.metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(metrics, indent=2) + "\n")

    predictions = [{"filename": r["filename"], "reference": r["text_output"], "caption": c.text,
                    "segments": c.segments, **({"stage1": stage1_texts[r["filename"]]} if stage1_texts else {}),
                    "grounding": g.to_dict() if g else None} for r, c, g in zip(records, generated, groundings)]
    reports = Path(params.paths.reports)
    _write_jsonl(reports / "predictions.jsonl", predictions)
    _write_jsonl(reports / "vqa.jsonl", answers)
    html = _report(params, metrics, scores, predictions, reports / "report.html")
    log.info("report: %s", html)
    return {"captions": scores["stage2"], "vqa_average": metrics["vqa"].get("average"),
            "count_accuracy": metrics["grounding"].get("count_accuracy"), "report": str(html)}
