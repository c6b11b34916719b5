"""Concept tokens (small preset): what the image shows, handed to the LLM as words.

Linear probes on the mean and std of the frozen (standardised) image tokens name the scene type
of ~80 % of val crops and the classes present with 14 % hallucinated / 20 % missed, while Stage
I's captions name the scene type on ~60 % of crops and half the classes they mention are absent:
in a few CPU minutes the LLM barely learns to read the scene and the objects from the query and
global tokens. So the small preset fits those probes itself, before Stage I, on the train split:

- scene tokens (`qformer.scene_tokens`): multinomial logistic regression on the scene types; the
  LLM gets the token embeddings of the scene-type names mixed by its probabilities;
- object tokens (`qformer.object_tokens` slots): one logistic regression per DOTA class on its
  presence; the LLM gets the names of the classes it finds present (probability > 0.5), most
  likely first, each slot " small vehicles," as token embeddings, "." in the empty slots.

- position tokens (`qformer.position_tokens`, after each object slot's name): one logistic
  regression per class on each 3x3 cell's mean token (beside the image's mean) says whether an
  object of the class has its centre there, fitted on the crops where the class is present; the
  cells it finds give the captions' position phrase ("in the upper half", `cells_placement`).

All are fitted with L-BFGS, full batch, deterministic, in seconds on a CPU, and never trained
after: the caption loss trains what reads them, not what they say. The classes come from the
train split's annotations (`with_concepts`); a set without them (Karpathy, folder) has neither.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rsmoe.data.describe import NOUNS, centres_placement, unit_centre
from rsmoe.data.images import DIHEDRAL_VIEWS, dihedral_view
from rsmoe.model.presets import OBJECT_NAME_TOKENS
from rsmoe.model.vlm import PLACEMENTS, placement_indices

log = logging.getLogger("rsmoe")

# Chosen on val (small preset, 304 train crops, one fit each; bench notes in the README):
# scene: val accuracy 79.5-81.8 % for every L2 from 1e-4 to 0.3, 1e-2 in the middle of that plateau;
# objects: L2 1e-3 / 1e-2 / 1e-1 gave hallucinated 13.6 / 15.2 / 19.5 % and missed 19.8 / 24.3 / 40.5 %.
SCENE_L2 = 1e-2
OBJECT_L2 = 1e-3
# positions (bench/position_probe.py, val, the caption's phrase from the head's cells): L2 1e-4 / 1e-3 / 1e-2
# / 1e-1 gave 33.3 / 34.2 / 37.8 / 31.5 % (always "scattered": 17.1 %; the rule on the true cells: 71.2 %)
POSITION_L2 = 1e-2


def scene_types(examples: Sequence) -> tuple[str, ...]:
    """The scene types the examples' annotations name (prepared DOTA crops), sorted; () for none."""
    return tuple(sorted({e.content["scene_type"] for e in examples
                         if getattr(e, "content", None) and e.content.get("scene_type")}))


def object_classes(examples: Sequence) -> tuple[str, ...]:
    """The DOTA classes present in at least one example's annotations, sorted."""
    return tuple(sorted({c for e in examples if getattr(e, "content", None) for c, n in e.content["counts"].items()
                         if n > 0}))


def with_concepts(preset, examples: Sequence):
    """`preset` with `qformer.scene_types` and `object_classes` set from the train examples. Each
    kind of token stays off (the preset's number kept, its classes empty) when the data names too
    few: fewer than two scene types, or no object annotations (Karpathy and folder sets)."""
    q = preset.qformer
    update = {}
    if q.scene_tokens:
        types = scene_types(examples)
        if len(types) < 2:
            log.warning("qformer.scene_tokens: the train split names %d scene type(s); scene tokens are off", len(types))
        update["scene_types"] = types if len(types) >= 2 else ()
    if q.object_tokens:
        classes = object_classes(examples)
        if not classes:
            log.warning("qformer.object_tokens: the train split has no object annotations; object tokens are off")
        update["object_classes"] = classes
    if not update:
        return preset
    return preset.model_copy(update={"qformer": q.model_copy(update=update)})


def object_name(category: str) -> str:
    """How captions write a class: the plural noun ("small vehicles")."""
    return NOUNS.get(category, (None, category.replace("-", " ")))[1]


