"""Benchmark: what more training compute buys, on the val split.

Run from the repo root after `make run` (it reads the prepared crops and the feature cache):

    python bench/quality.py [--scales 0.25 0.5 1 2 4] [--seeds 0]
        ->  bench/results/quality.json and bench/results/quality.png

Each point trains the default model (params.yaml as committed) with both stages' step budgets
(`stageN.max_steps` and `stageN.epochs`) multiplied by the scale, then runs the evaluate stage on
the **val** split: val CIDEr, theme accuracy (the scene type named right) and VQA average,
beside the val baselines the evaluate stage computes. Each point is the real stages run as
`rsmoe stage NAME --params FILE` in a scratch folder of its own; the workspace (params.yaml,
models/, metrics/) is never touched. Training minutes are the sum of the optimiser steps' own
times (the loops' step_s), so they do not include model loading or the image-feature cache.

A scale's run is the whole schedule at that length (warm-up and cosine decay included), not a
prefix of a longer run: that is what a user gets by changing max_steps. On 2 CPU cores the
default (1x) trains in about 5 minutes with bf16 autocast; the 4x point takes about 20.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["BLEU-4", "METEOR", "CIDEr", "distinct", "theme_accuracy"]


def point_params(base: dict, scale: float, seed: int, work: Path, sets: list[str] = ()) -> dict:
    """params.yaml for one point: the stages' budgets scaled, outputs in `work`, inputs shared;
    `sets` are `dvc exp run -S` style overrides (`model.experts=1`) applied first."""
    p = json.loads(json.dumps(base))
    for item in sets:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = p
        for k in parents:
            node = node[k]
        if leaf not in node:
            raise SystemExit(f"unknown parameter {key!r} in {item!r}")
        node[leaf] = yaml.safe_load(value)
    paths = p["paths"]
    for key in ("prepared", "cache", "features"):  # the workspace's prepared data and caches
        paths[key] = str((ROOT / paths[key]).resolve())
    for key in ("models", "metrics", "reports", "checkpoints", "onnx"):
        paths[key] = str(work / key)
    for stage in ("stage1", "stage2"):
        s = p[stage]
        s["epochs"] = s.get("epochs", 1) * scale
        if s.get("max_steps"):
            s["max_steps"] = max(1, round(s["max_steps"] * scale))
    p["train"]["seed"] = seed
    p["evaluate"].update(split="val", stage1=False, samples=2)
    return p


def train_seconds(metrics: Path, name: str) -> float:
    if not (metrics / f"{name}_steps.csv").is_file():  # a stage that did not train (one-stage: no Stage I)
        return 0.0
    with open(metrics / f"{name}_steps.csv") as f:
        return sum(float(row["step_s"]) for row in csv.DictReader(f))


def run_kernels(precision: str | None) -> str:
    """The matmul kernels a run's training used: "fp32", or bf16 on "amx" / "avx512_bf16" (a
    seed's trajectory differs between these), or "cuda"."""
    import torch

    from rsmoe.training.loop import bf16_kernels

    if precision in (None, "no"):
        return "fp32"
    return "cuda" if torch.cuda.is_available() else bf16_kernels()


def base_of(params: dict) -> str:
    """What the committed default trains on beside the captions: "zero-shot" (no QA pairs, the
    paper's zero-shot VQA; every run written before the default changed) or "qa-<format>", with
    the question types in brackets where the default trains on some only ("qa-dialogue[presence,scene]")."""
    from rsmoe.params import Params
    from rsmoe.training.data import qa_pairs

    p = Params.model_validate(params)
    if not any(qa_pairs(p, s) for s in (p.stage1, p.stage2)):
        return "zero-shot"
    types = f"[{','.join(p.train.qa_types)}]" if p.train.qa_types else ""
    return f"qa-{p.train.qa_format}{types}"


