"""Position tokens (`qformer.position_tokens`): after each object slot's class name, where that
class lies in the frame, the captions' position phrase chosen from the 3x3 cells a per-class head
on each cell's mean token finds it in. On the tiny preset (a 4x4 ViT grid after its class token)."""
import numpy as np
import pytest
import torch

from rsmoe.data.describe import cell_index, cells_placement, centres_placement
from rsmoe.data.images import DIHEDRAL_VIEWS, dihedral_view
from rsmoe.export import check_parity, export_encoders
from rsmoe.model import RSMoE, get_preset
from rsmoe.model.presets import OBJECT_NAME_TOKENS
from rsmoe.model.vlm import PLACEMENTS, VLMEncoder
from rsmoe.stages import stage1
from rsmoe.training.concepts import (_view_cells, concept_accuracy, fit_concept_heads, out_of_fold_concepts,
                                     phrase_embeddings, placement_phrase, predict_concepts)
from rsmoe.training.data import load_examples
from rsmoe.training.features import FrozenFeatures
from train_fixtures import annotate_crops, fitted_concepts, make_prepared, tiny_params

CLASSES = ("plane", "ship")
P = 5  # position tokens per slot
INSTRUCTIONS = ["Describe the image."] * 4


def _objects(i: int) -> list[dict]:
    """Crop i (512 px): planes in the top-left cell, ships in the bottom row (two cells) or, in odd
    crops, the bottom-right corner only."""
    ships = [[300.0, 400.0], [480.0, 400.0]] if i % 2 == 0 else [[470.0, 470.0]]
    return [{"category": "plane", "center": [60.0 + 5 * i, 70.0]}] + [{"category": "ship", "center": c} for c in ships]


def _preset(position_tokens: int = P):
    return get_preset("tiny", qformer={"standardize_features": True, "global_tokens": 1, "scene_tokens": 2,
                                       "scene_types": ["airport", "harbor"], "object_tokens": 2,
                                       "object_classes": list(CLASSES), "position_tokens": position_tokens})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return annotate_crops(make_prepared(tmp_path_factory.mktemp("positions"), n=8), lambda i: {
        "scene_type": ("airport", "harbor")[i % 2], "window": [0, 0, 512], "objects": _objects(i)})


@pytest.fixture(scope="module")
def fitted(prepared, tmp_path_factory):
    return fitted_concepts(RSMoE(_preset()), prepared, tmp_path_factory.mktemp("features"))


def test_the_rule_on_cells_and_on_centres():
    assert cell_index(0.1, 0.1) == 0 and cell_index(0.5, 0.1) == 1 and cell_index(0.999, 0.999) == 8
    assert cells_placement([0]) == "in the top-left corner of the image"
    assert cells_placement([4, 4]) == "in the center of the image"
    assert cells_placement([0, 1, 2]) == "in the upper half of the image"  # y = 1/6 for all
    assert cells_placement([0, 3]) == "in the left half of the image"
    assert cells_placement([7, 8]) == "in the lower half of the image"
    assert cells_placement([0, 8]) == "scattered"
    with pytest.raises(ValueError, match="at least one occupied cell"):
        cells_placement([])
    # real centres can say what cells cannot: an edge
    assert centres_placement([(0.2, 0.05), (0.8, 0.1)]) == "along the top edge of the image"
    assert len(PLACEMENTS) == 14 and len(set(PLACEMENTS)) == 14 and "scattered" in PLACEMENTS
    assert placement_phrase("in the top-left corner of the image") == " top-left corner."
    assert placement_phrase("at the bottom of the image") == " bottom."
    assert placement_phrase("scattered") == " spread all over."


def test_examples_carry_each_class_cells(prepared):
    content = load_examples(prepared, "train", 3)[0].content
    assert content["cells"] == {"plane": [0], "ship": [7, 8]} and content["counts"] == {"plane": 1, "ship": 2}


def test_view_cells_follow_the_dihedral_views():
    grid = np.arange(9).reshape(3, 3, 1)
    for view in DIHEDRAL_VIEWS:
        assert _view_cells(view) == dihedral_view(grid, view).reshape(-1).tolist()
    assert _view_cells("identity") == list(range(9))
    assert _view_cells("flip_lr") == [2, 1, 0, 5, 4, 3, 8, 7, 6]
    assert _view_cells("rot90")[0] == 2  # counter-clockwise: the top-left cell shows the old top-right


def test_cell_features_average_each_cell_of_the_grid():
    tokens = torch.arange(1 + 16, dtype=torch.float32).view(1, 17, 1).expand(2, 17, 3).clone()  # class token + 4x4
    cells = VLMEncoder.cell_features(tokens)
    assert cells.shape == (2, 9, 6)
    # 4x4 grid (token (r, c) = 1 + 4 r + c after the class token 0) -> rows / columns 0 | 1, 2 | 3:
    # cell 0 is token (0, 0) = 1; the centre cell the mean of tokens (1..2, 1..2) = 6, 7, 10, 11
    assert cells[0, 0, 0] == 1.0 and cells[0, 4, 0] == pytest.approx((6 + 7 + 10 + 11) / 4)
    torch.testing.assert_close(cells[0, :, 3], torch.full((9,), 8.5))  # the grid's mean beside every cell
    with pytest.raises(ValueError, match="square grid"):
        VLMEncoder.cell_features(torch.zeros(1, 7, 3))
    with pytest.raises(ValueError, match="at least 3x3"):
        VLMEncoder.cell_features(torch.zeros(1, 4, 3))


