"""Concept tokens (`qformer.scene_tokens`, `qformer.object_tokens`, on in the small preset): a
scene-type head and a per-class presence head on the pooled, standardised F_I, fitted on the train
split before Stage I, whose outputs reach the LLM as the names' token embeddings. On the tiny
preset, switched on."""
import json
import logging

import pytest
import torch

from rsmoe.export import check_parity, export_encoders
from rsmoe.model import RSMoE, get_preset
from rsmoe.model.checkpoint import ModelFolderError
from rsmoe.model.presets import OBJECT_NAME_TOKENS
from rsmoe.stages import propagate, stage1, stage2
from rsmoe.training.concepts import (concept_accuracy, fit_concept_heads, object_classes, object_name,
                                     out_of_fold_concepts, phrase_embeddings, predict_concepts, presence_errors,
                                     scene_types, source_scene, with_concepts, with_concepts_of)
from rsmoe.training.data import Example, load_examples
from rsmoe.training.features import FrozenFeatures
from train_fixtures import annotate_crops, fitted_concepts, make_prepared, tiny_params

TYPES = ("airport", "harbor")
CLASSES = ("plane", "ship", "small-vehicle")
INSTRUCTIONS = ["Describe the image."] * 4


def _objects(i: int) -> list[dict]:
    """Crop i's annotations: planes in airports, ships in harbours, small vehicles in every third crop."""
    return ([{"category": "plane"}] * 2 if i % 2 == 0 else [{"category": "ship"}]) + \
        [{"category": "small-vehicle"}] * (i % 3 == 0)


def _preset(slots: int = 2):
    return get_preset("tiny", qformer={"standardize_features": True, "global_tokens": 1, "scene_tokens": 3,
                                       "scene_types": list(TYPES), "object_tokens": slots,
                                       "object_classes": list(CLASSES)})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """8 random-pixel train crops with real captions, airport / harbor alternately, with objects."""
    root = tmp_path_factory.mktemp("concepts")
    return annotate_crops(make_prepared(root, n=8), lambda i: {"scene_type": TYPES[i % 2], "objects": _objects(i)})


@pytest.fixture(scope="module")
def fitted(prepared, tmp_path_factory):
    return fitted_concepts(RSMoE(_preset()), prepared, tmp_path_factory.mktemp("features"))


def _pooled(model, tokens):
    return model.vlm.pooled(model.vlm.standardized(tokens))


def test_concepts_come_from_the_train_annotations(prepared, caplog):
    examples = load_examples(prepared, "train", 3)
    assert scene_types(examples) == TYPES and object_classes(examples) == CLASSES
    on = get_preset("tiny", qformer={"scene_tokens": 2, "object_tokens": 2})
    preset = with_concepts(on, examples)
    assert preset.qformer.scene_types == TYPES and preset.qformer.object_classes == CLASSES
    assert preset.qformer.has_scene_tokens and preset.qformer.has_object_tokens and preset.qformer.object_slots == 2
    # one scene type and no objects, or no annotations at all (Karpathy / folder sets): both off, and the log says why
    one = [Example(e.image, e.instruction, e.caption, e.segments, content={"scene_type": "airport", "counts": {}})
           for e in examples]
    plain = [Example(e.image, e.instruction, e.caption, e.segments) for e in examples]
    for data in (one, plain):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rsmoe"):
            off = with_concepts(on, data)
        assert off.qformer.scene_types == () and off.qformer.object_classes == ()
        assert not off.qformer.has_scene_tokens and not off.qformer.has_object_tokens
        assert "scene tokens are off" in caplog.text and "object tokens are off" in caplog.text
        assert not hasattr(RSMoE(off).vlm, "scene_phrases") and not hasattr(RSMoE(off).vlm, "object_phrases")
    assert with_concepts(get_preset("tiny"), examples) == get_preset("tiny")  # a preset without them: untouched
    assert object_name("small-vehicle") == "small vehicles" and object_name("new-class") == "new class"


