"""Where the image gets lost between the image encoder and the words, measured on a trained
Stage I model (the diagnosis the model issue asks for). On the `--split` crops (val: tune on
val, the test split only reports), with the train split to fit the probes:

- `probe`: a linear probe's scene-type accuracy from (a) the mean and std of the frozen image
  tokens F_I and (b) the Q-Former's query outputs (before the projection), fitted on the train
  split; beside the majority type. Is the information there, and does it survive the Q-Former?
- `llm_input`: what the LLM receives: the norm of the projected query outputs F_VLM against the
  median norm of its token embeddings, and how much F_VLM differs between images (std across
  images / RMS).
- `attention`: the share of the LLM's attention (mean over layers, heads and caption positions)
  that lands on the image tokens, beside their share of the positions attended.
- `blind_gap`: the teacher-forced caption loss with each crop's own image against another
  crop's (a derangement), in % of the loss: ~0 means the LLM does not use the image at all.

    python bench/image_path.py [--model models/stage1] [--params params.yaml] [--split val]
    -> bench/results/image_path.json
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

from rsmoe.evaluation.baselines import derangement  # noqa: E402
from rsmoe.model.rsmoe import STAGE1, Row  # noqa: E402
from rsmoe.params import load_params  # noqa: E402
from rsmoe.training.data import load_examples  # noqa: E402
from rsmoe.training.features import FrozenFeatures  # noqa: E402
from rsmoe.training.stage import load_model  # noqa: E402


def probe(x_train: torch.Tensor, y_train: list[int], x_eval: torch.Tensor, y_eval: list[int], classes: int) -> float:
    """Scene-type accuracy (%) of a standardised linear probe (AdamW, 300 full-batch steps)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt, xe = (x_train - mean) / std, (x_eval - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(xt.shape[1], classes)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=0.1)
    yt = torch.tensor(y_train)
    with torch.enable_grad():  # callers measure under no_grad
        for _ in range(300):
            loss = F.cross_entropy(head(xt), yt)
            loss.backward()
            opt.step()
            opt.zero_grad()
    with torch.no_grad():
        return round(100.0 * (head(xe).argmax(1) == torch.tensor(y_eval)).float().mean().item(), 2)


def query_outputs(model, image_tokens: torch.Tensor, instructions: list[str]) -> torch.Tensor:
    """The Q-Former's query outputs (B, Q, H), before the projection to the LLM width."""
    captured = {}
    hook = model.vlm.projection.register_forward_hook(lambda m, inp, out: captured.update(x=inp[0]))
    try:
        model.vlm_features(image_tokens, instructions)
    finally:
        hook.remove()
    return captured["x"]


def caption_loss(model, image_tokens: torch.Tensor, examples, batch: int = 8) -> float:
    """The Stage I training loss (token mean per batch, weighted by images) of `examples`, each
    captioned from the matching row of `image_tokens`."""
    total = 0.0
    for i in range(0, len(examples), batch):
        part = examples[i:i + batch]
        out = model.forward_stage1([e.caption for e in part], image_tokens=image_tokens[i:i + batch],
                                   instructions=[e.instruction for e in part])
        total += out.loss.item() * len(part)
    return total / len(examples)


def image_attention(model, feats: torch.Tensor, examples, batch: int = 4) -> dict[str, float]:
    """Mean attention mass on the image positions from the caption positions, and the image
    positions' share of the positions each caption token can attend to."""
    base = model.llm.get_base_model()
    base.config._attn_implementation = "eager"  # attention weights are only returned by eager attention
    n_query = feats.shape[1]
    mass, share = [], []
    model.llm.set_adapter(STAGE1)
    for i in range(0, len(examples), batch):
        part = examples[i:i + batch]
        rows = [Row(b, STAGE1, e.instruction, e.instruction, router=False, target=e.caption) for b, e in enumerate(part)]
        embeds, mask, labels = model._assemble(feats[i:i + batch], rows, left_pad=False)
        out = base(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
        att = torch.stack(out.attentions).mean((0, 2))  # (B, L, L): mean over layers and heads
        for b in range(len(part)):
            pos = (labels[b] != -100).nonzero()[:, 0] - 1  # positions that predict a caption token
            mass.append(att[b, pos, :n_query].sum(-1).mean().item())
            share.append((n_query / (pos + 1).float()).mean().item())
    return {"image_attention": round(sum(mass) / len(mass), 4), "image_position_share": round(sum(share) / len(share), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--model", type=Path, help="a Stage I model folder (default: paths.models/stage1)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "image_path.json")
    args = ap.parse_args()
    params = load_params(args.params)
    folder = args.model or params.paths.models / "stage1"
    model = load_model(params, folder)
    model.eval()
    features = FrozenFeatures(model, params.paths.features)
    n = params.model.experts
    train, evald = load_examples(params.paths.prepared, "train", n), load_examples(params.paths.prepared, args.split, n)
    records = json.loads((params.paths.prepared / "captions.json").read_text())["annotations"]
    scene = {r["filename"]: r.get("scene_type") for r in records}
    types = sorted({scene[e.image.name] for e in train})
    y_train = [types.index(scene[e.image.name]) for e in train]
    keep = [i for i, e in enumerate(evald) if scene[e.image.name] in types]  # types the probes can name
    y_eval = [types.index(scene[evald[i].image.name]) for i in keep]
    majority = Counter(y_train).most_common(1)[0][0]
    with torch.no_grad():
        fi_train = features.image_tokens([e.image for e in train])
        fi_eval = features.image_tokens([e.image for e in evald])
        q_train = query_outputs(model, fi_train, [e.instruction for e in train])
        q_eval = query_outputs(model, fi_eval, [e.instruction for e in evald])
        result = {"probe": {
            "majority_type": round(100.0 * sum(y == majority for y in y_eval) / len(y_eval), 2),
            "image_tokens_mean_std": probe(torch.cat([fi_train.mean(1), fi_train.std(1)], 1), y_train,
                                           torch.cat([fi_eval.mean(1), fi_eval.std(1)], 1)[keep], y_eval, len(types)),
            "qformer_queries": probe(q_train.flatten(1), y_train, q_eval.flatten(1)[keep], y_eval, len(types)),
        }}
        feats = model.vlm.projection(q_eval)
        emb = model.llm.get_input_embeddings().weight
        result["llm_input"] = {
            "vlm_token_norm": round(feats.norm(dim=-1).mean().item(), 4),
            "embedding_median_norm": round(emb.norm(dim=-1).median().item(), 4),
            "between_image_spread": round((feats.std(0).pow(2).mean().sqrt() / feats.pow(2).mean().sqrt()).item(), 4),
        }
        own = caption_loss(model, fi_eval, evald)
        other = caption_loss(model, fi_eval[derangement(len(evald))], evald)
        result["blind_gap"] = {"loss": round(own, 4), "blind_loss": round(other, 4),
                               "gap_percent": round(100.0 * (other - own) / own, 3)}
        result["attention"] = image_attention(model, feats, evald)
    result.update(model=str(folder), split=args.split, images=len(evald), train_images=len(train),
                  scene_types=types, date=datetime.date.today().isoformat())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
