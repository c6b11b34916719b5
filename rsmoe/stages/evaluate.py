"""Stage `evaluate`: score the trained model on the held-out split.

- captions of `evaluate.split` by the Stage II model (and the Stage I model, as a second row)
  against the reference captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, x100);
- per aspect: each expert's segment against the reference's segment of that expert's aspects;
- VQA: the split's RSIEval-format questions, each answered by the expert of its type;
- grounding: stated counts, hallucinated and missed classes against the DOTA annotations;
- zero-shot: Karpathy-format caption sets named in `evaluate.zero_shot`;
- baselines (`rsmoe.evaluation.baselines`), scored by the same code on the same split: a random
  train caption (mean of 3 seeds), a random train caption of the crop's scene type, the
  retrieval oracle, the blind model (each crop captioned from another crop's image features) and
  the majority answer per VQA type; every caption row also gets the diagnostics of
  `rsmoe.evaluation.diagnostics` (distinct captions, theme accuracy, repetition, lengths), and
  each model row its margin over the best non-oracle baseline;

Writes `metrics/evaluate.json` (DVC metrics), `reports/predictions.jsonl` and `reports/vqa.jsonl`
(per sample) and `reports/report.html`.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

from rsmoe.data.aspects import group_segments, split_caption
from rsmoe.data.loaders import load_prepared, references
from rsmoe.evaluation import baselines, captions, grounding, scoring, vqa
from rsmoe.evaluation.predict import answer_questions, caption_images, karpathy_references, load_questions
from rsmoe.params import Params
from rsmoe.stages import StageError, require
from rsmoe.training.features import FrozenFeatures
from rsmoe.training.concepts import concept_accuracy, predict_concepts
from rsmoe.training.stage import load_model

log = logging.getLogger("rsmoe")


def _split_records(params: Params, split: str) -> list[dict]:
    path = require(params.paths.prepared / "captions.json", "prepare")
    records = [a for a in load_prepared(params.paths.prepared, "captions.json") if a["split"] == split]
    if not records:
        raise StageError(f"{path}: no captions in split {split!r}; check prepare.splits")
    return records


def _caption_baselines(model, records: list[dict], train: list[dict], images: list[Path], features,
                       refs: dict[str, list[str]], scene_types: dict, ev) -> dict[str, dict]:
    source = f"{ev.split} split"
    out = scoring.text_baselines(records, train, refs, scene_types, source)
    if len(images) < 2:  # no other crop to borrow features from: the row is left out, not faked
        log.warning("%s has %d image: the blind control needs at least 2 and is left out", source, len(images))
        return out
    perm = baselines.derangement(len(images))
    blind = caption_images(model, [images[j] for j in perm], features, batch_size=ev.batch_size,
                           max_new_tokens=ev.max_new_tokens, desc="captions (blind)")
    out["blind"] = scoring.score_row({r["filename"]: c.text for r, c in zip(records, blind)}, refs,
                                     f"{source}, blind model", scene_types)
    return out


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
        scores=scores, baselines=metrics["baselines"], margins=metrics["margins"],
        aspects=metrics["aspects"], vqa=metrics["vqa"], grounding=metrics["grounding"], losses=losses,
        samples=samples, notes=[captions.SPICE_NOTE])
    return report.write_report(out, data)


def _unfinished(generated, limit: int) -> float:
    """Percent of generated segments that stop mid-sentence (cut by the token budget), warned about."""
    segs = [s for c in generated for s in c.segments.values() if s]
    cut = sum(not s.rstrip().endswith((".", "!", "?")) for s in segs)
    if cut:
        log.warning("%d of %d generated caption segments end mid-sentence: the token budget (%d per caption aspect) "
                    "may cut them; raise evaluate.max_new_tokens in params.yaml", cut, len(segs), limit)
    return round(100.0 * cut / max(len(segs), 1), 2)


def run(params: Params) -> dict:
    ev = params.evaluate
    src = params.paths.models / "stage2"
    require(src / "config.json", "stage2")
    model = load_model(params, src)
    n = len(model.experts)
    features = FrozenFeatures(model, params.paths.features)
    records = _split_records(params, ev.split)
    train = _split_records(params, "train")
    images = [params.paths.prepared / "images" / r["filename"] for r in records]
    refs = {r["filename"]: references(r) for r in records}  # every reference, as the papers score
    scene_types = {r["filename"]: r.get("scene_type") for r in records}

    generated = caption_images(model, images, features, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                               desc="captions (stage2)")
    cands = {r["filename"]: c.text for r, c in zip(records, generated)}
    scores = {"stage2": scoring.score_row(cands, refs, f"{ev.split} split, stage2", scene_types)}
    scores["stage2"]["unfinished_segments"] = _unfinished(generated, ev.max_new_tokens or model.preset.max_new_tokens)
    ref_segments = {r["filename"]: group_segments(r.get("segments") or split_caption(r["text_output"]), n)
                    for r in records}
    per_aspect = captions.score_aspects({r["filename"]: c.segments for r, c in zip(records, generated)}, ref_segments)
    base = _caption_baselines(model, records, train, images, features, refs, scene_types, ev)
    # what the concept tokens told the LLM, beside what its captions say (theme_accuracy, grounding)
    told = predict_concepts(model, features, images)
    concept_scores = concept_accuracy(told, records)

    stage1_texts: dict[str, str] = {}
    if ev.stage1 and params.train.strategy == "two-stage":
        first = load_model(params, params.paths.models / "stage1")
        out = caption_images(first, images, FrozenFeatures(first, params.paths.features), batch_size=ev.batch_size,
                             stage1=True, max_new_tokens=ev.max_new_tokens, desc="captions (stage1)")
        stage1_texts = {r["filename"]: c.text for r, c in zip(records, out)}
        scores["stage1"] = scoring.score_row(stage1_texts, refs, f"{ev.split} split, stage1", scene_types)
        del first

    # grounding needs annotations: crops from DOTA scenes have `objects`, human-only records do not
    groundings = [grounding.ground(c.text, r["objects"]) if "objects" in r else None
                  for r, c in zip(records, generated)]
    questions = load_questions(params.paths.prepared, ev.split)
    answers = answer_questions(model, questions, features, max_new_tokens=ev.vqa_max_new_tokens) if questions else []
    for row in answers:
        row["correct"] = vqa.is_correct(row["prediction"], row["answer"], row["type"], question=row["question"])
    vqa_scores = vqa.accuracy(answers) if answers else {}
    if answers:
        vqa_scores["baseline"] = scoring.vqa_baseline(answers, [{"answer": q.answer, "type": q.type} for q in
                                                                load_questions(params.paths.prepared, "train")])

    zero_shot = {}
    for name, spec in ev.zero_shot.items():
        zrefs = karpathy_references(spec.annotations, spec.images, spec.split)
        zpaths = list(zrefs)
        zcaps = caption_images(model, zpaths, features, batch_size=ev.batch_size, max_new_tokens=ev.max_new_tokens,
                               desc=f"captions ({name})")
        zero_shot[name] = {**scoring.score_row({str(p): c.text for p, c in zip(zpaths, zcaps)},
                                    {str(p): r for p, r in zrefs.items()}, str(spec.annotations)),
                           "images": len(zpaths)}

    metrics = {
        "dataset": params.data.format, "split": ev.split, "images": len(records),
        "references": sum(len(refs[r["filename"]]) for r in records),
        "experts": list(model.experts), "strategy": params.train.strategy,
        "captions": scores["stage2"], **({"stage1_captions": scores["stage1"]} if "stage1" in scores else {}),
        "theme_accuracy": scores["stage2"]["theme_accuracy"],
        **({"concept_heads": concept_scores} if concept_scores else {}),
        "baselines": base, "margins": scoring.margins(scores, base),
        "aspects": per_aspect,
        "vqa": vqa_scores,
        "grounding": grounding.aggregate([g for g in groundings if g is not None]),
        **({"zero_shot": zero_shot} if zero_shot else {}),
        "spice": captions.SPICE_NOTE,
    }
    out = Path(params.paths.metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(metrics, indent=2) + "\n")

    predictions = [{"filename": r["filename"], "reference": r["text_output"], "caption": c.text,
                    **({"references": r["references"]} if len(r.get("references") or ()) > 1 else {}),
                    "segments": c.segments, **({"stage1": stage1_texts[r["filename"]]} if stage1_texts else {}),
                    "scene_type": r.get("scene_type"), **({"concepts": told[i]} if told else {}),
                    "grounding": g.to_dict() if g else None}
                   for i, (r, c, g) in enumerate(zip(records, generated, groundings))]
    reports = Path(params.paths.reports)
    _write_jsonl(reports / "predictions.jsonl", predictions)
    _write_jsonl(reports / "vqa.jsonl", answers)
    html = _report(params, metrics, scores, predictions, reports / "report.html")
    log.info("report: %s", html)
    return {"captions": scores["stage2"], "theme_accuracy": metrics["theme_accuracy"],
            "margins": {m: v["margin"] for m, v in metrics["margins"]["stage2"].items()},
            "vqa_average": vqa_scores.get("average"), "vqa_baseline_average": vqa_scores.get("baseline", {}).get("average"),
            "count_accuracy": metrics["grounding"].get("count_accuracy"), "report": str(html)}
