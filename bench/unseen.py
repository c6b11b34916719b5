"""Benchmark: the trained model on scenes of corpora it never saw (new `synth` seeds).

Run from the repo root after `make run` (it evaluates the workspace's `models/stage2`):

    python bench/unseen.py [--seeds 1 2] [--split test]   ->  bench/results/unseen.json

The test split of the embedded corpus holds 36 crops of 9 scenes, so one scene's luck moves a
score. Each seed here writes a new corpus with the same generator and size (`rsmoe synth --seed
S`, params.yaml's `synth` otherwise), validates and prepares it with the committed params, and runs
the real `evaluate` stage on its `--split` with the workspace's trained model, in a scratch
folder (its own features cache; the workspace is only read). Its baselines (random / scene-type
caption, retrieval oracle) draw from the new corpus's train split, which the model never saw
either; the blind control and VQA's majority answer are computed as in `make run`. The Stage I
row is left out (`evaluate.stage1: false`). The workspace's own test scores are reported beside,
from `metrics/evaluate.json`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import aspect_scores  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
CAPTION_KEYS = ["BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen", "length_gap", "theme_accuracy", "distinct"]


def _scores(ev: dict) -> dict:
    caps, base = ev["captions"], ev["baselines"]
    best = max((k for k in base if k not in ("retrieval_oracle", "blind")), key=lambda k: base[k]["CIDEr"])
    out = {"images": ev.get("images"),
           **{k: round(caps[k], 2) for k in CAPTION_KEYS if caps.get(k) is not None},
           "baselines": {name: {k: round(row[k], 2) for k in CAPTION_KEYS if row.get(k) is not None}
                         for name, row in base.items()},
           "best_baseline": best, "aspects": aspect_scores(ev)}
    if ev.get("vqa"):
        out["vqa"] = {"average": round(ev["vqa"]["average"], 2),
                      "majority_average": round(ev["vqa"]["baseline"]["average"], 2),
                      "per_type": {t: round(r["accuracy"], 2) for t, r in ev["vqa"]["per_type"].items()}}
    if ev.get("grounding"):
        out["grounding"] = {k: ev["grounding"].get(k) for k in ("count_accuracy", "hallucination_rate", "miss_rate")}
    return out


def run_seed(base: dict, seed: int, split: str, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    p = json.loads(json.dumps(base))
    paths = p["paths"]
    for key in ("models", "cache"):  # the trained model and the converted weights: read only
        paths[key] = str((ROOT / paths[key]).resolve())
    for key in ("raw", "validated", "prepared", "metrics", "reports", "features", "checkpoints", "onnx"):
        paths[key] = str(work / key)
    p["synth"]["seed"] = seed
    p["evaluate"].update(split=split, stage1=False, samples=2)
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    steps = [["synth", "--out", paths["raw"], "--params", str(work / "params.yaml")]] + [
        ["stage", s, "--params", str(work / "params.yaml")] for s in ("validate", "prepare", "evaluate")]
    for cmd in steps:
        name = cmd[1] if cmd[0] == "stage" else cmd[0]
        with open(work / f"{name}.log", "w") as log:
            r = subprocess.run([sys.executable, "-m", "rsmoe", *cmd], cwd=work, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        if r.returncode:
            raise SystemExit(f"seed {seed}: {' '.join(cmd[:2])} failed; see {work / (name + '.log')}")
    ev = json.loads((work / "metrics" / "evaluate.json").read_text())
    from rsmoe.training.concepts import source_scene

    scenes = {source_scene(Path(json.loads(line)["filename"]))
              for line in (work / "reports" / "predictions.jsonl").open()}
    return {"synth_seed": seed, "split": split, "scenes": len(scenes), **_scores(ev),
            "wall_minutes": round((time.perf_counter() - t0) / 60, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="synth seeds (the workspace's is 0)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "unseen.json"))
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.params).read_text())
    if not (ROOT / base["paths"]["models"] / "stage2" / "config.json").is_file():
        raise SystemExit("no trained model in the workspace: run `make run` first")
    if base["synth"]["seed"] in args.seeds:
        raise SystemExit(f"synth seed {base['synth']['seed']} is the workspace's own corpus; pick others")
    workspace = json.loads((ROOT / base["paths"]["metrics"] / "evaluate.json").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="rsmoe-unseen-") as scratch:
        for seed in args.seeds:
            print(f"[synth seed {seed}]", flush=True)
            rows.append(run_seed(base, seed, args.split, Path(scratch) / f"seed{seed}"))
            print(json.dumps(rows[-1]), flush=True)
    result = {"model": "models/stage2 of the workspace (synth seed %d)" % base["synth"]["seed"],
              "workspace_test": {"synth_seed": base["synth"]["seed"], "split": workspace.get("split"),
                                 **_scores(workspace)},
              "unseen": rows,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in [result["workspace_test"], *rows]:
        b = r["baselines"][r["best_baseline"]]
        print(f"synth seed {r['synth_seed']}: CIDEr {r['CIDEr']} (w/o length penalty {r.get('CIDEr-nolen')}) vs "
              f"{r['best_baseline']} {b['CIDEr']} ({b.get('CIDEr-nolen')}); BLEU-4 {r['BLEU-4']} vs {b['BLEU-4']}; "
              f"theme {r.get('theme_accuracy')} %; VQA {r.get('vqa', {}).get('average')} %")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
