"""Do the concept heads gain from flipped and rotated train crops? (issue 13: theme and grounding)

The small preset's scene and object heads (`rsmoe.training.concepts`) are linear maps of the
mean and std of the standardised image tokens, fitted once on the train crops. The learning curve
of `bench/count_probe.py` says the scene head needs ~2000 train crops for ~90 % on val; the
default corpus has 304. An aerial crop has no "up": its 8 dihedral views (identity, two flips,
three rotations, two transposes) show the same scene type and the same classes, and the frozen
CNN gives each view other features. This probe encodes every train and `--split` crop in each
view with the preset's own encoder and LayerNorm, standardises with the train split's plain
statistics (as Stage I does), and fits the heads with the pipeline's own `_fit_linear` and L2 on:

- `plain`: the train crops as they are (what the pipeline does now);
- `flips`: + horizontal and vertical flips (3 views);
- `d4`: all 8 views;

scoring on the plain `--split` crops (`acc`) and with the logits averaged over the same views
(`tta`, test-time augmentation: would cost 8 encoder passes per image at inference). The L2 is
the pipeline's, and divided by the number of views (the same weight per distinct crop).

    python bench/augment_probe.py [--split val]   ->  bench/results/augment_probe.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rsmoe.data.images import DIHEDRAL_VIEWS, dihedral_view, load_rgb  # noqa: E402
from rsmoe.model import get_preset  # noqa: E402
from rsmoe.model.encoders import build_image_encoder, preprocess  # noqa: E402
from rsmoe.params import load_params  # noqa: E402
from rsmoe.training.concepts import OBJECT_L2, SCENE_L2, _fit_linear, presence_errors  # noqa: E402
from rsmoe.training.data import load_examples  # noqa: E402

SETS = {"plain": ["identity"], "flips": ["identity", "flip_lr", "flip_tb"], "d4": list(DIHEDRAL_VIEWS)}


def unique_annotated(prepared: Path, split: str, experts: int) -> list:
    seen: set = set()
    return [e for e in load_examples(prepared, split, experts) if e.content and not (e.image in seen or seen.add(e.image))]


def view_tokens(encoder, spec, examples: list) -> torch.Tensor:
    """(views, N, T, D) image tokens of every example in every view."""
    out = []
    for view in DIHEDRAL_VIEWS:
        rows = []
        for i in range(0, len(examples), 16):
            images = [dihedral_view(load_rgb(e.image), view) for e in examples[i:i + 16]]
            with torch.no_grad():
                rows.append(encoder(preprocess(images, spec)).float())
        out.append(torch.cat(rows))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "augment_probe.json"))
    args = ap.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(os.cpu_count() or 1)
    prepared = params.paths.prepared if params.paths.prepared.is_absolute() else ROOT / params.paths.prepared
    train = unique_annotated(prepared, "train", params.model.experts)
    held = unique_annotated(prepared, args.split, params.model.experts)
    spec = get_preset(params.model.preset).image_encoder
    if spec.kind != "efficientnet-lite0":
        raise SystemExit(f"model.preset {params.model.preset}: this probe is for the small preset's concept heads")
    encoder = build_image_encoder(spec)
    t0 = time.perf_counter()
    xt, xh = view_tokens(encoder, spec, train), view_tokens(encoder, spec, held)
    encode_s = time.perf_counter() - t0
    mu, sd = xt[0].mean((0, 1)), xt[0].std((0, 1)) + 1e-5

    def pooled(x):
        x = (x - mu) / sd
        return torch.cat([x.mean(-2), x.std(-2)], -1)  # (views, N, 2 D)

    pt, ph = pooled(xt), pooled(xh)
    types = sorted({e.content["scene_type"] for e in train})
    classes = sorted({c for e in train for c, n in e.content["counts"].items() if n > 0})
    s_train = torch.tensor([types.index(e.content["scene_type"]) for e in train])
    s_held = torch.tensor([types.index(e.content["scene_type"]) if e.content["scene_type"] in types else -1
                           for e in held])
    p_train = torch.tensor([[float(e.content["counts"].get(c, 0) > 0) for c in classes] for e in train])
    p_held = torch.tensor([[e.content["counts"].get(c, 0) > 0 for c in classes] for e in held]).tolist()
    names = list(DIHEDRAL_VIEWS)
    result = {"split": args.split, "train_crops": len(train), "eval_crops": len(held), "encode_s": round(encode_s, 1),
              "scene_l2": SCENE_L2, "object_l2": OBJECT_L2, "sets": {}}
    for name, views in SETS.items():
        idx = [names.index(v) for v in views]
        x = pt[idx].reshape(-1, pt.shape[-1])
        row = {"views": views}
        for l2_name, div in (("pipeline_l2", 1), ("l2_per_crop", len(idx))):
            w, b = _fit_linear(x, s_train.repeat(len(idx)), len(types), F.cross_entropy, SCENE_L2 / div)
            logits = ph[idx] @ w.t() + b
            scene = {"acc": round(100 * float((logits[0].argmax(1) == s_held).float().mean()), 2),
                     "tta": round(100 * float((logits.softmax(-1).mean(0).argmax(1) == s_held).float().mean()), 2)}
            w, b = _fit_linear(x, p_train.repeat(len(idx), 1), len(classes), F.binary_cross_entropy_with_logits,
                               OBJECT_L2 / div)
            logits = ph[idx] @ w.t() + b
            objects = {"acc": presence_errors((logits[0] > 0).tolist(), p_held),
                       "tta": presence_errors((logits.sigmoid().mean(0) > 0.5).tolist(), p_held)}
            row[l2_name] = {"scene_accuracy": scene, "objects": objects}
        print(json.dumps({name: row}), flush=True)
        result["sets"][name] = row
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
