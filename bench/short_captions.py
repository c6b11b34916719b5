"""Benchmark: what the experts should train on when every reference is one sentence (RSICD, UCM-
and Sydney-Captions style), measured on the val split: N = 1 (one expert writes the caption)
against N = 3 (each one-sentence reference goes to the expert of the aspect `split_caption` finds
in it; at inference all three write).

Run from the repo root after `make run` (it reads the prepared crops and the feature cache):

    python bench/short_captions.py [--seeds 0 1 2] [--experts 1 3]
        ->  bench/results/short_captions.json

The one-sentence set is built from the embedded corpus's prepared crops, in the Karpathy format
a user would bring: each crop's references are the first sentence of its theme, objects and
relations segments (up to three one-sentence descriptions, as RSICD has five), its split the
prepared one. It goes through the real `prepare` of `--format karpathy` (so training takes one
example per reference and evaluate scores against all of them), then each point is the stages
run by bench/quality.py's `run_point` in a scratch folder with the default budget.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import ROOT, run_point  # noqa: E402  (bench/ is not a package)

KEYS = ["BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "CIDEr-nolen", "length_gap", "distinct"]


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0] if text and text.strip() else ""


def build_set(prepared: Path, out: Path) -> Path:
    """prepared/captions.json -> out/dataset_short.json (Karpathy format) over prepared/images."""
    records = json.loads((prepared / "captions.json").read_text())["annotations"]
    images = []
    for i, r in enumerate(records):
        segs = r.get("segments") or {}
        refs = [s for s in (first_sentence(segs.get(a, "")) for a in ("theme", "objects", "relations")) if s]
        if refs:
            images.append({"filename": r["filename"], "imgid": i, "split": r["split"],
                           "sentences": [{"raw": s} for s in dict.fromkeys(refs)]})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dataset_short.json"
    path.write_text(json.dumps({"images": images, "dataset": "short"}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--experts", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "short_captions.json"))
    args = ap.parse_args()
    from rsmoe.data.prepare_captioned import prepare_captioned
    from rsmoe.params import PrepareParams

    base = yaml.safe_load(Path(args.params).read_text())
    prepared = (ROOT / base["paths"]["prepared"]).resolve()
    if not (prepared / "captions.json").is_file():
        raise SystemExit("no prepared data: run `make run` (or `dvc repro prepare`) first")
    out = Path(args.out)
    scratch = Path(tempfile.mkdtemp(prefix="rsmoe-short-"))
    runs = json.loads(out.read_text())["runs"] if out.is_file() else []
    try:
        annotations = build_set(prepared, scratch / "set")
        short = scratch / "prepared"
        stats = prepare_captioned("karpathy", annotations, prepared / "images", short,
                                  PrepareParams(**base.get("prepare", {})), progress=False)
        base["paths"]["prepared"] = str(short)
        base["data"] = {**base.get("data", {}), "format": "karpathy", "annotations": str(annotations),
                        "images": str(prepared / "images")}
        for seed in args.seeds:
            for n in args.experts:
                if any(r["experts"] == n and r["seed"] == seed for r in runs):
                    continue
                print(f"N = {n}, seed {seed} ...", flush=True)
                point = run_point(base, 1, seed, scratch / f"n{n}-s{seed}", [f"model.experts={n}"])
                runs.append({"experts": n, **point})
                summary = {n: {k: {"mean": round(statistics.mean(r[k] for r in runs if r["experts"] == n), 2),
                                   "std": round(statistics.stdev([r[k] for r in runs if r["experts"] == n]), 2)
                                   if sum(r["experts"] == n for r in runs) > 1 else None}
                               for k in KEYS if all(k in r for r in runs if r["experts"] == n)}
                           for n in sorted({r["experts"] for r in runs})}
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({
                    "split": "val", "set": {"references": stats["references"], "images": stats["crops"],
                                            "words_per_reference": stats["words_per_reference"]},
                    "runs": runs, "summary": summary,
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
                    indent=1) + "\n")
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
