"""How much of CIDEr is length on RSICap-length captions? (issue 13's evaluation question)

pycocoevalcap's CIDEr is CIDEr-D: each image's score is multiplied by exp(-delta^2 / (2 * 6^2)),
delta the candidate's length difference to the reference in PTB tokens. This scores the split's
own reference captions as candidates, intact and edited (last one or two sentences dropped, one
or two sentences appended), with the penalty (`CIDEr`) and without it (`CIDEr-nolen`), through
the same `rsmoe.evaluation.captions.score` as `evaluate`.

    python bench/cider_length.py [--split val]   ->  bench/results/cider_length.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rsmoe.data.aspects import split_sentences  # noqa: E402
from rsmoe.data.loaders import split_records  # noqa: E402
from rsmoe.evaluation.captions import score  # noqa: E402
from rsmoe.params import load_params  # noqa: E402

EXTRA = ["The ships are all white.", "The planes are parked in a row."]
EDITS = {
    "reference itself": lambda s: s,
    "last sentence dropped": lambda s: s[:-1],
    "last two sentences dropped": lambda s: s[:-2],
    "one sentence appended": lambda s: s + EXTRA[:1],
    "two sentences appended": lambda s: s + EXTRA,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cider_length.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    refs = {a["filename"]: [a["text_output"]] for a, _ in split_records(params.paths.prepared, "captions.json",
                                                                         args.split)}
    rows = []
    for name, edit in EDITS.items():
        cands = {k: " ".join(edit(split_sentences(v[0]))) for k, v in refs.items()}
        s = score(cands, refs, source=f"{args.split} references, {name}")
        rows.append({"candidates": name, **{k: round(s[k], 2) for k in ("CIDEr", "CIDEr-nolen", "length_gap",
                                                                          "length_factor", "BLEU-4", "METEOR")}})
        print(json.dumps(rows[-1]), flush=True)
    out = {"split": args.split, "images": len(refs), "rows": rows,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