def phrase_embeddings(model, phrases: Sequence[str], length: int) -> torch.Tensor:
    """Each phrase as the LLM's input embeddings (S, length, D), cut or padded with the embedding
    of "." (the end of a phrase, and the whole of an empty slot) to `length` tokens."""
    tok = model.tokenizer
    dot = tok(".", add_special_tokens=False).input_ids[-1]
    rows = []
    for phrase in phrases:
        ids = tok(phrase, add_special_tokens=False).input_ids if phrase else []
        if len(ids) > length:
            log.warning("%r takes %d LLM tokens; %d are kept", phrase, len(ids), length)
        rows.append((ids + [dot] * length)[:length])
    embed = model.llm.get_input_embeddings()
    with torch.no_grad():
        return embed(torch.tensor(rows, device=embed.weight.device)).float()


def placement_phrase(placement: str) -> str:
    """How a slot's position tokens write a PLACEMENTS phrase, short ("in the top-left corner of the
    image" -> " top-left corner.", 5 SmolLM2 tokens, the longest): " upper half.", " spread all over."."""
    if placement == "scattered":
        return " spread all over."
    where = placement.removesuffix(" of the image").split(" ", 2)[-1]  # "in the ", "at the ", "on the "
    return f" {where}."


def _pooled(model, features, images: Sequence, view: str = "identity", cells: bool = False):
    """Each image's pooled standardised F_I (N, 2 D_img) in `view`, and with `cells` its
    `cell_features` too (N, 9, 2 D_img)."""
    bar = tqdm(images, desc=f"concept views ({view})", unit="img", disable=view == "identity", leave=False)
    pooled, cell = [], []
    with torch.no_grad():
        for p in bar:
            tokens = model.vlm.standardized(features.image_tokens([p], view))
            pooled.append(model.vlm.pooled(tokens))
            if cells:
                cell.append(model.vlm.cell_features(tokens))
    return torch.cat(pooled).float(), torch.cat(cell).float() if cells else None


def _view_cells(view: str) -> list[int]:
    """For each 3x3 cell of the image in `view`, the cell of the original image it shows."""
    return dihedral_view(torch.arange(9).view(3, 3, 1).numpy(), view).reshape(-1).tolist()


def _masked_bce(mask: torch.Tensor):
    """Binary cross-entropy averaged over the entries where `mask` is 1 (the others do not count)."""
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        return (per * mask).sum() / mask.sum().clamp(min=1)
    return loss


