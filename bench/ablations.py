"""The paper's ablations (Table V: N experts; Table VII: one- vs two-stage) at CPU scale, per seed.

Run from the repo root, after `make run` (the committed baseline must be up to date):
    python bench/ablations.py [--seeds 0 1]   ->  bench/results/ablations.json + a markdown table

Each run is the README's one command, `dvc exp run -S KEY=VALUE ... -n NAME`, in the workspace;
between runs the workspace goes back to the committed baseline (`git checkout` of params.yaml,
dvc.lock and metrics/, then `dvc checkout`), so the runs do not stack their parameters. Seed 0
of the default configuration is the baseline itself (its metrics are read, nothing re-runs);
other seeds set `train.seed`. DVC's run cache restores any stage an earlier run already computed
with the same inputs (e.g. Stage II of N = 1 for the 288-token run). Stage I reads all of
`model`, so N = 1 trains its own Stage I.

Several seeds say how far one run's numbers move by chance alone: at this scale (minutes of
training, 32 test crops) that spread is as large as some of the differences the paper reports,
so an ordering counts as reproduced only when it holds for every seed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKED = ["params.yaml", "dvc.lock", "metrics"]
CONFIGS = {  # name -> the README's -S settings (paper table)
    "default": [],                                                          # N = 3, two-stage
    "experts-1": ["model.experts=1"],                                       # Table V
    "experts-1-len288": ["model.experts=1", "evaluate.max_new_tokens=288"],  # 3 x 96: equal token budget
    "one-stage": ["train.strategy=one-stage"],                              # Table VII
}
SCORE_KEYS = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen"]  # higher is better
CAPTION_KEYS = SCORE_KEYS + ["length_gap"]  # CIDEr-nolen, length_gap: see bench/cider_length.py


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=ROOT, env=env, check=check, text=True, capture_output=True)


def reset() -> None:
    """Back to the committed baseline: its params, lock and metrics, and its outputs from the cache."""
    sh("git", "checkout", "--", *TRACKED)
    sh("dvc", "checkout", "-q")


def read_run() -> dict:
    ev = json.loads((ROOT / "metrics" / "evaluate.json").read_text())
    st2 = json.loads((ROOT / "metrics" / "stage2.json").read_text())
    g = ev.get("grounding") or {}
    return {
        "captions": {k: round(ev["captions"][k], 2) for k in CAPTION_KEYS},
        "stage1_captions": {k: round(v, 2) for k, v in (ev.get("stage1_captions") or {}).items() if k in CAPTION_KEYS},
        "aspect_cider": {a: round(s["CIDEr"], 2) for a, s in (ev.get("aspects") or {}).items()},
        "count_accuracy": g.get("count_accuracy"), "hallucination_rate": g.get("hallucination_rate"),
        "miss_rate": g.get("miss_rate"), "vqa_average": ev.get("vqa", {}).get("average"),
        "stage2_final_loss": st2.get("final_loss"), "stage2_mean_loss_last_epoch": st2.get("mean_loss_last_epoch"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ablations.json")
    args = p.parse_args()

    dirty = sh("git", "status", "--porcelain", "--", *TRACKED).stdout.strip()
    if dirty:
        sys.exit(f"uncommitted changes in {', '.join(TRACKED)}:\n{dirty}\ncommit them first: each run resets "
                 "these to the last commit")
    if "up to date" not in sh("dvc", "status").stdout:
        sys.exit("the baseline is not up to date (`dvc status` lists changes): run `make run` and commit dvc.lock")

    runs = []
    try:
        for seed in args.seeds:
            for name in args.configs:
                sets = CONFIGS[name] + ([f"train.seed={seed}"] if seed else [])
                label = name if not seed else f"{name}-seed{seed}"
                start = time.perf_counter()
                if sets:
                    sh("dvc", "exp", "remove", label, check=False)  # a rerun of the bench replaces it
                    print(f"[{label}] dvc exp run -S {' -S '.join(sets)}", flush=True)
                    res = sh("dvc", "exp", "run", *[a for s in sets for a in ("-S", s)], "-n", label, check=False)
                    if res.returncode:
                        sys.exit(f"[{label}] dvc exp run failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
                row = {"name": label, "config": name, "seed": seed, "set": sets, **read_run(),
                       "seconds": round(time.perf_counter() - start, 1)}
                runs.append(row)
                print(f"[{label}] CIDEr {row['captions']['CIDEr']}, BLEU-4 {row['captions']['BLEU-4']} "
                      f"({row['seconds']} s)", flush=True)
                reset()
    finally:
        reset()

    by = {(r["config"], r["seed"]): r for r in runs}
    orderings = {}
    for better, worse, what in (("default", "experts-1", "3 experts > 1 expert"),
                                ("default", "one-stage", "two-stage > one-stage")):
        per_seed = {s: {k: by[(better, s)]["captions"][k] > by[(worse, s)]["captions"][k] for k in SCORE_KEYS}
                    for s in args.seeds if (better, s) in by and (worse, s) in by}
        orderings[what] = {"per_seed": per_seed,
                           "holds_for_every_seed_and_metric": bool(per_seed) and all(all(v.values()) for v in per_seed.values())}
    result = {"runs": runs, "orderings": orderings, "seeds": args.seeds,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)

    print("\n| run | seed | " + " | ".join(CAPTION_KEYS) + " | count acc. | VQA avg |")
    print("| --- | --- |" + " --- |" * (len(CAPTION_KEYS) + 2))
    for r in runs:
        print(f"| {r['config']} | {r['seed']} | " + " | ".join(f"{r['captions'][k]:.2f}" for k in CAPTION_KEYS)
              + f" | {r['count_accuracy']} | {r['vqa_average']} |")
    for what, o in orderings.items():
        print(f"{what}: holds for every seed and metric: {o['holds_for_every_seed_and_metric']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
