"""Do the frozen image tokens say where each class lies in the frame? (issue 13: the relations expert)

On the QA-dialogue default the relations expert's position sentences collapsed to "The small
vehicles are spread all over the image." (32 of 36 test captions; 1 of 36 references). The concept
heads (`rsmoe.training.concepts`) read the mean and std of the tokens: no place in the frame. This
probe asks whether the small preset's 7x7 EfficientNet-Lite0 tokens (224 px) carry the place: the
frame is cut into the 3x3 cells the captions' position rules use (`rsmoe.data.describe._CELLS`),
each cell's feature is the mean of the standardised tokens whose centre lies in it beside the
image's mean (context), and one logistic regression per class (the pipeline's `_fit_linear`, L2
as the object head's) says whether an object of the class has its centre in the cell. Fitted on
the train crops, scored on `--split` crops:

- `cells`: per (crop, class present, cell): accuracy, precision and recall of "occupied", beside
  the train prior of each (class, cell) thresholded at 0.5 (the best a probe blind to the crop
  does, per cell);
- `placement`: per (crop, class present), the caption's position phrase (`_placement`: one cell,
  one edge, one half, mostly one cell, or spread) from the objects' true centres, against the
  same rule run on the predicted cells (one pseudo-object at the centre of each, the most likely
  cell when none passes 0.5), beside always writing the train split's most frequent phrase.

    python bench/position_probe.py [--split val]   ->  bench/results/position_probe.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rsmoe.data.describe import cells_placement, centres_placement  # noqa: E402
from rsmoe.data.images import load_rgb  # noqa: E402
from rsmoe.model import get_preset  # noqa: E402
from rsmoe.model.encoders import build_image_encoder, preprocess  # noqa: E402
from rsmoe.params import load_params  # noqa: E402
from rsmoe.training.concepts import OBJECT_L2, _fit_linear, _masked_bce  # noqa: E402


def crops(prepared: Path, split: str) -> list[dict]:
    anns = json.loads((prepared / "captions.json").read_text())["annotations"]
    seen: set = set()
    return [a for a in anns if a["split"] == split and not (a["filename"] in seen or seen.add(a["filename"]))]


def tokens(encoder, spec, prepared: Path, rows: list[dict]) -> torch.Tensor:
    """(N, T, D) image tokens, one image per forward."""
    out = []
    with torch.no_grad():
        for a in rows:
            out.append(encoder(preprocess([load_rgb(prepared / "images" / a["filename"])], spec))[0].float())
    return torch.stack(out)


def cell_features(x: torch.Tensor) -> torch.Tensor:
    """(N, T, D) standardised tokens on a square grid -> (N, 9, 2 D): each 3x3 cell's mean token
    beside the image's mean (cell index = 3 * row + column, row 0 the top)."""
    side = int(round(x.shape[1] ** 0.5))
    cell = [int((i + 0.5) / side * 3) for i in range(side)]
    grid = x.view(x.shape[0], side, side, -1)
    means = []
    for r in range(3):
        for c in range(3):
            rows, cols = [i for i in range(side) if cell[i] == r], [i for i in range(side) if cell[i] == c]
            means.append(grid[:, rows][:, :, cols].mean((1, 2)))
    cells = torch.stack(means, 1)
    return torch.cat([cells, x.mean(1, keepdim=True).expand_as(cells)], -1)


def occupancy(rows: list[dict], classes: list[str]) -> torch.Tensor:
    """(N, 9, K): 1 where an object of the class has its centre in the cell."""
    y = torch.zeros(len(rows), 9, len(classes))
    for n, a in enumerate(rows):
        size = float(a["window"][2])
        for o in a["objects"]:
            if o["category"] in classes:
                x, yy = (min(max(v / size, 0.0), 0.999) for v in o["center"])
                y[n, 3 * int(yy * 3) + int(x * 3), classes.index(o["category"])] = 1
    return y


def true_phrases(rows: list[dict], classes: list[str]) -> dict[tuple[int, str], str]:
    out = {}
    for n, a in enumerate(rows):
        size = float(a["window"][2])
        for c in {o["category"] for o in a["objects"]} & set(classes):
            out[n, c] = centres_placement([(min(o["center"][0] / size, 0.999), min(o["center"][1] / size, 0.999))
                                           for o in a["objects"] if o["category"] == c])
    return out


def predicted_phrase(prob: torch.Tensor) -> str:
    """The position rule on one pseudo-object at the centre of each cell predicted occupied
    (`cells_placement`, what the concept tokens' position head does)."""
    return cells_placement((prob > 0.5).nonzero()[:, 0].tolist() or [int(prob.argmax())])


