"""Where do object counts live in the frozen image encoder? (issue 13's counting question)

`bench/content_probe.py` showed that the small preset's image tokens (EfficientNet-Lite0's last
feature map, 7x7 at 224 px, 14x14 at 448 px) name the scene type but not how many objects of each
class a crop holds, through the Q-Former or a linear read-out of their mean. Averaging is the
suspect: a count is a *sum* of local evidence. This probe fits two read-outs on each of the
encoder's feature maps (the last block of each stride, and the 1280-channel head), at each
`--sizes` input side, on the train crops, and scores them on the `--split` crops:

- `pooled`: a linear map of the map's per-channel mean and std -> log(1 + count) per class
  (what an attention average can express);
- `density`: a small per-location MLP (C -> 64 -> classes, softplus) whose outputs are summed
  over the map -> count per class (a density map, as crowd counting does).

Exact-count accuracy is taken over the (crop, class) pairs where the truth or the prediction is
non-zero, as `content_probe.py` does, beside the train split's median count per class; the mean
absolute error over every (crop, class) pair is given too. Two seeds per density probe.

    python bench/count_probe.py [--sizes 224 512] [--split val]   ->  bench/results/count_probe.json

A learning curve on more crops than the default corpus holds (written by `rsmoe synth --seed 7
--scenes 640` and `rsmoe prepare`; val crops unchanged), also scoring a linear scene-type read-out:

    python bench/count_probe.py --sizes 224 --train-prepared OTHER/prepared --train-crops 304 1216 100000 \
        --maps stride32_c192 stride32_c320 head_c1280 --out bench/results/count_probe_curve.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rsmoe.model import get_preset  # noqa: E402
from rsmoe.model.encoders import build_image_encoder, preprocess  # noqa: E402
from rsmoe.data.images import load_rgb  # noqa: E402
from rsmoe.params import load_params  # noqa: E402
from rsmoe.training.data import load_examples  # noqa: E402


def feature_maps(size: int, *groups: list[Path]) -> list[dict[str, torch.Tensor]]:
    """Per group of images, {name: (N, C, H, W)} float16: the last block output of each stride and
    the head. One encoder for every group; each group is batched on its own."""
    spec = get_preset("small", image_encoder={"image_size": size}).image_encoder
    net = build_image_encoder(spec).backbone
    out = []
    for images in groups:
        maps: dict[str, list[torch.Tensor]] = {}
        for i in range(0, len(images), 8):
            x = preprocess([load_rgb(p) for p in images[i:i + 8]], spec)
            with torch.no_grad():
                h = net._swish(net._bn0(net._conv_stem(x)))
                outs = {}
                for block in net._blocks:
                    h = block(h)
                    outs[f"stride{x.shape[-1] // h.shape[-1]}_c{h.shape[1]}"] = h  # last block per stride wins
                outs["head_c1280"] = net._swish(net._bn1(net._conv_head(h)))
            for k, v in outs.items():
                if not k.startswith(("stride2_", "stride4_")):
                    maps.setdefault(k, []).append(v.half())
        out.append({k: torch.cat(v) for k, v in maps.items()})
    return out


def count_scores(pred: torch.Tensor, truth: torch.Tensor) -> dict:
    p = pred.round().clamp(min=0)
    checked = (p > 0) | (truth > 0)
    return {"count_accuracy": round(100 * float((p == truth)[checked].float().mean()), 2),
            "counts_checked": int(checked.sum()),
            "mean_abs_error": round(float((p - truth).abs().mean()), 3)}


class Density(nn.Module):
    """Per-location MLP -> non-negative density per class, summed over the map."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 64, 1), nn.GELU(), nn.Conv2d(64, classes, 1), nn.Softplus())

    def forward(self, x):  # (B, C, H, W) -> (B, classes) counts
        return self.net(x).sum((2, 3))

    def log_counts(self, x):
        return torch.log1p(self(x))