def test_fit_learns_the_train_labels_and_sets_the_name_embeddings(fitted):
    model, features, examples, summary = fitted
    assert summary["scene"] == {"types": 2, "images": 8, "train_accuracy": 100.0}
    assert summary["objects"] == {"classes": 3, "images": 8, "hallucinated": 0.0, "missed": 0.0}
    tokens = features.image_tokens([e.image for e in examples])
    pooled = _pooled(model, tokens)
    assert [TYPES[i] for i in model.vlm.scene_logits(pooled).argmax(1)] == [e.content["scene_type"] for e in examples]
    embed = model.llm.get_input_embeddings().weight
    ids = model.tokenizer(" airport.", add_special_tokens=False).input_ids
    torch.testing.assert_close(model.vlm.scene_phrases[0, :len(ids)], embed[ids[:3]])
    ids = model.tokenizer(" small vehicles,", add_special_tokens=False).input_ids
    torch.testing.assert_close(model.vlm.object_phrases[2, :len(ids)], embed[ids])
    torch.testing.assert_close(model.vlm.object_phrases[3], phrase_embeddings(model, [""], OBJECT_NAME_TOKENS)[0])
    assert not any(p.requires_grad for n, p in model.vlm.named_parameters() if n.startswith(("scene_", "object_")))


def test_concept_tokens_are_the_names_the_heads_choose(fitted):
    model, features, examples, _ = fitted
    q, g = model.preset.qformer.num_query_tokens, model.preset.qformer.global_tokens
    tokens = features.image_tokens([e.image for e in examples[:4]])
    feats = model.vlm_features(tokens, INSTRUCTIONS)
    assert feats.shape == (4, q + g + 3 + 2 * OBJECT_NAME_TOKENS, model.llm.config.hidden_size)
    pooled = _pooled(model, tokens)
    probs = model.vlm.scene_logits(pooled).softmax(-1)
    mixed = torch.einsum("bs,sld->bld", probs, model.vlm.scene_phrases)
    torch.testing.assert_close(feats[:, q + g:q + g + 3], mixed)
    # crop 0: planes and small vehicles; crop 1: ships only, so its second slot is empty (index 3)
    assert model.vlm.object_slots(pooled)[:2].sort(1).values.tolist() == [[0, 2], [1, 3]]
    slots = feats[:, q + g + 3:].view(4, 2, OBJECT_NAME_TOKENS, -1)
    torch.testing.assert_close(slots[1, 1], model.vlm.object_phrases[3])
    torch.testing.assert_close(slots[1, 0], model.vlm.object_phrases[1])


def test_the_heads_are_saved_with_the_model_and_a_mismatch_is_refused(fitted, tmp_path):
    model, features, examples, _ = fitted
    model.save_pretrained(tmp_path / "m")
    loaded = RSMoE.from_pretrained(tmp_path / "m")
    assert loaded.preset.qformer.scene_types == TYPES and loaded.preset.qformer.object_classes == CLASSES
    tokens = features.image_tokens([e.image for e in examples[:4]])
    torch.testing.assert_close(loaded.vlm_features(tokens, INSTRUCTIONS), model.vlm_features(tokens, INSTRUCTIONS))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["preset"]["qformer"]["scene_types"] = ["airport", "harbor", "farmland"]  # the head has 2 rows
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match=r"wrong shape \['scene_"):
        RSMoE.from_pretrained(tmp_path / "m")


def test_onnx_vlm_encoder_includes_the_concept_tokens(fitted, tmp_path):
    model, _, examples, _ = fitted
    export_encoders(model, tmp_path / "onnx")
    report = check_parity(model, tmp_path / "onnx", [e.image for e in examples[:3]])
    assert report["ok"], report


def test_bad_head_shapes_and_models_without_concept_tokens_are_refused(fitted):
    model = fitted[0]
    v = model.vlm
    with pytest.raises(ValueError, match="scene head weight needs shape"):
        v.set_scene_head(v.scene_weight[:1], v.scene_bias, v.scene_phrases)
    with pytest.raises(ValueError, match="object head phrases needs shape"):
        v.set_object_head(v.object_weight, v.object_bias, v.object_phrases[:-1])
    plain = RSMoE(get_preset("tiny")).vlm
    with pytest.raises(ValueError, match="no scene tokens"):
        plain.set_scene_head(v.scene_weight, v.scene_bias, v.scene_phrases)
    with pytest.raises(ValueError, match="no object tokens"):
        plain.set_object_head(v.object_weight, v.object_bias, v.object_phrases)


