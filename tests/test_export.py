"""ONNX export of the frozen encoders: the graphs and their sidecar, parity with PyTorch
on image files (tiny, and the small preset's pretrained encoders), dynamic batch and instruction
length, provider choice, and the errors a user meets (damaged graph, bad image, wrong input)."""
import copy
import hashlib
import json
import logging

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file

from rs_fixtures import scene, truncate, write_png
from rsmoe.data.images import load_rgb
from rsmoe.errors import InputError
from rsmoe.export import (ParityError, check_parity, encode_images, export_encoders, run, save_features,
                          session)
from rsmoe.export.ort import tokenize
from rsmoe.model import RSMoE, get_preset
from rsmoe.model.checkpoint import fingerprints
from rsmoe.model.presets import DEFAULT_INSTRUCTION
from rsmoe.model.rsmoe import Row

TOL = 1e-4


def _train_lora(model: RSMoE, seed: int = 1) -> None:
    """A fresh Q-Former LoRA B is zero (merged == unmerged); give it weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.vlm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _images(folder, n: int = 3) -> list:
    """n PNGs of different sizes (the shared preprocess resizes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(folder / f"img{i}.png", scene(60 + 20 * i, 80, seed=i)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny():
    model = RSMoE(get_preset("tiny"))
    _train_lora(model)
    return model


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return out, export_encoders(tiny, out)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("images"))


def test_export_writes_checked_graphs_and_sidecar(tiny, exported):
    out, sidecar = exported
    spec = tiny.preset
    on_disk = json.loads((out / "encoders.json").read_text())
    assert on_disk == sidecar
    assert sidecar["opset"] == 17 and sidecar["preset"] == "tiny"
    pre = sidecar["preprocess"]
    assert (pre["image_size"], pre["mean"], pre["std"]) == (64, list(spec.image_encoder.mean),
                                                            list(spec.image_encoder.std))
    assert sidecar["instruction"]["max_tokens"] == spec.qformer.max_instruction_tokens == 24
    assert (out / "qformer_tokenizer").is_dir()
    image, vlm = sidecar["graphs"]["image_encoder"], sidecar["graphs"]["vlm_encoder"]
    t, d = 1 + (64 // 16) ** 2, spec.image_encoder.hidden_size
    assert image["inputs"] == [{"name": "pixel_values", "dtype": "float32", "shape": ["batch", 3, 64, 64]}]
    assert image["outputs"] == [{"name": "image_tokens", "dtype": "float32", "shape": ["batch", t, d]}]
    assert vlm["inputs"][1:] == [{"name": n, "dtype": "int64", "shape": ["batch", "instruction_tokens"]}
                                 for n in ("input_ids", "attention_mask")]
    assert vlm["outputs"] == [{"name": "vlm_features", "dtype": "float32",
                               "shape": ["batch", spec.qformer.num_query_tokens, spec.llm.hidden_size]}]
    assert vlm["lora_merged"] is True
    for graph in (image, vlm):
        path = out / graph["file"]
        onnx.checker.check_model(str(path))
        assert graph["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(graph["weights_fingerprint"]) == 16
    assert image["weights_fingerprint"] == fingerprints(tiny)["image_encoder"]  # as in a model folder
    graph = onnx.load(str(out / "vlm_encoder.onnx"))
    assert graph.opset_import[0].version == 17
    assert not any("lora" in i.name for i in graph.graph.initializer)  # merged, not exported as LoRA


def test_export_leaves_the_model_untouched(tmp_path):
    model = RSMoE(get_preset("tiny"))
    _train_lora(model)
    before = {k: v.clone() for k, v in model.vlm.state_dict().items()}
    export_encoders(model, tmp_path)
    after = model.vlm.state_dict()
    assert before.keys() == after.keys() and any("lora_B" in k for k in after)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_parity_tiny(tiny, exported, images):
    out, _ = exported
    report = check_parity(tiny, out, images, instruction="Count the ships in this image.")
    assert report["ok"] and json.loads((out / "parity.json").read_text()) == report
    assert set(report["per_batch_size"]["vlm_encoder"]) == {"batch_1", "batch_3"}
    assert max(report["max_abs_diff"].values()) <= TOL
    assert report["providers"] == {"image_encoder": "CPUExecutionProvider", "vlm_encoder": "CPUExecutionProvider"}


def test_dynamic_batch_and_instruction_length(tiny, exported):
    """One graph, batch 1 and 3, two instruction lengths: all equal to PyTorch."""
    sess = session(exported[0] / "vlm_encoder.onnx", prefer=("cpu",))
    g = torch.Generator().manual_seed(0)
    for texts in (["a"], ["Describe this remote sensing image in detail.", "ships", "Count the planes."]):
        pixels = torch.randn(len(texts), 3, 64, 64, generator=g)
        enc = tokenize(tiny.qformer_tokenizer, texts, 24)
        got = run(sess, {"pixel_values": pixels.numpy(), **enc})["vlm_features"]
        with torch.no_grad():
            want = tiny.vlm_features(tiny.image_tokens(pixels), texts)
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() <= TOL


def test_session_picks_cpu_and_logs_it(exported, caplog, capsys):
    """onnxruntime-gpu lists TensorRT and CUDA here; neither can run, so CPU, quietly."""
    with caplog.at_level(logging.INFO, logger="rsmoe"):
        sess = session(exported[0] / "image_encoder.onnx")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert any("CPUExecutionProvider" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert "EP Error" not in capsys.readouterr().out


def test_onnx_encoders_give_the_torch_captions(tiny, exported, images):
    """ORT image tokens and ORT F_VLM decode (greedy) to the very captions of the PyTorch path."""
    out, _ = exported
    pixels = tiny.pixel_values([load_rgb(p) for p in images])
    ort_tokens = torch.from_numpy(run(session(out / "image_encoder.onnx", prefer=("cpu",)),
                                      {"pixel_values": pixels.numpy()})["image_tokens"])
    want = [c.text for c in tiny.caption(pixels)]
    assert [c.text for c in tiny.caption(image_tokens=ort_tokens)] == want

    enc = tokenize(tiny.qformer_tokenizer, [DEFAULT_INSTRUCTION] * len(images), 24)
    ort_feats = torch.from_numpy(run(session(out / "vlm_encoder.onnx", prefer=("cpu",)),
                                     {"pixel_values": pixels.numpy(), **enc})["vlm_features"])
    with torch.no_grad():
        feats = tiny.vlm_features(tiny.image_tokens(pixels), [DEFAULT_INSTRUCTION] * len(images))
    rows = [Row(b, e, DEFAULT_INSTRUCTION, DEFAULT_INSTRUCTION, router=True) for b in range(len(images)) for e in tiny.experts]
    assert tiny.generate_rows(ort_feats, rows) == tiny.generate_rows(feats, rows)


def test_listed_gpu_providers_that_fail_fall_back_to_cpu(exported, monkeypatch, caplog, capsys):
    """As on a GPU machine without the CUDA / TensorRT libraries: tried, failed, CPU, logged why."""
    monkeypatch.setattr("rsmoe.export.ort.cuda_devices", lambda: 1)
    with caplog.at_level(logging.INFO, logger="rsmoe"):
        sess = session(exported[0] / "image_encoder.onnx", trt_cache=None, fp16=True)
    assert sess.get_providers() == ["CPUExecutionProvider"]
    message = caplog.records[-1].getMessage()
    assert "on CPUExecutionProvider" in message and "tensorrt:" in message and "cuda:" in message
    assert "EP Error" not in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="none of the providers"):
        session(exported[0] / "image_encoder.onnx", prefer=("cuda",))


@pytest.mark.parametrize("damage", ["missing", "empty", "truncated", "garbage"])
def test_damaged_onnx_file_is_an_input_error(exported, tmp_path, damage):
    path = tmp_path / "image_encoder.onnx"
    if damage != "missing":
        path.write_bytes((exported[0] / "image_encoder.onnx").read_bytes())
        {"empty": lambda: path.write_bytes(b""), "truncated": lambda: truncate(path, 0.3),
         "garbage": lambda: path.write_text("not a graph")}[damage]()
    with pytest.raises(InputError) as err:
        session(path)
    assert err.value.path == str(path) and "rsmoe stage export" in str(err.value)


def test_bad_images_are_reported_and_good_ones_encoded(tiny, exported, images, tmp_path):
    out, _ = exported
    missing = tmp_path / "gone.png"
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    cut = truncate(write_png(tmp_path / "cut.png", scene(64, 64, seed=9)), 0.4)
    paths = [images[0], missing, images[1], text, cut, images[2]]
    feats, failures = encode_images(out / "image_encoder.onnx", paths, batch_size=2, progress=False)
    assert list(feats) == [str(p) for p in images]
    assert {(f.path, f.kind) for f in failures} == {(str(missing), "missing"), (str(text), "not_image"),
                                                    (str(cut), "truncated")}
    assert all(f.reason for f in failures)
    want = tiny.image_tokens(tiny.pixel_values([load_rgb(p) for p in images]))
    assert np.abs(torch.stack(list(feats.values())).numpy() - want.numpy()).max() <= TOL

    vlm, _ = encode_images(out / "vlm_encoder.onnx", images, instruction="Count the ships.", progress=False)
    with torch.no_grad():
        want = tiny.vlm_features(want, ["Count the ships."] * len(images))
    assert np.abs(torch.stack(list(vlm.values())).numpy() - want.numpy()).max() <= TOL

    saved = load_file(save_features(tmp_path / "features.safetensors", feats))
    assert saved.keys() == feats.keys() and all(torch.equal(saved[k], feats[k]) for k in feats)


def test_wrong_input_shape_is_a_clear_error(exported, images, tmp_path):
    out, sidecar = exported
    sess = session(out / "image_encoder.onnx", prefer=("cpu",))
    wrong = r"'pixel_values' must be float32 \(batch, 3, 64, 64\), got float32 \(2, 3, 32, 32\)"
    with pytest.raises(InputError, match=wrong):
        run(sess, {"pixel_values": np.zeros((2, 3, 32, 32), np.float32)})
    with pytest.raises(InputError, match="must be float32"):
        run(sess, {"pixel_values": np.zeros((2, 3, 64, 64), np.float64)})
    # a sidecar that does not belong to the graph (another image size) is caught the same way
    other = copy.deepcopy(sidecar)
    other["image_encoder_spec"]["image_size"] = 96
    (tmp_path / "encoders.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match=r"\(1, 3, 96, 96\)"):
        encode_images(out / "image_encoder.onnx", images[:1], sidecar=tmp_path / "encoders.json", progress=False)


def test_parity_failure_raises(images, tmp_path):
    model = RSMoE(get_preset("tiny"))
    export_encoders(model, tmp_path)
    with torch.no_grad():
        model.vlm.projection.weight[0, 0] += 0.5  # the model changed after its export
    with pytest.raises(ParityError, match="vlm_encoder") as err:
        check_parity(model, tmp_path, images, instruction=DEFAULT_INSTRUCTION)
    assert "rsmoe stage export" in str(err.value)
    report = json.loads((tmp_path / "parity.json").read_text())
    assert not report["ok"] and report["max_abs_diff"]["image_encoder"] <= TOL < report["max_abs_diff"]["vlm_encoder"]


@pytest.mark.slow  # ~15-35 s: builds the small preset and exports a 150 MB graph
def test_parity_small_preset_pretrained(tmp_path):
    """EfficientNet-Lite0 + MiniLM Q-Former (real weights, LoRA given values), 224 px images."""
    model = RSMoE(get_preset("small"))
    _train_lora(model, seed=2)
    images = _images(tmp_path / "images")
    export_encoders(model, tmp_path / "onnx")
    report = check_parity(model, tmp_path / "onnx", images, instruction=DEFAULT_INSTRUCTION)
    assert report["ok"] and max(report["max_abs_diff"].values()) <= TOL
