"""Stage `stage2` (paper III-E, Stage II): freeze the image encoder and the VLM encoder of
Stage I; train the Instruction Router and the expert adapters, each expert on its aspect
segment. With `train.strategy: one-stage` the Q-Former LoRA, queries and projection train too
(paper Table VII's baseline). Frozen F_I (and, in Stage II, F_VLM) come from the feature cache.

Reads `paths.models/propagated` and `paths.prepared`; writes `paths.models/stage2`, `metrics/stage2*`.
"""
from __future__ import annotations

import shutil

from rsmoe.evaluation.card import model_card, write_card
from rsmoe.params import Params
from rsmoe.stages import require
from rsmoe.training.content import attach_content_heads, detach_content_heads, with_content_loss
from rsmoe.training.data import load_examples, qa_pairs, warn_if_experts_go_untrained
from rsmoe.training.features import FrozenFeatures
from rsmoe.training.loop import is_main_process, run_training
from rsmoe.training.concepts import fit_concept_heads, out_of_fold_concepts, with_concepts_of
from rsmoe.training.stage import digest, load_model, write_metrics


def run(params: Params) -> dict:
    src = params.paths.models / "propagated"
    require(src / "config.json", "propagate")
    model = load_model(params, src)
    mode = "stage2" if params.train.strategy == "two-stage" else "one-stage"
    model.set_stage(mode)
    print(model.summary())
    examples = load_examples(params.paths.prepared, "train", params.model.experts, qa_pairs(params, params.stage2),
                             params.train.qa_format, params.train.qa_types)
    warn_if_experts_go_untrained(examples, params.model.experts)
    features = FrozenFeatures(model, params.paths.features)
    if mode == "stage2":
        features.freeze_vlm()
    features.warm([e.image for e in examples], [e.instruction for e in examples])
    concepts = None
    if mode == "one-stage":  # the VLM encoder trains here, so its input statistics and concept heads are set here
        features.fit_feature_stats([e.image for e in examples])
        concepts = fit_concept_heads(model, features, examples, params.train.concept_views)
    oof = out_of_fold_concepts(model, features, examples, params.train.concept_folds, params.train.concept_views)
    train_concepts = oof[0] if oof else None

    weight = params.train.content_loss
    heads = attach_content_heads(model, examples, weight, params.train.seed) if mode == "one-stage" else None

    def forward(batch):
        instructions = [e.instruction for e in batch]
        feats = features.vlm_features([e.image for e in batch], instructions)
        feats = with_concepts_of(feats, [e.image for e in batch], train_concepts, model.vlm.n_concept_tokens)
        out = model.forward_experts([e.segments for e in batch], vlm_features=feats, instructions=instructions,
                                    prompts=[e.prompt for e in batch], dialogues=[e.dialogue for e in batch])
        return with_content_loss(out, heads, weight, feats, batch)

    ckpt = params.paths.checkpoints / "stage2"
    key = digest("stage2", params.model, params.train, params.stage2, params.paths.prepared / "captions.json", src,
                 *([params.paths.prepared / "qa.json"] if qa_pairs(params, params.stage2) else []))
    summary = run_training(model, examples, forward, train=params.train, stage=params.stage2,
                           checkpoint_dir=ckpt, run_key=key, name="stage2")
    detach_content_heads(model)  # training only: not part of the saved model
    if not is_main_process():  # the other torchrun processes hold the same weights
        return summary
    model.save_pretrained(params.paths.models / "stage2")
    shutil.rmtree(ckpt, ignore_errors=True)
    summary.update(mode=mode, encoded_images=features.encoded_images, **({"concept_heads": concepts} if concepts else {}),
                   **({"concept_heads_out_of_fold": oof[1]} if oof else {}))
    summary = write_metrics(params, "stage2", summary)
    write_card(params.paths.models / "stage2", model_card(params, "stage2", training=summary))
    return summary
