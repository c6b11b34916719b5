"""Scene tokens (`qformer.scene_tokens`, on in the small preset): a scene-type classifier on the
pooled, standardised F_I, fitted on the train split before Stage I, whose probabilities mix the
LLM embeddings of the scene-type names into extra F_VLM tokens. On the tiny preset, switched on."""
import json
import logging
import shutil

import pytest
import torch

from rsmoe.export import check_parity, export_encoders
from rsmoe.model import RSMoE, get_preset
from rsmoe.model.checkpoint import ModelFolderError
from rsmoe.stages import propagate, stage1, stage2
from rsmoe.training.data import Example, load_examples
from rsmoe.training.features import FrozenFeatures
from rsmoe.training.scene import (fit_scene_head, phrase_embeddings, predict_scenes, scene_head_accuracy, scene_types,
                                   with_scene_types)
from train_fixtures import make_prepared, tiny_params

TYPES = ("airport", "harbor")
INSTRUCTIONS = ["Describe the image."] * 4


def _preset(types=TYPES, tokens: int = 3):
    return get_preset("tiny", qformer={"standardize_features": True, "global_tokens": 1, "scene_tokens": tokens,
                                       "scene_types": list(types)})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """8 random-pixel train crops with real captions, labelled airport / harbor alternately."""
    root = tmp_path_factory.mktemp("scene")
    out = make_prepared(root, n=8)
    caps = json.loads((out / "captions.json").read_text())
    for i, a in enumerate(caps["annotations"]):
        a["scene_type"] = TYPES[i % 2]
        a["objects"] = [{"category": "plane"}] * (i % 3)
    (out / "captions.json").write_text(json.dumps(caps))
    return out


@pytest.fixture(scope="module")
def fitted(prepared, tmp_path_factory):
    model = RSMoE(_preset())
    examples = load_examples(prepared, "train", 3)
    features = FrozenFeatures(model, tmp_path_factory.mktemp("features"))
    features.fit_feature_stats([e.image for e in examples])
    summary = fit_scene_head(model, features, examples)
    return model, features, examples, summary


def test_scene_types_come_from_the_train_annotations(prepared, caplog):
    examples = load_examples(prepared, "train", 3)
    assert scene_types(examples) == TYPES
    preset = with_scene_types(get_preset("tiny", qformer={"scene_tokens": 2}), examples)
    assert preset.qformer.scene_types == TYPES and preset.qformer.has_scene_tokens
    # one type, or none (Karpathy / folder sets): no scene tokens, and the log says why
    one = [Example(e.image, e.instruction, e.caption, e.segments, content={"scene_type": "airport", "counts": {}})
           for e in examples]
    with caplog.at_level(logging.WARNING, logger="rsmoe"):
        off = with_scene_types(get_preset("tiny", qformer={"scene_tokens": 2}), one)
    assert off.qformer.scene_types == () and not off.qformer.has_scene_tokens
    assert "scene tokens are off" in caplog.text
    assert not RSMoE(off).vlm.spec.has_scene_tokens and not hasattr(RSMoE(off).vlm, "scene_phrases")
    assert with_scene_types(get_preset("tiny"), examples) == get_preset("tiny")  # preset without them: untouched


def test_fit_learns_the_train_labels_and_sets_the_name_embeddings(fitted):
    model, features, examples, summary = fitted
    assert summary["scene_types"] == 2 and summary["images"] == 8 and summary["train_accuracy"] == 100.0
    tokens = features.image_tokens([e.image for e in examples])
    probs = model.vlm.scene_logits(model.vlm.pooled(model.vlm.standardized(tokens))).softmax(-1)
    labels = torch.tensor([TYPES.index(e.content["scene_type"]) for e in examples])
    assert torch.equal(probs.argmax(1), labels)
    names = phrase_embeddings(model, TYPES, 3)
    torch.testing.assert_close(model.vlm.scene_phrases, names)
    ids = model.tokenizer(" airport.", add_special_tokens=False).input_ids
    torch.testing.assert_close(names[0, :len(ids)], model.llm.get_input_embeddings().weight[ids[:3]])
    assert not any(p.requires_grad for n, p in model.vlm.named_parameters() if n.startswith("scene_"))


