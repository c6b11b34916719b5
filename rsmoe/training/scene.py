"""The scene tokens' classifier (`qformer.scene_tokens`), fitted before Stage I.

A linear probe on the mean and std of the frozen (standardised) image tokens names the scene type
of ~80 % of val crops, while Stage I's captions name it on ~60 %: in a few minutes the LLM barely
learns to read the scene from the query and global tokens. So the small preset fits that probe
itself: multinomial logistic regression on the train split's pooled F_I and scene types (L-BFGS,
full batch, L2 `SCENE_L2`; deterministic, seconds on a CPU), and the VLM encoder hands the LLM the
token embeddings of the scene-type names mixed by its probabilities. The classifier is never
trained after this: the caption loss trains what reads it, not what it says.
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F

log = logging.getLogger("rsmoe")

# Chosen on val (small preset, 304 train crops): val accuracy 79.5-81.8 % for every L2 from 1e-4
# to 0.3 (train 99-100 %); 1e-2 sits in the middle of that plateau.
SCENE_L2 = 1e-2


def scene_types(examples: Sequence) -> tuple[str, ...]:
    """The scene types the examples' annotations name (prepared DOTA crops), sorted; () for none."""
    return tuple(sorted({e.content["scene_type"] for e in examples
                         if getattr(e, "content", None) and e.content.get("scene_type")}))


def with_scene_types(preset, examples: Sequence):
    """`preset` with `qformer.scene_types` set from the train examples. Scene tokens stay off (the
    preset says so) when the data names fewer than two scene types (Karpathy and folder sets,
    DOTA scenes without a theme)."""
    if not preset.qformer.scene_tokens:
        return preset
    types = scene_types(examples)
    if len(types) < 2:
        log.warning("qformer.scene_tokens: the train split names %d scene type(s); scene tokens are off", len(types))
        types = ()
    return preset.model_copy(update={"qformer": preset.qformer.model_copy(update={"scene_types": types})})


def phrase_embeddings(model, names: Sequence[str], length: int) -> torch.Tensor:
    """Each name as the LLM's input embeddings of " {name}." (S, length, D), cut or padded with
    the embedding of "." (the end of the phrase) to `length` tokens."""
    tok = model.tokenizer
    dot = tok(".", add_special_tokens=False).input_ids[-1]
    rows = []
    for name in names:
        ids = tok(f" {name}.", add_special_tokens=False).input_ids
        if len(ids) > length:
            log.warning("scene type %r takes %d LLM tokens; qformer.scene_tokens %d keeps the first %d",
                        name, len(ids), length, length)
        rows.append((ids + [dot] * length)[:length])
    embed = model.llm.get_input_embeddings()
    with torch.no_grad():
        return embed(torch.tensor(rows, device=embed.weight.device)).float()


def fit_scene_head(model, features, examples: Sequence, *, l2: float = SCENE_L2) -> dict | None:
    """Fit the model's scene classifier on the examples' images (each once) and scene types, and
    set the names' embeddings; returns the train accuracy and loss, None when the model has no
    scene tokens. `features` is the run's FrozenFeatures (F_I from the cache)."""
    spec = model.preset.qformer
    if not spec.has_scene_tokens:
        return None
    types = list(spec.scene_types)
    labelled = {e.image: e.content["scene_type"] for e in examples
                if getattr(e, "content", None) and e.content.get("scene_type") in types}
    if not labelled:
        raise ValueError("no train example names one of the model's scene types")
    images = list(labelled)
    with torch.no_grad():
        x = torch.cat([model.vlm.pooled(model.vlm.standardized(features.image_tokens([p]))) for p in images]).float()
    y = torch.tensor([types.index(labelled[p]) for p in images], device=x.device)
    weight = torch.zeros(len(types), x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(len(types), device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.t() + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        logits = x @ weight.t() + bias
        summary = {"scene_types": len(types), "images": len(images),
                   "train_accuracy": round((logits.argmax(1) == y).float().mean().item() * 100, 2),
                   "train_loss": round(F.cross_entropy(logits, y).item(), 4), "l2": l2}
    model.vlm.set_scene_head(weight.detach(), bias.detach(), phrase_embeddings(model, types, spec.scene_tokens))
    log.info("scene head: %d types from %d train images, train accuracy %.1f %%", len(types), len(images),
             summary["train_accuracy"])
    return summary


def predict_scenes(model, features, images: Sequence) -> list[str] | None:
    """The scene type the model's classifier names for each image (what its scene tokens say),
    None when the model has no scene tokens."""
    if not model.preset.qformer.has_scene_tokens:
        return None
    types = model.preset.qformer.scene_types
    with torch.no_grad():
        return [types[int(model.vlm.scene_logits(model.vlm.pooled(model.vlm.standardized(
            features.image_tokens([p])))).argmax())] for p in images]


def scene_head_accuracy(predicted: Sequence[str] | None, truth: Sequence[str | None]) -> dict | None:
    """Percent of the images with a known scene type whose predicted one is right."""
    pairs = [(p, t) for p, t in zip(predicted or (), truth) if t]
    if not pairs:
        return None
    return {"accuracy": round(100.0 * sum(p == t for p, t in pairs) / len(pairs), 2), "images": len(pairs)}
