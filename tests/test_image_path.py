"""The small preset's image-path additions, on the tiny preset with them switched on: F_I
standardised with the train split's statistics before the Q-Former, and global tokens projected
from the mean and std of F_I beside the query outputs."""
import pytest
import torch

from rsmoe.model import RSMoE, get_preset
from rsmoe.training.features import FrozenFeatures
from model_counts import expected_trainable
from train_fixtures import make_prepared

CAPTIONS = ["This is an airport with two planes.", "The image shows a harbor with three ships."]
INSTRUCTIONS = ["Describe the image.", "Describe the image."]


@pytest.fixture(scope="module")
def model() -> RSMoE:
    return RSMoE(get_preset("tiny", qformer={"standardize_features": True, "global_tokens": 2}))


@pytest.fixture(scope="module")
def tokens(model) -> torch.Tensor:
    return model.image_tokens(torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


def test_global_tokens_follow_the_query_outputs(model, tokens):
    feats = model.vlm_features(tokens, INSTRUCTIONS)
    q, g = model.preset.qformer.num_query_tokens, model.preset.qformer.global_tokens
    assert feats.shape == (2, q + g, model.llm.config.hidden_size)
    v = model.vlm
    x = (tokens - v.feature_mean) / v.feature_std
    pooled = torch.cat([x.mean(1), x.std(1, unbiased=False)], -1)
    torch.testing.assert_close(feats[:, q:], v.global_projection(pooled).view(2, g, -1))
    assert not torch.allclose(feats[0, q:], feats[1, q:])  # they depend on the image


def test_standardisation_equals_feeding_standardised_tokens(model, tokens):
    mean, std = tokens.mean((0, 1)), tokens.std((0, 1)) + 0.5
    model.vlm.set_feature_stats(mean, std)
    try:
        with_stats = model.vlm_features(tokens, INSTRUCTIONS)
        model.vlm.set_feature_stats(torch.zeros_like(mean), torch.ones_like(std))
        torch.testing.assert_close(model.vlm_features((tokens - mean) / std, INSTRUCTIONS), with_stats)
        assert not torch.allclose(model.vlm_features(tokens, INSTRUCTIONS), with_stats)
    finally:
        model.vlm.set_feature_stats(torch.zeros_like(mean), torch.ones_like(std))


def test_stats_are_frozen_and_saved_global_projection_trains(model, tokens, tmp_path):
    model.set_stage("stage1")
    assert not model.vlm.feature_mean.requires_grad and not model.vlm.feature_std.requires_grad
    assert "feature_stats" not in model.trainable_groups("stage1")
    model.zero_grad(set_to_none=True)
    model.forward_stage1(CAPTIONS, image_tokens=tokens, instructions=INSTRUCTIONS).loss.backward()
    assert model.vlm.global_projection.weight.grad.abs().sum() > 0
    groups = model.parameter_groups()
    assert sum(p.numel() for p in groups["projection"]) == expected_trainable(model)["projection"]
    model.zero_grad(set_to_none=True)
    model.set_stage("frozen")
    mean = torch.linspace(-1, 1, tokens.shape[-1])
    model.vlm.set_feature_stats(mean, mean.abs() + 1)
    try:
        model.save_pretrained(tmp_path / "m")
        loaded = RSMoE.from_pretrained(tmp_path / "m")
        torch.testing.assert_close(loaded.vlm.feature_mean, model.vlm.feature_mean)
        torch.testing.assert_close(loaded.vlm_features(tokens, INSTRUCTIONS), model.vlm_features(tokens, INSTRUCTIONS))
    finally:
        model.vlm.set_feature_stats(torch.zeros_like(mean), torch.ones_like(mean))


def test_bad_stats_and_presets_without_standardisation_are_refused(model):
    d = model.vlm.feature_mean.shape[0]
    with pytest.raises(ValueError, match="positive std"):
        model.vlm.set_feature_stats(torch.zeros(d), torch.zeros(d))
    with pytest.raises(ValueError, match="shape"):
        model.vlm.set_feature_stats(torch.zeros(d + 1), torch.ones(d + 1))
    plain = RSMoE(get_preset("tiny"))
    with pytest.raises(ValueError, match="standardize_features"):
        plain.vlm.set_feature_stats(torch.zeros(d), torch.ones(d))
    assert plain.vlm.global_projection is None and not hasattr(plain.vlm, "feature_mean")


def test_fit_feature_stats_is_the_mean_and_std_over_every_token(model, tmp_path):
    prepared = make_prepared(tmp_path, n=4)
    images = sorted((prepared / "images").glob("*.png"))
    features = FrozenFeatures(model, tmp_path / "features")
    try:
        features.fit_feature_stats(images + images[:1])  # a repeated image counts once
        stacked = features.image_tokens(images).reshape(-1, model.image_encoder.out_dim).double()
        torch.testing.assert_close(model.vlm.feature_mean, stacked.mean(0).float())
        torch.testing.assert_close(model.vlm.feature_std, (stacked.std(0, unbiased=False) + 1e-3).float())
    finally:
        d = model.vlm.feature_mean.shape[0]
        model.vlm.set_feature_stats(torch.zeros(d), torch.ones(d))
    FrozenFeatures(RSMoE(get_preset("tiny")), tmp_path / "features").fit_feature_stats(images)  # a no-op
