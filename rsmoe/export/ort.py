"""Serve the exported encoders with ONNX Runtime: pick a provider that really works, check what
goes into a graph, and encode image files in batches exactly as training preprocesses them.

onnxruntime-gpu lists TensorRT and CUDA on any machine, GPU or not: listing is not availability.
A provider is used only when a session created with it reports it first in get_providers().
"""
from __future__ import annotations

import ctypes
import functools
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from rsmoe.data.images import ImageFailure, ImageReadError, load_rgb
from rsmoe.errors import InputError
from rsmoe.files import written_file
from rsmoe.model.encoders import preprocess
from rsmoe.model.presets import ImageEncoderSpec
from rsmoe.model.vlm import tokenize_instructions

log = logging.getLogger("rsmoe")

IMAGE_GRAPH, VLM_GRAPH = "image_encoder.onnx", "vlm_encoder.onnx"
SIDECAR, PARITY, TOKENIZER = "encoders.json", "parity.json", "qformer_tokenizer"
REEXPORT = "re-run `rsmoe stage export`"
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
             "cpu": "CPUExecutionProvider"}
_NP = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16,
       "tensor(int32)": np.int32}


@functools.cache
def cuda_devices() -> int:
    """CUDA devices the driver sees (0 without a driver): a GPU provider is not even tried without
    one, which spares a CPU machine ONNX Runtime's library-loading error logs."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    except OSError:
        return 0


def session(path: str | Path, *, prefer: Sequence[str] = ("tensorrt", "cuda", "cpu"),
            trt_cache: Path | None = None, fp16: bool = False,
            options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """The first provider of `prefer` that ONNX Runtime actually runs the graph on.

    tensorrt: TensorRT (engines cached in `trt_cache` when given, fp16 kernels when `fp16`), with
    CUDA then CPU for the nodes it cannot take; cuda: CUDA then CPU; cpu: CPU only.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(path, "the ONNX graph is missing" if not path.exists() else "the ONNX graph is empty",
                         REEXPORT)
    unknown = [p for p in prefer if p not in PROVIDERS]
    if unknown or not prefer:
        raise ValueError(f"prefer: unknown providers {unknown}; choose from {', '.join(PROVIDERS)}")
    if options is None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: node-placement notices are expected
    skipped: list[str] = []
    for name in prefer:
        if name != "cpu" and cuda_devices() == 0:
            skipped.append(f"{name}: no CUDA device")
            continue
        providers = _providers(name, trt_cache, fp16)
        try:
            # enable_fallback=0: no silent retry (and no banner printed) inside ONNX Runtime
            sess = ort.InferenceSession(str(path), options, providers=providers, enable_fallback=0)
        except Exception as err:
            if "Load model from" in str(err) or name == "cpu":
                raise InputError(path, f"ONNX Runtime cannot load it ({_first_line(err)})",
                                 f"{REEXPORT} (the file is damaged or was not written by it)") from err
            skipped.append(f"{name}: {_first_line(err)}")
            continue
        if sess.get_providers()[0] == PROVIDERS[name]:
            log.info("ONNX Runtime runs %s on %s%s", path.name, PROVIDERS[name],
                     f" ({'; '.join(skipped)})" if skipped else "")
            return sess
        skipped.append(f"{name}: not available, got {sess.get_providers()[0]}")
    raise RuntimeError(f"{path}: none of the providers {list(prefer)} works here ({'; '.join(skipped)}); "
                       "add 'cpu' to prefer")


def _providers(name: str, trt_cache: Path | None, fp16: bool) -> list:
    if name == "cpu":
        return [PROVIDERS["cpu"]]
    chain: list = [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    if name == "tensorrt":
        opts: dict[str, object] = {"trt_fp16_enable": fp16}
        if trt_cache is not None:  # engines take minutes to build: keep them across sessions
            Path(trt_cache).mkdir(parents=True, exist_ok=True)
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache),
                        trt_timing_cache_enable=True, trt_timing_cache_path=str(trt_cache))
        chain.insert(0, (PROVIDERS["tensorrt"], opts))
    return chain


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__