def test_evaluate_reports_what_the_heads_said(fitted):
    model, features, examples, _ = fitted
    told = predict_concepts(model, features, [e.image for e in examples[:2]])
    assert told[0]["scene"] == "airport" and sorted(told[0]["objects"]) == ["plane", "small-vehicle"]
    assert told[1] == {"scene": "harbor", "objects": ["ship"]}
    assert predict_concepts(RSMoE(get_preset("tiny")), features, [examples[0].image]) is None
    records = [{"scene_type": "airport", "objects": _objects(0)}, {"scene_type": "airport", "objects": _objects(1)},
               {"scene_type": None}]
    said = [{"scene": "airport", "objects": ["plane"]}, {"scene": "harbor", "objects": ["ship", "plane"]},
            {"scene": "harbor", "objects": []}]
    # scene: 1 of the 2 known right; objects (the third record has none): 3 said, 1 absent (the plane
    # of crop 1); 3 there (plane + small vehicle, ship), 1 missed (the small vehicle)
    assert concept_accuracy(said, records) == {"scene_accuracy": 50.0, "scene_images": 2,
                                              "objects": {"hallucinated": 33.33, "missed": 33.33}}
    assert concept_accuracy(None, records) is None
    assert presence_errors([[False]], [[False]]) == {"hallucinated": None, "missed": None}


@pytest.mark.parametrize("strategy", ["two-stage", "one-stage"])
def test_stages_fit_the_heads_and_carry_them_to_stage2(prepared, tmp_path, strategy):
    params = tiny_params(tmp_path, paths={"prepared": str(prepared)}, model={"scene_tokens": 2, "object_tokens": 2},
                         train={"strategy": strategy}, stage1={"max_steps": 2}, stage2={"max_steps": 2})
    s1 = stage1.run(params)
    propagate.run(params)
    s2 = stage2.run(params)
    fitted_in = s1 if strategy == "two-stage" else s2
    assert fitted_in["concept_heads"]["scene"]["train_accuracy"] == 100.0
    assert fitted_in["concept_heads"]["objects"]["classes"] == 3
    model = RSMoE.from_pretrained(params.paths.models / "stage2")
    q = model.preset.qformer
    assert q.scene_types == TYPES and q.object_classes == CLASSES and q.scene_tokens == 2 and q.object_slots == 2
    assert model.vlm.scene_weight.abs().sum() > 0 and model.vlm.object_weight.abs().sum() > 0  # fitted, not zeros
    # the preset's default (tiny: none) and `model.*_tokens: 0` give the model without them
    off = tiny_params(tmp_path / "off", paths={"prepared": str(prepared)}, model={"scene_tokens": 0},
                      stage1={"max_steps": 1})
    assert "concept_heads" not in stage1.run(off)
    assert not RSMoE.from_pretrained(off.paths.models / "stage1").preset.qformer.has_scene_tokens