class Pooled(nn.Module):
    """Linear map of pooled features -> log(1 + count) per class."""

    def __init__(self, features: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(features, classes)

    def log_counts(self, x):
        return self.linear(x)

    def forward(self, x):
        return torch.expm1(self.linear(x)).clamp(min=0)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int, batch: int = 32) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = nn.functional.mse_loss(model.log_counts(x[idx].float()), torch.log1p(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def fit_scene(x: torch.Tensor, labels: torch.Tensor, classes: int, steps: int) -> nn.Module:
    torch.manual_seed(0)
    lin = nn.Linear(x.shape[1], classes)
    opt = torch.optim.AdamW(lin.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(lin(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--train-prepared", help="fit the probes on this prepared folder's train split "
                    "(default: params' paths.prepared); scored on params' --split crops either way")
    ap.add_argument("--train-crops", type=int, nargs="+", help="fit on the first N train crops (a seeded "
                    "shuffle) for each N: a learning curve (default: all)")
    ap.add_argument("--maps", nargs="+", help="only these feature maps (e.g. stride32_c192 head_c1280)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "count_probe.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(os.cpu_count() or 1)
    train = [e for e in load_examples(args.train_prepared or params.paths.prepared, "train", params.model.experts)
             if e.content]
    train = [train[i] for i in torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    held = [e for e in load_examples(params.paths.prepared, args.split, params.model.experts) if e.content]
    classes = sorted({k for e in train + held for k in e.content["counts"]})
    scenes = sorted({e.content["scene_type"] for e in train + held})

    def counts(examples):
        return torch.tensor([[float(e.content["counts"].get(k, 0)) for k in classes] for e in examples])

    y_train, y_held = counts(train), counts(held)
    s_train = torch.tensor([scenes.index(e.content["scene_type"]) for e in train])
    s_held = torch.tensor([scenes.index(e.content["scene_type"]) for e in held])
    median = torch.tensor([statistics.median(y_train[:, j].tolist()) for j in range(len(classes))])
    majority = statistics.mode(s_train.tolist())
    result = {"split": args.split, "train_prepared": str(args.train_prepared or "params"), "train_crops": len(train),
              "eval_crops": len(held), "classes": classes,
              "median_count": count_scores(median.expand_as(y_held), y_held),
              "majority_scene_accuracy": round(100 * float((s_held == majority).float().mean()), 2), "maps": []}
    print(json.dumps({k: result[k] for k in ("median_count", "majority_scene_accuracy")}), flush=True)
    for size in args.sizes:
        t0 = time.perf_counter()
        tr, he = feature_maps(size, [e.image for e in train], [e.image for e in held])
        print(f"{size} px: features in {time.perf_counter() - t0:.0f} s", flush=True)
        for name in tr:
            if args.maps and name not in args.maps:
                continue
            for n in args.train_crops or [len(train)]:
                xt, xh = tr[name][:n].float(), he[name].float()
                mu, sd = xt.mean((0, 2, 3), keepdim=True), xt.std((0, 2, 3), keepdim=True) + 1e-5
                xt, xh = (xt - mu) / sd, (xh - mu) / sd
                row = {"image_size": size, "map": name, "grid": list(xt.shape[2:]), "channels": xt.shape[1],
                       "train_crops": len(xt)}
                # pooled: linear on mean and std, predicting log(1 + count) and the scene type
                pt = torch.cat([xt.mean((2, 3)), xt.std((2, 3))], 1)
                ph = torch.cat([xh.mean((2, 3)), xh.std((2, 3))], 1)
                torch.manual_seed(0)
                pooled = fit(Pooled(pt.shape[1], len(classes)), pt, y_train[:n], args.steps, 0)
                scene = fit_scene(pt, s_train[:n], len(scenes), args.steps)
                with torch.no_grad():
                    row["pooled"] = count_scores(pooled(ph), y_held)
                    row["pooled"]["scene_accuracy"] = round(100 * float((scene(ph).argmax(1) == s_held)
                                                                        .float().mean()), 2)
                row["density"] = []
                for seed in args.seeds:
                    torch.manual_seed(seed)
                    t1 = time.perf_counter()
                    dens = fit(Density(xt.shape[1], len(classes)), xt, y_train[:n], args.steps, seed)
                    with torch.no_grad():
                        row["density"].append({"seed": seed, **count_scores(dens(xh), y_held),
                                               "fit_s": round(time.perf_counter() - t1, 1)})
                print(json.dumps(row), flush=True)
                result["maps"].append(row)
        del tr, he
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