def run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check every input's name, dtype, rank and fixed dims against the graph, then run it;
    -> {output name: array}. A wrong input fails here, naming the graph and the expected shape."""
    path = getattr(sess, "_model_path", None) or "<ONNX graph>"
    wanted = {i.name: i for i in sess.get_inputs()}
    if set(feeds) != set(wanted):
        raise InputError(path, f"the graph takes inputs {sorted(wanted)}, got {sorted(feeds)}",
                         "feed exactly the inputs listed in encoders.json")
    for name, spec in wanted.items():
        x = np.asarray(feeds[name])
        dtype = np.dtype(_NP[spec.type]) if spec.type in _NP else x.dtype
        fixed = [d if isinstance(d, int) else None for d in spec.shape]  # None: a symbolic dim
        if x.dtype != dtype or x.ndim != len(fixed) or any(d not in (None, s) for d, s in zip(fixed, x.shape)):
            want = f"({', '.join(map(str, spec.shape))})"
            raise InputError(path, f"input {name!r} must be {dtype.name} {want}, got {x.dtype.name} {tuple(x.shape)}",
                             "preprocess images with the size, mean and std of encoders.json "
                             "(rsmoe.model.encoders.preprocess, or encode_images) and tokenise "
                             "instructions to int64 (batch, L)")
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: np.asarray(v) for k, v in feeds.items()})))


def read_sidecar(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "the export sidecar (encoders.json) is missing", REEXPORT)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})", REEXPORT) from e
    if data.get("format") != "rsmoe-onnx" or "graphs" not in data:
        raise InputError(path, "not an rsmoe ONNX export sidecar", REEXPORT)
    return data


def tokenize(tokenizer, instructions: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """Instructions -> input_ids, attention_mask (B, L) int64, exactly as RSMoE.vlm_features."""
    enc = tokenize_instructions(tokenizer, instructions, max_length, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


# --------------------------------------------------------------------------- encoding files

def encode_images(onnx_path: str | Path, images: Sequence[str | Path], *, batch_size: int = 8,
                  sidecar: str | Path | None = None, instruction: str | None = None,
                  prefer: Sequence[str] = ("tensorrt", "cuda", "cpu"),
                  progress: bool = True) -> tuple[dict[str, torch.Tensor], list[ImageFailure]]:
    """Encode image files with an exported graph -> ({str(path): (T, D) or (Q, D) tensor}, failures).

    Images go through the same `preprocess` as training, with the spec in the sidecar
    (default: encoders.json beside the graph). An image that cannot be read is reported and
    skipped; the others are encoded. The VLM graph also takes the instruction: the sidecar's
    default one, or `instruction` tokenised by the exported Q-Former tokenizer.
    """
    onnx_path = Path(onnx_path)
    sidecar = Path(sidecar) if sidecar else onnx_path.parent / SIDECAR
    meta = read_sidecar(sidecar)
    graph = next((g for g in meta["graphs"].values() if g["file"] == onnx_path.name), None)
    if graph is None:
        raise InputError(sidecar, f"describes no graph named {onnx_path.name}",
                         "pass the encoders.json written with this graph, or " + REEXPORT)
    spec = ImageEncoderSpec.model_validate(meta["image_encoder_spec"])
    sess = session(onnx_path, prefer=prefer)
    text = _instruction_feeds(sess, meta, onnx_path.parent / TOKENIZER, instruction)
    output = graph["outputs"][0]["name"]
    features: dict[str, torch.Tensor] = {}
    failures: list[ImageFailure] = []
    bar = tqdm(total=len(images), desc=f"encode {onnx_path.stem}", unit="img", disable=not progress)
    for start in range(0, len(images), batch_size):
        chunk, good, rgb = images[start:start + batch_size], [], []
        for p in chunk:
            try:
                rgb.append(load_rgb(p))
                good.append(p)
            except ImageReadError as e:
                failures.append(ImageFailure.of(p, e))
                log.warning("skipping %s: %s", p, e.problem)
        if good:
            feeds = {"pixel_values": preprocess(rgb, spec).numpy()}  # (b, 3, S, S)
            feeds.update({k: np.repeat(v, len(good), axis=0) for k, v in text.items()})  # (b, L)
            out = run(sess, feeds)[output]
            features.update({str(p): torch.from_numpy(np.ascontiguousarray(x)) for p, x in zip(good, out)})
        bar.update(len(chunk))
    bar.close()
    if failures:
        log.warning("%d of %d images could not be read and were skipped", len(failures), len(images))
    return features, failures


def _instruction_feeds(sess: ort.InferenceSession, meta: dict, tokenizer_dir: Path,
                       instruction: str | None) -> dict[str, np.ndarray]:
    """(1, L) input_ids / attention_mask for a graph that takes an instruction, else {}."""
    if "input_ids" not in {i.name for i in sess.get_inputs()}:
        return {}
    spec = meta["instruction"]
    if instruction is None or instruction == spec["default"]:
        ids = np.asarray([spec["default_input_ids"]], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if not tokenizer_dir.is_dir():
        raise InputError(tokenizer_dir, "the exported Q-Former tokenizer is missing", REEXPORT)
    from transformers import AutoTokenizer
    return tokenize(AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True), [instruction],
                    spec["max_tokens"])


def save_features(path: str | Path, features: dict[str, torch.Tensor]) -> Path:
    """{name: tensor} -> one safetensors file (written to a temporary name, then renamed)."""
    path = Path(path)
    with written_file(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in features.items()}, tmp)
    return path