def test_out_of_fold_tokens_come_from_heads_that_never_saw_the_scene(fitted):
    """8 crops of 8 scenes, airport and harbour alternately: with 2 folds by scene name each fold
    holds one scene type and its heads were fitted on the other, so every out-of-fold scene token
    names the wrong type (0 %) where the model's own heads are right on all 8."""
    model, features, examples, summary = fitted
    own = {k: v.detach().clone() for k, v in model.vlm.state_dict().items() if k.startswith(("scene_", "object_"))}
    tokens, oof = out_of_fold_concepts(model, features, examples, folds=2)
    assert oof["folds"] == 2 and oof["scene"] == {"types": 2, "images": 8, "accuracy": 0.0}
    assert summary["scene"]["train_accuracy"] == 100.0
    assert set(oof["objects"]) == {"classes", "images", "hallucinated", "missed"}
    for k, v in model.vlm.state_dict().items():  # inference keeps the heads fitted on every image
        if k in own:
            torch.testing.assert_close(v, own[k])
    q, g = model.preset.qformer.num_query_tokens, model.preset.qformer.global_tokens
    n = model.vlm.n_concept_tokens
    assert n == 3 + 2 * OBJECT_NAME_TOKENS
    images = [e.image for e in examples[:2]]
    feats = model.vlm_features(features.image_tokens(images), INSTRUCTIONS[:2])
    swapped = with_concepts_of(feats, images, tokens, n)
    assert swapped.shape == feats.shape
    torch.testing.assert_close(swapped[:, :q + g], feats[:, :q + g])  # queries and global tokens untouched
    torch.testing.assert_close(swapped[:, q + g:], torch.stack([tokens[p] for p in images]))
    assert not torch.allclose(swapped[:, q + g:q + g + 3], feats[:, q + g:q + g + 3])  # the scene tokens changed
    assert with_concepts_of(feats, images, None, n) is feats
    # a second call gives the same tokens (folds by the scene name's rank, L-BFGS from zeros)
    again, _ = out_of_fold_concepts(model, features, examples, folds=2)
    for p in tokens:
        torch.testing.assert_close(again[p], tokens[p])  # deterministic
    assert out_of_fold_concepts(model, features, examples, folds=0) is None
    with pytest.raises(ValueError, match="train.concept_folds: 9 folds need as many source scenes; .* has 8"):
        out_of_fold_concepts(model, features, examples, folds=9)
    assert source_scene(examples[3].image) == "P0003" and source_scene("solo") == "solo"


def test_stage1_trains_on_out_of_fold_concept_tokens_and_reports_them(prepared, tmp_path):
    common = dict(paths={"prepared": str(prepared)}, model={"scene_tokens": 2, "object_tokens": 2},
                  stage1={"max_steps": 2})
    s1 = stage1.run(tiny_params(tmp_path / "oof", train={"concept_folds": 4}, **common))
    base = stage1.run(tiny_params(tmp_path / "own", **common))
    assert s1["concept_heads_out_of_fold"]["folds"] == 4 and "concept_heads_out_of_fold" not in base
    assert s1["concept_heads"] == base["concept_heads"]  # the saved heads are the same full fits
    assert s1["final_loss"] != base["final_loss"]  # what the LLM was shown differs


def test_heads_fit_on_dihedral_views_read_each_views_own_features(prepared, tmp_path):
    """`train.concept_views`: the heads see every train crop in 8 views (each view's F_I encoded
    once and cached under its own key), fit on 8x the rows, and score the crops as they are;
    inference (predict_concepts) still reads the plain crop."""
    import numpy as np

    from rsmoe.data.images import DIHEDRAL_VIEWS, dihedral_view, load_rgb

    model = RSMoE(_preset())
    examples = load_examples(prepared, "train", 3)
    features = FrozenFeatures(model, tmp_path / "features")
    features.fit_feature_stats([e.image for e in examples])
    plain = features.encoded_images
    summary = fit_concept_heads(model, features, examples, views=8)
    assert features.encoded_images == plain + 7 * len(examples)
    assert summary["views"] == 8 and summary["scene"]["train_accuracy"] == 100.0
    rgb = load_rgb(examples[0].image)
    flipped = model.image_tokens(model.pixel_values([np.ascontiguousarray(rgb[:, ::-1])]))
    torch.testing.assert_close(features.image_tokens([examples[0].image], "flip_lr"), flipped)
    assert not torch.allclose(features.image_tokens([examples[0].image], "flip_lr"),
                              features.image_tokens([examples[0].image]))
    # the heads differ from the plain fit's: the other views' rows were fitted on
    one = RSMoE(_preset())
    one_features = FrozenFeatures(one, tmp_path / "features")
    one_features.fit_feature_stats([e.image for e in examples])
    fit_concept_heads(one, one_features, examples)
    assert not torch.allclose(model.vlm.scene_weight, one.vlm.scene_weight)
    assert predict_concepts(model, features, [examples[0].image])[0]["scene"] == examples[0].content["scene_type"]
    # the 8 views are the 8 distinct symmetries of a square
    a = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    assert len({dihedral_view(a, v).tobytes() for v in DIHEDRAL_VIEWS}) == 8
    np.testing.assert_array_equal(dihedral_view(dihedral_view(a, "rot90"), "rot270"), a)
    with pytest.raises(ValueError, match="unknown view 'rot45'"):
        dihedral_view(a, "rot45")
