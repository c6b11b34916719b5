"""A training-only content loss on the image path: linear read-outs of the Q-Former's projected
query outputs predict what the crop's annotations say it shows (its scene type, and how many
objects of each category: log(1 + n)). The caption loss reaches the Q-Former only through the
frozen LLM, one token at a time; this loss tells it directly what a caption will need.

The heads exist only while a stage trains (`train.content_loss` > 0): they are not part of the
saved model, the ONNX graphs or inference. Records without object annotations (human captions)
add nothing to the loss.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ContentHeads(nn.Module):
    def __init__(self, n_queries: int, dim: int, scene_types: Sequence[str], categories: Sequence[str]):
        super().__init__()
        self.n_queries = n_queries
        self.scene_types = list(scene_types)
        self.categories = list(categories)
        self.scene = nn.Linear(n_queries * dim, len(self.scene_types)) if self.scene_types else None
        self.counts = nn.Linear(n_queries * dim, len(self.categories)) if self.categories else None

    @classmethod
    def for_examples(cls, examples: Sequence, n_queries: int, dim: int) -> "ContentHeads | None":
        """Heads sized by the train examples' scene types and categories; None when no example
        carries annotations."""
        contents = [e.content for e in examples if getattr(e, "content", None)]
        if not contents:
            return None
        scenes = sorted({c["scene_type"] for c in contents if c.get("scene_type")})
        categories = sorted({k for c in contents for k in c["counts"]})
        return cls(n_queries, dim, scenes, categories)

    def loss(self, vlm_features: torch.Tensor, contents: Sequence[dict | None]) -> torch.Tensor | None:
        """vlm_features (B, Q + G, D): the scene-type cross-entropy plus the mean squared error
        of log(1 + count) per category, over the images that carry annotations; None if none does."""
        rows = [i for i, c in enumerate(contents) if c]
        if not rows:
            return None
        x = vlm_features[rows, :self.n_queries].flatten(1).float()
        total = x.new_zeros(())
        if self.scene is not None:
            target = torch.tensor([self.scene_types.index(contents[i]["scene_type"])
                                   if contents[i].get("scene_type") in self.scene_types else -100 for i in rows],
                                  device=x.device)
            if (target >= 0).any():
                total = total + F.cross_entropy(self.scene(x), target, ignore_index=-100)
        if self.counts is not None:
            target = torch.tensor([[float(contents[i]["counts"].get(k, 0)) for k in self.categories] for i in rows],
                                  device=x.device).log1p()
            total = total + F.mse_loss(self.counts(x), target)
        return total


def attach_content_heads(model: nn.Module, examples: Sequence, weight: float, seed: int) -> ContentHeads | None:
    """Heads as `model.content_heads` (so the optimiser and the resumable checkpoint hold them)
    when `weight` > 0 and the examples carry annotations; remove them with `detach_content_heads`
    before the model is saved."""
    if weight <= 0:
        return None
    with torch.random.fork_rng():  # their initialisation follows train.seed, not what ran before
        torch.manual_seed(seed)
        heads = ContentHeads.for_examples(examples, model.preset.qformer.num_query_tokens,
                                          model.vlm.projection.out_features)
    if heads is not None:
        model.content_heads = heads.to(model.device)
    return heads


def detach_content_heads(model: nn.Module) -> None:
    if "content_heads" in model._modules:
        del model.content_heads


def with_content_loss(out, heads: ContentHeads | None, weight: float, vlm_features: torch.Tensor, batch: Sequence):
    """`out` (a ModelOutput) with `weight` x the content loss of `batch` added, and the content
    loss logged beside the caption losses (`loss_content` in the step history)."""
    if heads is None:
        return out
    extra = heads.loss(vlm_features, [getattr(e, "content", None) for e in batch])
    if extra is None:
        return out
    return type(out)(out.loss + weight * extra, {**out.losses, "content": extra}, out.tokens)


def content_only(model: nn.Module, heads: ContentHeads, image_tokens: torch.Tensor, batch: Sequence):
    """The content loss alone (the warm-up of the image path before the caption loss): the
    Q-Former, its queries and projection, and no LLM."""
    from rsmoe.model.rsmoe import ModelOutput

    feats = model.vlm_features(image_tokens, [e.instruction for e in batch])
    loss = heads.loss(feats, [getattr(e, "content", None) for e in batch])
    if loss is None:  # no annotated image in this batch: nothing to learn, a zero that keeps the graph
        loss = feats.sum() * 0
    return ModelOutput(loss, {"content": loss}, {})