def cell_scores(pred: torch.Tensor, y: torch.Tensor, present: torch.Tensor) -> dict:
    """Accuracy / precision / recall of "occupied" over the cells of the classes present."""
    mask = present.unsqueeze(1).expand_as(y).bool()
    p, t = pred[mask].bool(), y[mask].bool()
    tp = (p & t).sum().item()
    return {"accuracy": round(100 * (p == t).float().mean().item(), 2),
            "precision": round(100 * tp / max(p.sum().item(), 1), 2),
            "recall": round(100 * tp / max(t.sum().item(), 1), 2),
            "pairs": int(mask.sum().item())}


def head_grid(ft, yt, fh, yh, truth: dict, classes: list[str]) -> dict:
    """The pipeline's position head (`qformer.position_tokens`): the same features, but fitted only
    on the (crop, cell) pairs of the classes present in the crop (at inference it is asked only
    about the classes the object head names), for each L2; beside it the ceiling of its rule, the
    phrase `cells_placement` gives on the true cells."""
    present_t = (yt.sum(1) > 0).float()
    mask = present_t.unsqueeze(1).expand_as(yt).reshape(-1, len(classes))
    out = {"rule_on_true_cells": round(100 * sum(
        cells_placement(yh[n, :, classes.index(c)].nonzero()[:, 0].tolist()) == v for (n, c), v in truth.items())
        / len(truth), 2)}
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1):
        w, b = _fit_linear(ft.reshape(-1, ft.shape[-1]), yt.reshape(-1, len(classes)), len(classes),
                           _masked_bce(mask), l2)
        prob = torch.sigmoid(fh @ w.t() + b)
        said = {k: predicted_phrase(prob[k[0], :, classes.index(k[1])]) for k in truth}
        out[f"l2={l2:g}"] = {"cells": cell_scores((prob > 0.5).float(), yh, (yh.sum(1) > 0).float()),
                             "phrase_accuracy": round(100 * sum(said[k] == v for k, v in truth.items()) / len(truth), 2),
                             "scattered_said": round(100 * sum(v == "scattered" for v in said.values()) / len(truth), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "position_probe.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(os.cpu_count() or 1)
    prepared = params.paths.prepared if params.paths.prepared.is_absolute() else ROOT / params.paths.prepared
    train, held = crops(prepared, "train"), crops(prepared, args.split)
    spec = get_preset(params.model.preset).image_encoder
    encoder = build_image_encoder(spec)
    xt, xh = tokens(encoder, spec, prepared, train), tokens(encoder, spec, prepared, held)
    mu, sd = xt.mean((0, 1)), xt.std((0, 1)) + 1e-5
    ft, fh = cell_features((xt - mu) / sd), cell_features((xh - mu) / sd)
    classes = sorted({o["category"] for a in train for o in a["objects"]})
    yt, yh = occupancy(train, classes), occupancy(held, classes)
    present_h = (yh.sum(1) > 0).float()
    w, b = _fit_linear(ft.reshape(-1, ft.shape[-1]), yt.reshape(-1, len(classes)), len(classes),
                       F.binary_cross_entropy_with_logits, OBJECT_L2)
    prob = torch.sigmoid(fh @ w.t() + b)  # (N, 9, K)
    prior = (yt.mean(0, keepdim=True) > 0.5).float().expand_as(yh)
    truth = true_phrases(held, classes)
    train_truth = true_phrases(train, classes)
    majority = Counter(train_truth.values()).most_common(1)[0][0]
    said = {k: predicted_phrase(prob[k[0], :, classes.index(k[1])]) for k in truth}
    pairs = len(truth)
    result = {
        "split": args.split, "train_crops": len(train), "eval_crops": len(held),
        "grid": "{0}x{0}".format(int(round(xt.shape[1] ** 0.5))),
        "cells": {"probe": cell_scores((prob > 0.5).float(), yh, present_h),
                  "train_prior": cell_scores(prior, yh, present_h)},
        "placement": {
            "pairs": pairs, "majority_phrase": majority,
            "probe_accuracy": round(100 * sum(said[k] == v for k, v in truth.items()) / pairs, 2),
            "majority_accuracy": round(100 * sum(v == majority for v in truth.values()) / pairs, 2),
            "probe_scattered_said": round(100 * sum(v == "scattered" for v in said.values()) / pairs, 2),
            "truth_scattered": round(100 * sum(v == "scattered" for v in truth.values()) / pairs, 2),
            "truth_phrases": dict(Counter(truth.values()).most_common(8)),
        },
        "head": head_grid(ft, yt, fh, yh, truth, classes),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
