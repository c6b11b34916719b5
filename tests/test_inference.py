"""`rsmoe caption`, `rsmoe vqa` and `rsmoe encode` on a tiny model folder and its ONNX export."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from rsmoe.cli import main
from rsmoe.export import export_encoders
from rsmoe.model import RSMoE, get_preset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    model = RSMoE(get_preset("tiny"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # trained-looking adapters: the experts must differ from the base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.save_pretrained(root / "model")
    export_encoders(model, root / "onnx")
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        path = root / f"img{i}.png"
        Image.fromarray((rng.random((80, 96, 3)) * 255).astype(np.uint8)).save(path)
        images.append(path)
    (root / "broken.png").write_bytes(b"not a png at all")
    return root, images


def _run(capsys, *argv):
    code = main([*map(str, argv), "--params", "/nonexistent/params.yaml"] if argv[0] in ("caption", "vqa")
                else list(map(str, argv)))
    return code, capsys.readouterr()


def test_onnx_encoders_give_the_same_captions_as_pytorch(setup, capsys):
    root, images = setup
    code, torch_out = _run(capsys, "caption", *images, "--model", root / "model", "--json", "--max-new-tokens", 6)
    assert code == 0
    code, onnx_out = _run(capsys, "caption", *images, "--model", root / "model", "--encoder", "onnx",
                          "--onnx", root / "onnx", "--json", "--max-new-tokens", 6)
    assert code == 0
    a, b = json.loads(torch_out.out), json.loads(onnx_out.out)
    assert [r["caption"] for r in a] == [r["caption"] for r in b]
    assert all(set(r["segments"]) == {"theme", "objects", "relations"} for r in a)


def test_a_bad_image_is_reported_and_the_good_ones_still_captioned(setup, capsys):
    root, images = setup
    for encoder in ("torch", "onnx"):
        code, out = _run(capsys, "caption", images[0], root / "broken.png", root / "missing.png", "--model",
                         root / "model", "--encoder", encoder, "--onnx", root / "onnx", "--json", "--max-new-tokens", 4)
        rows = json.loads(out.out)
        assert code == 1, encoder
        assert [r["image"] for r in rows if "caption" in r] == [str(images[0])]
        assert {r["image"] for r in rows if "error" in r} == {str(root / "broken.png"), str(root / "missing.png")}


def test_an_export_of_another_model_is_refused(setup, tmp_path, capsys):
    root, images = setup
    other = RSMoE(get_preset("tiny"))
    with torch.no_grad():
        next(other.image_encoder.parameters()).add_(1.0)
    export_encoders(other, tmp_path / "onnx")
    code, out = _run(capsys, "caption", images[0], "--model", root / "model", "--encoder", "onnx",
                     "--onnx", tmp_path / "onnx")
    assert code == 2 and "other weights" in out.err and "rsmoe stage export" in out.err


def test_vqa_routes_the_question_to_the_expert_of_its_type(setup, capsys):
    root, images = setup
    code, out = _run(capsys, "vqa", images[0], "How many planes are there?", "--model", root / "model", "--json",
                     "--max-new-tokens", 4)
    result = json.loads(out.out)
    assert code == 0 and result["type"] == "quantity" and result["expert"] == "objects"
    code, out = _run(capsys, "vqa", root / "broken.png", "Is there a ship?", "--model", root / "model")
    assert code == 2 and "broken.png" in out.err


def test_encode_writes_features_and_reports_bad_files(setup, tmp_path, capsys):
    root, images = setup
    out = tmp_path / "features.safetensors"
    code, _ = _run(capsys, "encode", *images, root / "broken.png", "--onnx", root / "onnx" / "image_encoder.onnx",
                   "--out", out)
    assert code == 1
    features = load_file(out)
    assert sorted(features) == sorted(map(str, images))
    model = RSMoE.from_pretrained(root / "model")
    from rsmoe.data.images import load_rgb
    with torch.no_grad():
        expected = model.image_tokens(model.pixel_values([load_rgb(images[1])]))[0]
    torch.testing.assert_close(features[str(images[1])], expected, atol=1e-4, rtol=0)


def test_an_export_of_another_preset_is_refused(setup, tmp_path, capsys):
    import shutil

    root, images = setup
    shutil.copytree(root / "onnx", tmp_path / "onnx")
    sidecar = tmp_path / "onnx" / "encoders.json"
    sidecar.write_text(sidecar.read_text().replace('"preset": "tiny"', '"preset": "small"'))
    code, out = _run(capsys, "caption", images[0], "--model", root / "model", "--encoder", "onnx",
                     "--onnx", tmp_path / "onnx")
    assert code == 2 and "preset 'small'" in out.err and "encoders.json" in out.err
