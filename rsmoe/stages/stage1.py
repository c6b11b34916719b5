"""Stage `stage1` (paper III-E, Stage I): freeze the image encoder; LoRA-train the Q-Former
(with its queries and projection) and the single LLM on the full captions of the train split.

Reads `paths.prepared`; writes the model folder `paths.models/stage1` and `metrics/stage1*.`
With `train.strategy: one-stage` there is no Stage I: the untrained model is written as is.
"""
from __future__ import annotations

import shutil

from rsmoe.evaluation.card import model_card, write_card
from rsmoe.model import RSMoE
from rsmoe.params import Params, StageTrainParams
from rsmoe.training.content import attach_content_heads, content_only, detach_content_heads, with_content_loss
from rsmoe.training.data import load_examples, qa_pairs
from rsmoe.training.features import FrozenFeatures
from rsmoe.training.loop import is_main_process, run_training
from rsmoe.training.concepts import fit_concept_heads, out_of_fold_concepts, with_concepts, with_concepts_of
from rsmoe.training.stage import digest, preset_from, write_metrics


def run(params: Params) -> dict:
    examples = load_examples(params.paths.prepared, "train", params.model.experts, qa_pairs(params, params.stage1),
                             params.train.qa_format, params.train.qa_types)
    model = RSMoE(with_concepts(preset_from(params), examples), cache=params.paths.cache)
    out = params.paths.models / "stage1"
    if params.train.strategy == "one-stage":  # stage2 fits the feature stats and the concept heads
        model.save_pretrained(out)
        summary = {"skipped": "train.strategy is one-stage: no Stage I"}
        write_card(out, model_card(params, "stage1", training=summary))
        return write_metrics(params, "stage1", summary)
    model.set_stage("stage1")
    print(model.summary())
    features = FrozenFeatures(model, params.paths.features)
    features.warm([e.image for e in examples])
    features.fit_feature_stats([e.image for e in examples])
    concepts = fit_concept_heads(model, features, examples, params.train.concept_views)
    oof = out_of_fold_concepts(model, features, examples, params.train.concept_folds, params.train.concept_views)
    train_concepts = oof[0] if oof else None

    weight = params.train.content_loss
    heads = attach_content_heads(model, examples, weight, params.train.seed)

    def forward(batch):
        instructions = [e.instruction for e in batch]
        feats = model.vlm_features(features.image_tokens([e.image for e in batch]), instructions)
        feats = with_concepts_of(feats, [e.image for e in batch], train_concepts, model.vlm.n_concept_tokens)
        out = model.forward_stage1([e.caption for e in batch], vlm_features=feats, instructions=instructions,
                                   dialogues=[e.dialogue for e in batch])
        return with_content_loss(out, heads, weight, feats, batch)

    ckpt = params.paths.checkpoints / "stage1"
    key = digest("stage1", params.model, params.train, params.stage1, params.paths.prepared / "captions.json",
                 *([params.paths.prepared / "qa.json"] if qa_pairs(params, params.stage1) else []))
    warmed = None
    if heads is not None and params.train.content_warmup_epochs > 0:  # the image path first learns what crops show
        model.set_stage("image-path")
        warmed = run_training(model, examples, lambda b: content_only(model, heads, features.image_tokens(
                                  [e.image for e in b]), b), train=params.train,
                              stage=StageTrainParams(epochs=params.train.content_warmup_epochs),
                              checkpoint_dir=params.paths.checkpoints / "stage1-content", run_key=key,
                              name="stage1 content")
        model.set_stage("stage1")
    summary = run_training(model, examples, forward, train=params.train, stage=params.stage1,
                           checkpoint_dir=ckpt, run_key=key, name="stage1")
    detach_content_heads(model)  # training only: not part of the saved model
    if not is_main_process():  # the other torchrun processes hold the same weights
        return summary
    model.save_pretrained(out)
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.rmtree(params.paths.checkpoints / "stage1-content", ignore_errors=True)
    summary["encoded_images"] = features.encoded_images
    if concepts:
        summary["concept_heads"] = concepts
    if oof:
        summary["concept_heads_out_of_fold"] = oof[1]
    if warmed:
        summary["content_warmup"] = {k: warmed[k] for k in ("steps", "first_loss", "final_loss")}
    summary = write_metrics(params, "stage1", summary)
    write_card(out, model_card(params, "stage1", training=summary))
    return summary