def run_point(base: dict, scale: float, seed: int, work: Path, sets: list[str] = ()) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    params = point_params(base, scale, seed, work, sets)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    for stage in ("stage1", "propagate", "stage2", "evaluate"):
        with open(work / f"{stage}.log", "w") as log:
            r = subprocess.run([sys.executable, "-m", "rsmoe", "stage", stage, "--params", str(work / "params.yaml")],
                               cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        if r.returncode:
            raise SystemExit(f"scale {scale} seed {seed}: stage {stage} failed; see {work / (stage + '.log')}")
    metrics = work / "metrics"
    ev = json.loads((metrics / "evaluate.json").read_text())
    s1, s2 = (json.loads((metrics / f"{n}.json").read_text()) for n in ("stage1", "stage2"))
    base_rows = ev["baselines"]
    best = max((k for k in base_rows if k not in ("retrieval_oracle", "blind")), key=lambda k: base_rows[k]["CIDEr"])
    return {
        "scale": scale, "seed": seed,
        "stage1_steps": s1.get("steps"), "stage2_steps": s2.get("steps"),
        "train_minutes": round((train_seconds(metrics, "stage1") + train_seconds(metrics, "stage2")) / 60, 2),
        "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
        "precision": s2.get("precision"), "set": list(sets), "base": base_of(base),
        # bf16 on AMX and on AVX512-BF16 rounds differently: a seed is another trajectory on each
        "kernels": run_kernels(s2.get("precision")),
        "stage1_final_loss": s1.get("final_loss"), "stage2_final_loss": s2.get("final_loss"),
        # theme_accuracy is None on sets without scene types (Karpathy / folder sets)
        **{k: None if ev["captions"].get(k) is None else round(ev["captions"][k], 2) for k in KEYS + ["BLEU-1", "ROUGE-L"]},
        "concept_heads": ev.get("concept_heads"),  # what the concept tokens told the LLM
        "aspects": aspect_scores(ev),
        "vqa_average": round(ev["vqa"]["average"], 2) if ev.get("vqa") else None,
        "vqa_majority_average": round(ev["vqa"]["baseline"]["average"], 2) if ev.get("vqa") else None,
        "vqa_per_type": {t: round(row["accuracy"], 2) for t, row in ev["vqa"]["per_type"].items()}
        if ev.get("vqa") else None,
        "blind_CIDEr": round(base_rows["blind"]["CIDEr"], 2) if "blind" in base_rows else None,
        "best_baseline": best, "best_baseline_CIDEr": round(base_rows[best]["CIDEr"], 2),
        # sets without object annotations (Karpathy / folder) have no oracle and no scene_caption row
        "retrieval_oracle_CIDEr": round(base_rows["retrieval_oracle"]["CIDEr"], 2) if "retrieval_oracle" in base_rows
        else None,
        # CIDEr-D's length penalty makes CIDEr a length lottery on long captions (bench/cider_length.py)
        **{f"{k}{suffix}": round(row[k], 2) for suffix, row in (("", ev["captions"]),
                                                                 ("_scene_caption", base_rows.get("scene_caption", {})))
           for k in ("CIDEr-nolen", "length_gap") if k in row},
        **({"random_caption_CIDEr": round(base_rows["random_caption"]["CIDEr"], 2)} if "random_caption" in base_rows
           else {}),
        **{k: ev["grounding"].get(k) for k in ("count_accuracy", "hallucination_rate", "miss_rate")
           if ev.get("grounding")},
    }


def aspect_scores(ev: dict) -> dict | None:
    """BLEU-4, METEOR and CIDEr of each caption aspect (the segment one expert writes), so that a
    caption score that moves can be traced to the expert that moved it; None without aspects."""
    if not ev.get("aspects"):
        return None
    return {aspect: {k: round(row[k], 2) for k in ("BLEU-4", "METEOR", "CIDEr") if row.get(k) is not None}
            for aspect, row in ev["aspects"].items()}


def plot(points: list[dict], out: Path) -> None:
    """Val CIDEr, theme accuracy and VQA average against training minutes: each run a dot, the
    line through each scale's mean (over the seeds run)."""
    import statistics

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scales = sorted({p["scale"] for p in points})
    by = {s: [p for p in points if p["scale"] == s] for s in scales}
    mean = {s: {k: statistics.mean(p[k] for p in by[s]) for k in ("train_minutes", "CIDEr", "theme_accuracy",
                                                                  "vqa_average")} for s in scales}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [mean[s]["train_minutes"] for s in scales]
    for ax, keys in ((a, [("CIDEr", "o", "model (val CIDEr)")]),
                     (b, [("theme_accuracy", "o", "theme accuracy %"), ("vqa_average", "s", "VQA average %")])):
        for key, marker, label in keys:
            line, = ax.plot(xs, [mean[s][key] for s in scales], marker + "-", label=label)
            ax.scatter([p["train_minutes"] for p in points], [p[key] for p in points], s=14, alpha=0.5,
                       color=line.get_color())
        ax.set_xlabel("training minutes (2 CPU cores)")
    a.axhline(points[0]["best_baseline_CIDEr"], ls="--", c="gray", label=f"best baseline ({points[0]['best_baseline']})")
    a.set_ylabel("val CIDEr")
    b.axhline(points[0]["vqa_majority_average"], ls="--", c="gray", label="VQA majority baseline")
    b.set_ylim(0, 100)
    for ax in (a, b):
        ax.legend(fontsize=8)
        for s, x in zip(scales, xs):
            ax.annotate(f"{s:g}x", (x, ax.get_ylim()[0]), fontsize=7, ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.json"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders (models, logs)")
    ap.add_argument("--add-to", help="a quality.json of the same params: its points are kept, this run's added")
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.params).read_text())
    if not (ROOT / base["paths"]["prepared"] / "captions.json").is_file():
        raise SystemExit("no prepared data: run `make run` (or `dvc repro prepare`) first")
    scratch = Path(tempfile.mkdtemp(prefix="rsmoe-quality-"))
    out = Path(args.out)
    points: list[dict] = json.loads(Path(args.add_to).read_text())["points"] if args.add_to else []
    try:
        for seed in args.seeds:
            for scale in args.scales:
                print(f"scale {scale:g}x, seed {seed} ...", flush=True)
                points.append(run_point(base, scale, seed, scratch / f"x{scale:g}-s{seed}"))
                print(json.dumps(points[-1]), flush=True)
                result = {"split": "val", "preset": base["model"]["preset"], "experts": base["model"]["experts"],
                          "default_steps": {s: base[s].get("max_steps") for s in ("stage1", "stage2")},
                          "points": points, "machine": platform.processor() or platform.machine(),
                          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(result, indent=1) + "\n")  # after every point: a cut run keeps them
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    plot(points, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