def test_placements_from_cell_logits():
    v = RSMoE(_preset()).vlm
    logits = torch.full((1, 9, 2), -1.0)
    logits[0, [0, 1, 2], 0] = 2.0  # planes: the top row
    logits[0, 5, 1] = -0.1  # ships: no cell above 0, the likeliest is the right side
    slots = torch.tensor([[0, 1], [1, 2]])  # the second row: ships, then an empty slot
    got = v.placements_of(logits.expand(2, -1, -1), slots)
    assert [PLACEMENTS[i] for i in got[0]] == ["in the upper half of the image", "on the right side of the image"]
    assert got[1, 1] == len(PLACEMENTS)  # the empty slot's phrase


def test_fit_sets_the_heads_and_the_tokens_follow_each_slot(fitted):
    model, features, examples, summary = fitted
    pos = summary["positions"]
    assert pos["pairs"] == 16 and set(pos) == {"pairs", "cell_precision", "cell_recall", "phrase_accuracy"}
    v = model.vlm
    assert v.position_weight.abs().sum() > 0 and not v.position_weight.requires_grad
    torch.testing.assert_close(v.position_phrases[-1], phrase_embeddings(model, [""], P)[0])
    embed = model.llm.get_input_embeddings().weight
    ids = model.tokenizer(" top-left corner.", add_special_tokens=False).input_ids
    torch.testing.assert_close(v.position_phrases[PLACEMENTS.index("in the top-left corner of the image")], embed[ids])
    assert v.n_concept_tokens == 2 + 2 * (OBJECT_NAME_TOKENS + P)
    tokens = features.image_tokens([e.image for e in examples[:4]])
    feats = model.vlm_features(tokens, INSTRUCTIONS)
    q, g = model.preset.qformer.num_query_tokens, model.preset.qformer.global_tokens
    assert feats.shape[1] == q + g + v.n_concept_tokens
    std = v.standardized(tokens)
    slots = v.object_slots(v.pooled(std))
    where = v.placements_of(v.cell_logits(v.cell_features(std)), slots)
    per_slot = feats[:, q + g + 2:].view(4, 2, OBJECT_NAME_TOKENS + P, -1)
    torch.testing.assert_close(per_slot[:, :, :OBJECT_NAME_TOKENS], v.object_phrases[slots])
    torch.testing.assert_close(per_slot[:, :, OBJECT_NAME_TOKENS:], v.position_phrases[where])
    told = predict_concepts(model, features, [e.image for e in examples[:2]])
    assert set(told[0]["positions"]) == set(told[0]["objects"])
    assert all(p in PLACEMENTS for row in told for p in row["positions"].values())


def test_views_permute_the_cells_the_head_is_fitted_on(prepared, tmp_path):
    model = RSMoE(_preset())
    examples = load_examples(prepared, "train", 3)
    features = FrozenFeatures(model, tmp_path / "features")
    features.fit_feature_stats([e.image for e in examples])
    one = fit_concept_heads(model, features, examples)
    w1 = model.vlm.position_weight.clone()
    eight = fit_concept_heads(model, features, examples, views=8)
    assert one["positions"]["pairs"] == eight["positions"]["pairs"] == 16  # scored on the crops as they are
    assert not torch.allclose(model.vlm.position_weight, w1)


def test_saved_exported_and_out_of_fold(fitted, tmp_path):
    model, features, examples, _ = fitted
    model.save_pretrained(tmp_path / "m")
    loaded = RSMoE.from_pretrained(tmp_path / "m")
    tokens = features.image_tokens([e.image for e in examples[:4]])
    torch.testing.assert_close(loaded.vlm_features(tokens, INSTRUCTIONS), model.vlm_features(tokens, INSTRUCTIONS))
    export_encoders(model, tmp_path / "onnx")
    report = check_parity(model, tmp_path / "onnx", [e.image for e in examples[:3]])
    assert report["ok"], report
    oof_tokens, oof = out_of_fold_concepts(model, features, examples, folds=2)
    assert oof["positions"]["pairs"] == 16
    assert next(iter(oof_tokens.values())).shape[0] == model.vlm.n_concept_tokens


def test_evaluate_scores_the_places_against_the_captions_rule():
    records = [{"window": [0, 0, 512], "objects": _objects(0)}, {"window": [0, 0, 512], "objects": _objects(1)}]
    said = [{"objects": ["plane", "ship"], "positions": {"plane": "in the top-left corner of the image",
                                                         "ship": "in the lower half of the image"}},
            {"objects": ["plane", "harbor"], "positions": {"plane": "in the center of the image",
                                                           "harbor": "in the center of the image"}}]
    # crop 0: both right (ships at x 0.59 / 0.94, y 0.78: the lower half); crop 1: the plane wrong,
    # the harbour not there (not scored)
    assert concept_accuracy(said, records)["positions"] == {"pairs": 3, "phrase_accuracy": 66.67}


def test_stage1_fits_the_position_head_from_params(prepared, tmp_path):
    params = tiny_params(tmp_path, paths={"prepared": str(prepared)},
                         model={"scene_tokens": 2, "object_tokens": 2, "position_tokens": 3}, stage1={"max_steps": 1})
    summary = stage1.run(params)
    assert summary["concept_heads"]["positions"]["pairs"] == 16
    q = RSMoE.from_pretrained(params.paths.models / "stage1").preset.qformer
    assert q.position_tokens == 3 and q.has_position_tokens
    off = get_preset("tiny", qformer={"object_tokens": 0, "position_tokens": 3})
    assert not off.qformer.has_position_tokens and not hasattr(RSMoE(off).vlm, "position_weight")
    with pytest.raises(ValueError, match="no position tokens"):
        RSMoE(off).vlm.set_position_head(torch.zeros(1), torch.zeros(1), torch.zeros(1))