def _fit_linear(x: torch.Tensor, y: torch.Tensor, n_out: int, loss_fn, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    weight = torch.zeros(n_out, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(n_out, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(x @ weight.t() + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


@dataclass
class _Labelled:
    """The annotated train images and what the heads are fitted on: pooled F_I in the first V of
    DIHEDRAL_VIEWS (V, N, 2 D_img; [0] is the image as it is), the scene-type index (N,; -1 where
    the type is not one of the model's), object presence (N, K) and, with position tokens, the
    cell features (V, N, 9, 2 D_img) and cell occupancy in each view (V, N, 9, K)."""

    images: list
    x: torch.Tensor
    scene: torch.Tensor
    present: torch.Tensor | None
    cells: torch.Tensor | None = None
    occupied: torch.Tensor | None = None


def _labelled(model, features, examples: Sequence, views: int = 1) -> _Labelled:
    q = model.preset.qformer
    annotated = {e.image: e.content for e in examples if getattr(e, "content", None)}
    images = list(annotated)
    read = [_pooled(model, features, images, v, cells=q.has_position_tokens) for v in DIHEDRAL_VIEWS[:views]]
    x = torch.stack([r[0] for r in read])
    types = list(q.scene_types)
    scene = torch.tensor([types.index(annotated[p]["scene_type"]) if annotated[p].get("scene_type") in types else -1
                          for p in images], device=x.device)
    present = torch.tensor([[float(annotated[p]["counts"].get(c, 0) > 0) for c in q.object_classes] for p in images],
                           device=x.device) if q.has_object_tokens else None
    out = _Labelled(images, x, scene, present)
    if q.has_position_tokens:
        if any("cells" not in annotated[p] for p in images):
            raise ValueError("position tokens need the objects' centres (cells) in the train annotations")
        occ = torch.zeros(len(images), 9, len(q.object_classes), device=x.device)
        for n, p in enumerate(images):
            for c, cells in annotated[p]["cells"].items():
                if c in q.object_classes:
                    occ[n, cells, q.object_classes.index(c)] = 1.0
        out.cells = torch.stack([r[1] for r in read])
        out.occupied = torch.stack([occ[:, _view_cells(v)] for v in DIHEDRAL_VIEWS[:views]])
    return out


def _fit_heads(q, data: _Labelled, rows: torch.Tensor):
    """The scene, object and position heads (each (weight, bias), or None where the model has none)
    fitted on the given rows, every view of a row a training row of its own with its labels; the
    position head on the (row, cell) pairs of the classes present there."""
    x, scene, present = data.x, data.scene, data.present
    heads = {"scene": None, "objects": None, "positions": None}

    def views_of(r: torch.Tensor) -> torch.Tensor:
        return x[:, r].reshape(-1, x.shape[-1])

    if q.has_scene_tokens:
        rows_s = rows[scene[rows] >= 0]
        if not len(rows_s):
            raise ValueError("no train example names one of the model's scene types")
        heads["scene"] = _fit_linear(views_of(rows_s), scene[rows_s].repeat(len(x)), len(q.scene_types),
                                     F.cross_entropy, SCENE_L2)
    if q.has_object_tokens:
        heads["objects"] = _fit_linear(views_of(rows), present[rows].repeat(len(x), 1), len(q.object_classes),
                                       F.binary_cross_entropy_with_logits, OBJECT_L2)
    if q.has_position_tokens:
        k = len(q.object_classes)
        mask = present[rows].unsqueeze(1).expand(-1, 9, -1).repeat(len(x), 1, 1).reshape(-1, k)
        heads["positions"] = _fit_linear(data.cells[:, rows].reshape(-1, data.cells.shape[-1]),
                                         data.occupied[:, rows].reshape(-1, k), k, _masked_bce(mask), POSITION_L2)
    return heads


def _logits(heads: dict, x: torch.Tensor, cells: torch.Tensor | None = None) -> dict:
    """The heads' logits on pooled F_I (N, 2 D) and, for the position head, cell features (N, 9, 2 D)."""
    return {k: None if h is None else (cells if k == "positions" else x) @ h[0].t() + h[1] for k, h in heads.items()}


def _accuracy(q, logits: dict, data: _Labelled, rows: torch.Tensor | None = None) -> dict:
    """What the heads' logits (rows of `data`, all by default) reach on the images as they are."""
    rows = torch.arange(len(data.images)) if rows is None else rows
    scene = data.scene[rows]
    present = None if data.present is None else data.present[rows]
    out = {}
    if logits["scene"] is not None:
        ok = scene >= 0
        out["scene"] = {"types": len(q.scene_types), "images": int(ok.sum()),
                        "accuracy": round((logits["scene"].argmax(1)[ok] == scene[ok]).float().mean().item() * 100, 2)}
    if logits["objects"] is not None:
        out["objects"] = {"classes": len(q.object_classes), "images": len(present),
                          **presence_errors((logits["objects"] > 0).tolist(), present.bool().tolist())}
    if logits.get("positions") is not None:
        out["positions"] = placement_scores(logits["positions"], data.occupied[0, rows], present)
    return out


def placement_scores(cell_logits: torch.Tensor, occupied: torch.Tensor, present: torch.Tensor) -> dict:
    """The position head against the cells (N, 9, K) of the classes present (N, K): accuracy,
    precision and recall of "occupied" over their cells, and how often the phrase it gives is the
    one the same rule gives on the true cells."""
    mask = present.bool().unsqueeze(1).expand_as(occupied)
    said, true = (cell_logits > 0)[mask], occupied.bool()[mask]
    pairs = present.bool()
    # the phrase the tokens give (the model's own rule) vs the rule on the true cells (> 0.5 of a 0/1 map)
    same = (placement_indices(cell_logits.transpose(1, 2)) == placement_indices(occupied.transpose(1, 2) - 0.5))[pairs]
    tp = (said & true).sum().item()
    return {"pairs": int(pairs.sum()), "cell_precision": round(100.0 * tp / max(said.sum().item(), 1), 2),
            "cell_recall": round(100.0 * tp / max(true.sum().item(), 1), 2),
            "phrase_accuracy": round(100.0 * same.sum().item() / max(int(pairs.sum()), 1), 2)}


def fit_concept_heads(model, features, examples: Sequence, views: int = 1) -> dict | None:
    """Fit the model's scene and object heads (those it has) on the examples' images, each once in
    each of the first `views` dihedral views (`train.concept_views`: flipped and rotated crops show
    the same scene and classes), and set the names' embeddings; returns what they reach on the
    train images as they are (None when the model has neither). `features` is the run's
    FrozenFeatures (F_I from the cache, the views' too)."""
    q = model.preset.qformer
    if not (q.has_scene_tokens or q.has_object_tokens):
        return None
    data = _labelled(model, features, examples, views)
    heads = _fit_heads(q, data, torch.arange(len(data.images), device=data.x.device))
    if heads["scene"] is not None:
        model.vlm.set_scene_head(*heads["scene"], phrase_embeddings(model, [f" {t}." for t in q.scene_types],
                                                                    q.scene_tokens))
    if heads["objects"] is not None:
        phrases = [f" {object_name(c)}," for c in q.object_classes] + [""]  # the last row: an empty slot
        model.vlm.set_object_head(*heads["objects"], phrase_embeddings(model, phrases, OBJECT_NAME_TOKENS))
    if heads["positions"] is not None:
        phrases = [placement_phrase(p) for p in PLACEMENTS] + [""]
        model.vlm.set_position_head(*heads["positions"], phrase_embeddings(model, phrases, q.position_tokens))
    summary = _accuracy(q, _logits(heads, data.x[0], None if data.cells is None else data.cells[0]), data)
    summary["views"] = views
    if "scene" in summary:
        summary["scene"]["train_accuracy"] = summary["scene"].pop("accuracy")
    log.info("concept heads fitted on the train split: %s", summary)
    return summary


def source_scene(image) -> str:
    """The scene a prepared crop was cut from: its file name before the last "_" (P0008_0003.png ->
    P0008); a name without one is its own scene."""
    stem = getattr(image, "stem", str(image))
    return stem.rsplit("_", 1)[0]


def out_of_fold_concepts(model, features, examples: Sequence, folds: int, views: int = 1) -> tuple[dict, dict] | None:
    """What the concept tokens would tell the LLM about each train image had the heads not seen it.

    Heads fitted on their own train images name every scene type and class right there (100 %,
    0 / 0 %), while on unseen scenes they miss a fifth (val: scene ~80 %, objects ~14 % hallucinated
    / ~20 % missed): trained on the first, the LLM learns to copy the tokens and meets the second
    at test. So the train images are split into `folds` groups by source scene (crops of one scene
    look alike), and each group's tokens come from heads fitted on the other groups, the way
    stacked models are trained. The model's own heads (fitted on every image) are untouched and
    are what inference uses. Returns ({image: tokens (S + O, D_llm)}, the out-of-fold accuracy: an
    estimate of the heads on unseen scenes), or None when the model has no concept tokens or
    `folds` < 2. Deterministic (fold = rank of the scene's name modulo `folds`). The heads of each
    fold are fitted on `views` dihedral views, as the model's own are."""
    q = model.preset.qformer
    if folds < 2 or not (q.has_scene_tokens or q.has_object_tokens):
        return None
    data = _labelled(model, features, examples, views)
    images, x = data.images, data.x
    names = sorted({source_scene(p) for p in images})
    if len(names) < folds:
        raise ValueError(f"train.concept_folds: {folds} folds need as many source scenes; the train split has "
                         f"{len(names)}")
    fold_of = {n: i % folds for i, n in enumerate(names)}
    fold = torch.tensor([fold_of[source_scene(p)] for p in images], device=x.device)
    logits = {"scene": torch.zeros(len(images), len(q.scene_types), device=x.device) if q.has_scene_tokens else None,
              "objects": torch.zeros(len(images), len(q.object_classes), device=x.device)
              if q.has_object_tokens else None,
              "positions": torch.zeros(len(images), 9, len(q.object_classes), device=x.device)
              if q.has_position_tokens else None}
    for f in range(folds):
        held = (fold == f).nonzero()[:, 0]
        part = _logits(_fit_heads(q, data, (fold != f).nonzero()[:, 0]), x[0, held],
                       None if data.cells is None else data.cells[0, held])
        for k, v in part.items():
            if v is not None:
                logits[k][held] = v
    with torch.no_grad():
        tokens = model.vlm.concept_tokens(logits["scene"], logits["objects"], logits["positions"])
    summary = {"folds": folds, **_accuracy(q, logits, data)}
    log.info("concept tokens of the train images from out-of-fold heads (%d folds by source scene): %s",
             folds, summary)
    return dict(zip(images, tokens)), summary


def with_concepts_of(feats: torch.Tensor, images: Sequence, tokens: dict | None, n_concept: int) -> torch.Tensor:
    """F_VLM (B, Q + G + C, D) with its last C (concept) tokens replaced by `tokens[image]` (the
    out-of-fold ones of training); unchanged when `tokens` is None. The concept tokens carry no
    gradient, so nothing that trains is cut off."""
    if tokens is None or not n_concept:
        return feats
    concept = torch.stack([tokens[p] for p in images]).to(device=feats.device, dtype=feats.dtype)
    return torch.cat([feats[:, :-n_concept], concept], dim=1)


def presence_errors(predicted: Sequence[Sequence[bool]], truth: Sequence[Sequence[bool]]) -> dict:
    """Percent of predicted-present classes that are absent (hallucinated) and of present ones
    not predicted (missed), over every (image, class) pair."""
    pairs = [(p, t) for prow, trow in zip(predicted, truth) for p, t in zip(prow, trow)]
    said, there = sum(p for p, _ in pairs), sum(t for _, t in pairs)
    return {"hallucinated": round(100.0 * sum(p and not t for p, t in pairs) / said, 2) if said else None,
            "missed": round(100.0 * sum(t and not p for p, t in pairs) / there, 2) if there else None}


def predict_concepts(model, features, images: Sequence) -> list[dict] | None:
    """What the model's concept tokens say for each image: {"scene": type, "objects": [classes],
    "positions": {class: PLACEMENTS phrase}} (those it has), None when it has neither."""
    q = model.preset.qformer
    if not (q.has_scene_tokens or q.has_object_tokens):
        return None
    out = []
    with torch.no_grad():
        for p in images:
            tokens = model.vlm.standardized(features.image_tokens([p]))
            pooled = model.vlm.pooled(tokens)
            row = {}
            if q.has_scene_tokens:
                row["scene"] = q.scene_types[int(model.vlm.scene_logits(pooled).argmax())]
            if q.has_object_tokens:
                slots = model.vlm.object_slots(pooled)
                row["objects"] = [q.object_classes[i] for i in slots[0].tolist() if i < len(q.object_classes)]
            if q.has_position_tokens:
                cells = model.vlm.cell_logits(model.vlm.cell_features(tokens))
                row["positions"] = {q.object_classes[i]: PLACEMENTS[j] for i, j in
                                    zip(slots[0].tolist(), model.vlm.placements_of(cells, slots)[0].tolist())
                                    if i < len(q.object_classes)}
            out.append(row)
    return out


def concept_accuracy(predicted: Sequence[dict] | None, records: Sequence[dict]) -> dict | None:
    """The concept heads on annotated records (prepared DOTA crops): scene-type accuracy, the
    hallucinated / missed percent of the object classes they name (what the LLM was told) and,
    with position tokens, how often the place they give a named class present is the caption's."""
    if not predicted:
        return None
    out = {}
    scenes = [(p["scene"], r.get("scene_type")) for p, r in zip(predicted, records) if "scene" in p and r.get("scene_type")]
    if scenes:
        out["scene_accuracy"] = round(100.0 * sum(a == b for a, b in scenes) / len(scenes), 2)
        out["scene_images"] = len(scenes)
    rows = [(p["objects"], {o["category"] for o in r["objects"]}) for p, r in zip(predicted, records)
            if "objects" in p and "objects" in r]
    if rows:
        classes = sorted({c for said, there in rows for c in [*said, *there]})
        out["objects"] = presence_errors([[c in said for c in classes] for said, _ in rows],
                                         [[c in there for c in classes] for _, there in rows])
    placed = [(said, where) for p, r in zip(predicted, records) if "positions" in p and r.get("window")
              for said, where in _placements_told(p["positions"], r)]
    if placed:
        out["positions"] = {"pairs": len(placed),
                            "phrase_accuracy": round(100.0 * sum(a == b for a, b in placed) / len(placed), 2)}
    return out or None


def _placements_told(positions: dict, record: dict) -> list[tuple[str, str]]:
    """(phrase the position tokens gave, phrase the caption rule gives) for each class the object
    tokens named that the record holds."""
    size = float(record["window"][2])
    out = []
    for c, said in positions.items():
        centres = [unit_centre(o["center"], size) for o in record["objects"] if o["category"] == c]
        if centres:
            out.append((said, centres_placement(centres)))
    return out
