"""Does the image path generalise what the content loss teaches it? (issue 13's image-path question)

The small preset's VLM encoder (Q-Former LoRA, queries, projection) is trained on the content loss
alone (`rsmoe/training/content.py`: scene type + log counts per category, no LLM), as
`train.content_warmup_epochs` does, on the train crops; then its heads are scored on the
`--split` crops (val by default): scene-type accuracy and exact-count accuracy per (crop, class
present in either truth or prediction), beside the majority scene type and the median count of
the train split, and beside the same heads fitted on the frozen image tokens' mean and std
(no Q-Former): is the Q-Former adding anything a linear read-out of F_I lacks?

    python bench/content_probe.py [--epochs 5 20] [--split val] [--image-size 448]
        ->  bench/results/content_probe.json (content_probe_448.json with --image-size 448)

`--image-size` feeds the frozen encoder larger inputs (448 px: 14x14 tokens instead of 7x7),
computed once into the feature cache like the default's: does a count reach the tokens then?
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rsmoe.model import RSMoE, get_preset  # noqa: E402
from rsmoe.params import StageTrainParams, load_params  # noqa: E402
from rsmoe.training.content import ContentHeads, attach_content_heads, content_only  # noqa: E402
from rsmoe.training.data import load_examples  # noqa: E402
from rsmoe.training.features import FrozenFeatures  # noqa: E402
from rsmoe.training.loop import run_training  # noqa: E402
from rsmoe.training.stage import preset_from  # noqa: E402


def scores(scene_logits: torch.Tensor, count_logs: torch.Tensor, heads: ContentHeads, examples) -> dict:
    scene_ok, count_ok, count_n = 0, 0, 0
    for i, e in enumerate(examples):
        scene_ok += heads.scene_types[int(scene_logits[i].argmax())] == e.content["scene_type"]
        pred = {k: round(float(torch.expm1(count_logs[i, j]).clamp(min=0))) for j, k in enumerate(heads.categories)}
        for k in heads.categories:
            truth = e.content["counts"].get(k, 0)
            if truth or pred[k]:
                count_n += 1
                count_ok += truth == pred[k]
    return {"scene_accuracy": round(100 * scene_ok / len(examples), 2),
            "count_accuracy": round(100 * count_ok / max(count_n, 1), 2), "counts_checked": count_n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--epochs", type=float, nargs="+", default=[5, 20])
    ap.add_argument("--image-size", type=int, help="the image encoder's input side (default: the preset's)")
    ap.add_argument("--out", help="default: bench/results/content_probe[_SIZE].json")
    args = ap.parse_args()
    out_path = Path(args.out or ROOT / "bench" / "results" /
                    f"content_probe{'_' + str(args.image_size) if args.image_size else ''}.json")
    params = load_params(args.params)
    torch.set_num_threads(os.cpu_count() or 1)
    train = [e for e in load_examples(params.paths.prepared, "train", params.model.experts) if e.content]
    held = [e for e in load_examples(params.paths.prepared, args.split, params.model.experts) if e.content]
    preset = preset_from(params)
    if args.image_size:
        preset = get_preset(preset.name, experts=params.model.experts, image_encoder={"image_size": args.image_size})
    base = RSMoE(preset, cache=params.paths.cache)
    features = FrozenFeatures(base, params.paths.features)
    features.fit_feature_stats([e.image for e in train])
    tokens = {e.image: features.image_tokens([e.image])[0] for e in train + held}

    # baselines: the train split's majority scene type and median count per class
    probe = ContentHeads.for_examples(train, 1, 1)
    majority = statistics.mode(e.content["scene_type"] for e in train)
    medians = {k: statistics.median(e.content["counts"].get(k, 0) for e in train) for k in probe.categories}
    n = len(held)
    base_scene = torch.zeros(n, len(probe.scene_types))
    base_scene[:, probe.scene_types.index(majority)] = 1
    base_counts = torch.tensor([[medians[k] for k in probe.categories]] * n).log1p()
    result = {"split": args.split, "image_size": preset.image_encoder.image_size,
              "image_tokens": int(next(iter(tokens.values())).shape[0]), "train_crops": len(train), "eval_crops": n,
              "majority": scores(base_scene, base_counts, probe, held), "points": []}

    # linear heads on the mean and std of F_I (no Q-Former), fitted by the same loss and optimiser
    def pooled(e):
        t = tokens[e.image]
        return torch.cat([t.mean(0), t.std(0)])

    x_train = torch.stack([pooled(e) for e in train])
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    linear = ContentHeads.for_examples(train, 1, x_train.shape[1])
    opt = torch.optim.AdamW(linear.parameters(), lr=1e-3, weight_decay=0.05)
    for _ in range(300):
        opt.zero_grad()
        linear.loss(((x_train - mu) / sd)[:, None], [e.content for e in train]).backward()
        opt.step()
    with torch.no_grad():
        x = ((torch.stack([pooled(e) for e in held]) - mu) / sd).flatten(1)
        result["linear_on_F_I"] = scores(linear.scene(x), linear.counts(x), linear, held)

    for epochs in args.epochs:
        model = copy.deepcopy(base)
        heads = attach_content_heads(model, train, 1.0, params.train.seed)
        model.set_stage("image-path")
        with tempfile.TemporaryDirectory() as ckpt:
            out = run_training(model, train, lambda b: content_only(model, heads, torch.stack(
                [tokens[e.image] for e in b]), b), train=params.train, stage=StageTrainParams(epochs=epochs),
                checkpoint_dir=Path(ckpt), run_key="probe", name=f"content {epochs:g} epochs")
        with torch.no_grad():
            feats = model.vlm_features(torch.stack([tokens[e.image] for e in held]), [e.instruction for e in held])
            x = feats[:, :heads.n_queries].flatten(1).float()
            point = {"epochs": epochs, "train_final_loss": out["final_loss"],
                     **scores(heads.scene(x), heads.counts(x), heads, held)}
        print(json.dumps(point), flush=True)
        result["points"].append(point)
    result["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=1))


if __name__ == "__main__":
    main()
