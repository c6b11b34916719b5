"""One caption row's scores (pycocoevalcap + diagnostics), the text baselines scored the same
way, the majority-answer VQA baseline, and each model row's margin over its best competitor.
`stages/evaluate` composes these; nothing here needs the model."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from rsmoe.evaluation import baselines, captions, grounding, vqa
from rsmoe.evaluation.diagnostics import diagnose

log = logging.getLogger("rsmoe")

# What an empty generated caption is scored as: a word no reference uses, so the image scores ~0
# instead of being dropped (dropping would flatter the model); `empty_captions` counts them.
EMPTY = "nocaption"

# Baselines that a model must beat; the retrieval oracle reads the test annotations and is only a reference.
COMPETITORS = ("random_caption", "scene_caption", "blind")


def score_row(cands: Mapping[str, str], refs: Mapping[str, list[str]], source: str,
              scene_types: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """pycocoevalcap's scores, the empty captions and the diagnostics of one caption row."""
    empty = [k for k, v in cands.items() if not v.strip()]
    if empty:
        log.warning("%s: %d empty captions are scored as %r", source, len(empty), EMPTY)
    scored = captions.score({k: v if v.strip() else EMPTY for k, v in cands.items()}, refs, source=source)
    return {**scored, "empty_captions": len(empty), **diagnose(cands, refs, scene_types)}


def mean_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-key mean of score rows (None where any row has None)."""
    return {k: sum(r[k] for r in rows) / len(rows) if all(r[k] is not None for r in rows) else None for k in rows[0]}


def text_baselines(records: Sequence[Mapping], train: Sequence[Mapping], refs: Mapping[str, list[str]],
                   scene_types: Mapping[str, str | None], source: str) -> dict[str, dict]:
    """The baselines written without a model: random caption (mean of 3 seeds), scene caption,
    retrieval oracle (see `rsmoe.evaluation.baselines`); only the first for a captioned set, whose
    records carry no scene type and no objects to choose a caption by."""
    rand = [score_row(baselines.random_caption(records, train, seed), refs, f"{source}, random caption (seed {seed})",
                      scene_types) for seed in baselines.RANDOM_SEEDS]
    if not any("objects" in r or r.get("scene_type") for r in (*train, *records)):  # a captioned set: nothing
        # (no scene type, no objects) to choose a caption by; those two rows would be random_caption again
        return {"random_caption": {**mean_rows(rand), "seeds": len(rand)}}
    return {
        "random_caption": {**mean_rows(rand), "seeds": len(rand)},
        "scene_caption": score_row(baselines.scene_caption(records, train), refs, f"{source}, scene caption",
                                   scene_types),
        "retrieval_oracle": score_row(baselines.retrieval_oracle(records, train), refs, f"{source}, retrieval oracle",
                                      scene_types),
    }


def vqa_baseline(answers: Sequence[Mapping], train_questions: Sequence[Mapping]) -> dict[str, Any]:
    """The majority answer per question type (from the train questions), judged like the model's
    `answers` (rows with type, question, answer), with the answers it gave."""
    majority = baselines.majority_answers(train_questions)
    guesses = [{"type": r["type"], "question": r["question"], "answer": r["answer"],
                "prediction": majority.get(r["type"], "")} for r in answers]
    for row in guesses:
        row["correct"] = vqa.is_correct(row["prediction"], row["answer"], row["type"], question=row["question"])
    return {**vqa.accuracy(guesses), "answers": majority}


def margins(scores: Mapping[str, Mapping], base: Mapping[str, Mapping]) -> dict[str, dict[str, dict]]:
    """Each model row's margin over the best non-oracle baseline, per caption metric (and that
    baseline's name): a positive margin on every metric is what "beats every baseline" means.
    A baseline missing from `base` (the blind control on a single image) is not a competitor."""
    out = {}
    for name, s in scores.items():
        row = {}
        for m in captions.METRICS:
            best = max((b for b in COMPETITORS if b in base), key=lambda b: base[b][m])
            row[m] = {"margin": round(s[m] - base[best][m], 4), "best_baseline": best,
                      "ratio": round(s[m] / base[best][m], 4) if base[best][m] else None}
        out[name] = row
    return out


def scores_markdown(m: Mapping[str, Any]) -> str:
    """metrics/evaluate.json -> markdown (the Prefect artifact, `rsmoe scores`, the README's
    results): model rows, each model's margin over the best non-oracle baseline, the baseline
    rows; VQA per type beside the majority-answer baseline; grounding."""
    keys = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
    extra = (("distinct", "distinct %"), ("theme_accuracy", "theme acc. %"),
             ("CIDEr-nolen", "CIDEr w/o length penalty"), ("length_gap", "length gap (words)"))

    def row(name: str, s: Mapping[str, Any]) -> str:
        cells = [f"{s[k]:.2f}" for k in keys] + [f"{s[k]:.1f}" if s.get(k) is not None else "-" for k, _ in extra]
        return f"| {name} | " + " | ".join(cells) + " |"

    rows = [row(name, m[key]) for name, key in (("stage2", "captions"), ("stage1", "stage1_captions")) if key in m]
    for name, per in m.get("margins", {}).items():
        rows.append(f"| *{name} − best baseline* | " + " | ".join(f"{per[k]['margin']:+.2f}" for k in keys)
                    + " |" + " |" * len(extra))
    rows += [row(f"*baseline: {name}*", s) for name, s in m.get("baselines", {}).items()]
    out = [f"# rsmoe: {m.get('strategy')}, experts {', '.join(m.get('experts', []))}, "
           f"{m.get('images')} {m.get('split')} images", "",
           "| captions | " + " | ".join(keys + tuple(h for _, h in extra)) + " |",
           "|---" * (len(keys) + len(extra) + 1) + "|", *rows]
    v = m.get("vqa") or {}
    if v.get("per_type"):
        base = (v.get("baseline") or {}).get("per_type", {})

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"

        out += ["", "| VQA accuracy % | model | majority answer | questions |", "|---|---|---|---|"]
        out += [f"| {t} | {pct(d['accuracy'])} | {pct(base.get(t, {}).get('accuracy'))} | {d['n']} |"
                for t, d in v["per_type"].items()]
        vb = v.get("baseline") or {}
        out += [f"| **average over types** | {pct(v.get('average'))} | {pct(vb.get('average'))} | |",
                f"| overall | {pct(v.get('overall'))} | {pct(vb.get('overall'))} | {v.get('n', '')} |"]
    g = m.get("grounding") or {}
    if g and not grounding.annotated(g):  # a folder or Karpathy set: no object annotations to check against
        out += ["", "Grounding: not available (these images have no object annotations to check captions against)."]
    elif g:
        def rate(k: str) -> str:
            return "n/a" if g.get(k) is None else f"{g[k]:.1f} %"  # None: nothing to count (no denominator)

        out += ["", f"Grounding: exact-count accuracy {rate('count_accuracy')}, "
                    f"hallucination rate {rate('hallucination_rate')}, miss rate {rate('miss_rate')}."]
    out += ["", "Report: `reports/report.html` (`dvc metrics show` for every number)."]
    return "\n".join(out)
