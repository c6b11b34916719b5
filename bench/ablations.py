"""The paper's ablations (Table V: N = 1 / 2 / 3 / 4 experts; Table VII: one- vs two-stage) at CPU
scale, several seeds each, on the **val** split beside its baselines.

Run from the repo root after `make run` (it reads the prepared crops and the feature cache):

    python bench/ablations.py [--configs experts-1 one-stage ...] [--seeds 0 1 2]
        ->  bench/results/ablations.json + a markdown table of mean +- std per configuration

Each run is the committed params.yaml with the configuration's `-S` settings (the same ones a
user gives `dvc exp run -S model.experts=1`), trained and evaluated by the real stages in a
scratch folder of its own (bench/quality.py's `run_point`: `rsmoe stage NAME --params FILE`); the
workspace is never touched. Results are written after every run and a rerun skips the
(configuration, seed) pairs already in the output file, so a cut run resumes; `--import` adds
runs of the default configuration measured by bench/quality.py (same harness, same params).

Runs are grouped by training precision and kernels: bf16 autocast where the CPU has AVX512-BF16,
fp32 elsewhere (2.5x slower: a run then takes ~22 min, not ~9), and bf16 on AMX tiles apart from
bf16 on AVX512-BF16 alone (their sums round differently); a seed follows another trajectory in
each, so a configuration is compared only with the default of the same group. Runs written before
the harness recorded the kernels form a group of their own ("bf16").

At this scale (5 training minutes, 44 val crops) one seed's score moves by as much as some of the
differences the paper reports, so an ordering is called reproduced only when it holds for every
seed (paired by seed); otherwise it is seed noise at this budget.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, base_of, run_kernels, run_point  # noqa: E402  (bench/ is not a package)

CONFIGS = {  # name -> the `-S` settings (paper table); every expert segment has the same room per aspect
    "default": [],                                          # N = 3, two-stage
    "experts-1": ["model.experts=1"],                       # Table V
    "experts-2": ["model.experts=2"],
    "experts-4": ["model.experts=4"],
    "one-stage": ["train.strategy=one-stage"],              # Table VII: no Stage I, the experts from the base LLM
    "no-concept-tokens": ["model.scene_tokens=0", "model.object_tokens=0"],  # ours: the small preset without them
    "no-object-tokens": ["model.object_tokens=0"],
    # ours: one train-split QA pair per crop as an extra example (routed to its type's expert), the
    # step budgets doubled so that the captions get as many steps as in the default
    "qa-1": ["train.qa_per_image=1", "stage1.max_steps=160", "stage2.max_steps=80"],
    # ours: two train-split QA pairs per crop in Stage II only (Stage I as the default), Stage II's
    # steps tripled so that its captions get the default's 160 examples
    "qa-s2": ["stage2.qa_per_image=2", "stage2.max_steps=120"],
    # ours: every train-split QA pair of a crop in Stage II as one multi-turn example (one row per
    # expert, its own questions after one image prefix); Stage II's steps doubled so that its
    # captions get the default's 160 examples
    "qa-dialogue": ["stage2.qa_per_image=12", "train.qa_format=dialogue", "stage2.max_steps=80"],
    # ours, on the QA-dialogue default: no position QA (ab_position, re_position, area_comp: the
    # relations expert's), which on test turned its position sentences into one generic phrase
    "qa-no-positions": ["train.qa_types=[presence,quantity,color,image,scene]"],
    # ours: the concept heads fitted on each train crop's 8 dihedral views (bench/augment_probe.py:
    # val objects missed 19.8 -> 10.8 %, hallucinated 13.6 -> 11.6 %, scene 79.5 -> 81.8 %)
    "concept-views-8": ["train.concept_views=8"],
    # ours: after each object slot, where its class lies (" upper half.", 5 tokens), from a per-class head on
    # the 3x3 cells' mean tokens (bench/position_probe.py: the caption's phrase on 37.8 % of val pairs vs 17.1 %)
    "position-tokens": ["model.position_tokens=5"],
    # ours: the train images' concept tokens from heads fitted on the other 5 folds of source scenes
    "oof-5": ["train.concept_folds=5"],
}
PAPER_CIDER = {"default": 158.36, "experts-1": 93.51, "experts-2": 124.41, "experts-4": 147.24, "one-stage": 98.21}  # paper Tables V / VII (7B, RSIEval)
# higher is better for all of these but length_gap, hallucination_rate and miss_rate
KEYS = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen", "length_gap", "theme_accuracy",
        "distinct", "vqa_average", "count_accuracy", "hallucination_rate", "miss_rate"]
LOWER_IS_BETTER = {"length_gap", "hallucination_rate", "miss_rate"}
COMPARED = ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen", "theme_accuracy", "vqa_average",
            "count_accuracy", "hallucination_rate"]


def _kernels(r: dict) -> str:
    """A run's precision and kernels: "fp32", "bf16/amx", "bf16/avx512_bf16"; "bf16" alone for runs
    written before the harness recorded the kernels."""
    p = r.get("precision") or "?"
    return "fp32" if p == "no" else f"{p}/{r['kernels']}" if r.get("kernels") else p


def _cohort(r: dict) -> str:
    """Runs compare only within one precision and one set of bf16 kernels (fp32; bf16 autocast on
    AMX tiles; bf16 on AVX512-BF16 without AMX), where the same seed follows another trajectory,
    and within one default (`base_of`): a configuration is a change to the default it ran on."""
    base = r.get("base", "zero-shot")
    return _kernels(r) if base == "zero-shot" else f"{_kernels(r)}, base {base}"


def _group(r: dict) -> str:
    return f"{r['config']} [{_cohort(r)}]"


def summarise(runs: list[dict]) -> dict:
    """Mean +- std (sample, over seeds) per configuration (and precision) and key."""
    out = {}
    for name in dict.fromkeys(_group(r) for r in runs):
        rows = [r for r in runs if _group(r) == name]
        out[name] = {"seeds": sorted(r["seed"] for r in rows)}
        for k in KEYS:
            vals = [r[k] for r in rows if r.get(k) is not None]
            if vals:
                out[name][k] = {"mean": round(statistics.mean(vals), 2),
                                "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else None}
    return out


def orderings(runs: list[dict]) -> dict:
    """For each configuration against the default of the same cohort (`_cohort`): on which keys the
    default is better for every seed both ran, on which the configuration is, and on which the
    seeds disagree."""
    by = {(r["config"], r["seed"], _cohort(r)): r for r in runs}
    out = {}
    for name, group in dict.fromkeys((r["config"], _cohort(r)) for r in runs if r["config"] != "default"):
        seeds = sorted(s for (c, s, g) in by if c == name and g == group and ("default", s, group) in by)
        if not seeds:
            continue
        verdict = {}
        for k in COMPARED:
            pairs = [(by[("default", s, group)].get(k), by[(name, s, group)].get(k)) for s in seeds]
            if any(a is None or b is None for a, b in pairs):
                continue
            sign = [(a < b) if k in LOWER_IS_BETTER else (a > b) for a, b in pairs]
            other = [(a > b) if k in LOWER_IS_BETTER else (a < b) for a, b in pairs]
            verdict[k] = "default better on every seed" if all(sign) else (
                f"{name} better on every seed" if all(other) else "seeds disagree")
        label = f"default (N = 3, two-stage) vs {name} [{group}]"
        out[label] = {"seeds": seeds, "per_key": verdict, "one_seed_only": len(seeds) < 2}
    return out


def table(summary: dict, baselines: dict | None) -> str:
    cols = ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen", "length_gap", "theme_accuracy", "vqa_average",
            "count_accuracy", "hallucination_rate"]
    lines = ["| run | seeds | " + " | ".join(cols) + " | paper CIDEr |", "|---|---|" + "---|" * (len(cols) + 1)]
    for name, s in summary.items():
        cells = [f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}" if k in s and s[k]["std"] is not None
                 else (f"{s[k]['mean']:.1f}" if k in s else "") for k in cols]
        paper = PAPER_CIDER.get(name.split(" [")[0], "")
        lines.append(f"| {name} | {len(s['seeds'])} | " + " | ".join(cells) + f" | {paper} |")
    for name, row in (baselines or {}).items():
        lines.append(f"| *baseline: {name}* | | " + " | ".join(
            f"{row[k]:.1f}" if row.get(k) is not None else "" for k in cols) + " | |")
    return "\n".join(lines)


def _commit() -> str | None:
    """The code a run measured (runs resume across sessions; a table mixing commits says so)."""
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() or None


def _precision(base: dict) -> str:
    """The precision the training stages will pick here (what `train.mixed_precision` resolves to)."""
    from rsmoe.training.loop import resolve_precision

    import torch

    return resolve_precision(base["train"]["mixed_precision"], torch.cuda.is_available())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ablations.json"))
    ap.add_argument("--import", dest="imports", nargs="*", default=[],
                    help="quality.json-style files whose 1x points are runs of the default configuration")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders (models, logs)")
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.params).read_text())
    if not (ROOT / base["paths"]["prepared"] / "captions.json").is_file():
        raise SystemExit("no prepared data: run `make run` (or `dvc repro prepare`) first")
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.is_file() else {}
    runs: list[dict] = old.get("runs", []) if old.get("split") == "val" else []
    baselines = old.get("val_baselines")
    for path in args.imports:
        for p in json.loads(Path(path).read_text())["points"]:
            if p.get("scale") == 1 and not any(r["config"] == "default" and r["seed"] == p["seed"] for r in runs):
                runs.append({"config": "default", "set": [], **p, "imported_from": Path(path).name})

    def write() -> None:
        result = {"split": "val", "preset": base["model"]["preset"], "runs": runs, "summary": summarise(runs),
                  "orderings": orderings(runs), "val_baselines": baselines,
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)

    precision = _precision(base)
    base_name = base_of(base)
    here = _cohort({"precision": precision, "kernels": run_kernels(precision), "base": base_name})
    print(f"training precision here and default: {here}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="rsmoe-ablations-"))
    try:
        for seed in args.seeds:
            for name in args.configs:
                if any(r["config"] == name and r["seed"] == seed and _cohort(r) == here for r in runs):
                    continue  # done on a machine of the same kernels, on this default (a cut run resumes here)
                print(f"[{name} seed {seed}] -S {' -S '.join(CONFIGS[name]) or '(defaults)'}", flush=True)
                work = scratch / f"{name}-s{seed}"
                point = run_point(base, 1, seed, work, CONFIGS[name])
                runs.append({"config": name, **point, "commit": _commit()})
                ev = json.loads((work / "metrics" / "evaluate.json").read_text())
                baselines = {k: {**{m: round(v, 2) for m, v in row.items() if isinstance(v, (int, float))}}
                             for k, row in ev["baselines"].items()}
                if ev.get("vqa"):
                    majority = round(ev["vqa"]["baseline"]["average"], 2)
                    baselines.setdefault("majority_answer", {})["vqa_average"] = majority
                print(json.dumps(runs[-1]), flush=True)
                write()
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    write()
    summary = summarise(runs)
    print(table(summary, baselines))
    for what, o in orderings(runs).items():
        print(f"{what} (seeds {o['seeds']}):")
        for k, v in o["per_key"].items():
            print(f"  {k}: {v}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