def test_scene_tokens_are_the_names_mixed_by_the_probabilities(fitted):
    model, features, examples, _ = fitted
    q, g = model.preset.qformer.num_query_tokens, model.preset.qformer.global_tokens
    tokens = features.image_tokens([e.image for e in examples[:4]])
    feats = model.vlm_features(tokens, INSTRUCTIONS)
    assert feats.shape == (4, q + g + 3, model.llm.config.hidden_size)
    probs = model.vlm.scene_logits(model.vlm.pooled(model.vlm.standardized(tokens))).softmax(-1)
    expected = probs[:, 0, None, None] * model.vlm.scene_phrases[0] + probs[:, 1, None, None] * model.vlm.scene_phrases[1]
    torch.testing.assert_close(feats[:, q + g:], expected)


def test_the_head_is_saved_with_the_model_and_a_mismatch_is_refused(fitted, tmp_path):
    model, features, examples, _ = fitted
    model.save_pretrained(tmp_path / "m")
    loaded = RSMoE.from_pretrained(tmp_path / "m")
    assert loaded.preset.qformer.scene_types == TYPES
    tokens = features.image_tokens([e.image for e in examples[:4]])
    torch.testing.assert_close(loaded.vlm_features(tokens, INSTRUCTIONS), model.vlm_features(tokens, INSTRUCTIONS))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["preset"]["qformer"]["scene_types"] = ["airport", "harbor", "farmland"]  # the head has 2 rows
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFolderError, match=r"wrong shape \['scene_"):
        RSMoE.from_pretrained(tmp_path / "m")


def test_onnx_vlm_encoder_includes_the_scene_tokens(fitted, tmp_path):
    model, _, examples, _ = fitted
    export_encoders(model, tmp_path / "onnx")
    report = check_parity(model, tmp_path / "onnx", [e.image for e in examples[:3]])
    assert report["ok"], report


def test_bad_head_shapes_and_models_without_scene_tokens_are_refused(fitted):
    model = fitted[0]
    w, b, p = model.vlm.scene_weight, model.vlm.scene_bias, model.vlm.scene_phrases
    with pytest.raises(ValueError, match="weight needs shape"):
        model.vlm.set_scene_head(w[:1], b, p)
    with pytest.raises(ValueError, match="no scene tokens"):
        RSMoE(get_preset("tiny")).vlm.set_scene_head(w, b, p)


@pytest.mark.parametrize("strategy", ["two-stage", "one-stage"])
def test_stages_fit_the_head_and_carry_it_to_stage2(prepared, tmp_path, strategy):
    params = tiny_params(tmp_path, paths={"prepared": str(prepared)}, model={"scene_tokens": 2},
                         train={"strategy": strategy}, stage1={"max_steps": 2}, stage2={"max_steps": 2})
    s1 = stage1.run(params)
    propagate.run(params)
    s2 = stage2.run(params)
    fitted_in = s1 if strategy == "two-stage" else s2
    assert fitted_in["scene_head"]["train_accuracy"] == 100.0 and fitted_in["scene_head"]["scene_types"] == 2
    model = RSMoE.from_pretrained(params.paths.models / "stage2")
    assert model.preset.qformer.scene_types == TYPES and model.preset.qformer.scene_tokens == 2
    assert model.vlm.scene_weight.abs().sum() > 0  # fitted, not the zeros it starts from
    # the preset's default (tiny: none) and `model.scene_tokens: 0` give the model without them
    off = tiny_params(tmp_path / "off", paths={"prepared": str(prepared)}, model={"scene_tokens": 0},
                      stage1={"max_steps": 1})
    assert "scene_head" not in stage1.run(off)
    assert not RSMoE.from_pretrained(off.paths.models / "stage1").preset.qformer.has_scene_tokens
    shutil.rmtree(tmp_path / "off")


def test_evaluate_reports_what_the_head_says(fitted):
    model, features, examples, _ = fitted
    predicted = predict_scenes(model, features, [e.image for e in examples])
    assert predicted == [e.content["scene_type"] for e in examples]
    assert predict_scenes(RSMoE(get_preset("tiny")), features, [examples[0].image]) is None
    assert scene_head_accuracy(["airport", "harbor", "airport"], ["airport", "airport", None]) == {
        "accuracy": 50.0, "images": 2}
    assert scene_head_accuracy(None, ["airport"]) is None and scene_head_accuracy(["a"], [None]) is None
