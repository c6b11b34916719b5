"""Stage `export`: the frozen encoders of the trained model as ONNX graphs, checked against PyTorch.

Writes `paths.onnx/`: image_encoder.onnx (pixel_values -> image tokens), vlm_encoder.onnx
(pixel_values, instruction ids and mask -> F_VLM, the Q-Former LoRA merged), encoders.json
(names, shapes, opset, preprocessing, fingerprints), the Q-Former tokenizer, parity.json and the
model card README.md (with the evaluation scores of `metrics/evaluate.json`); and
`metrics/export.json`. Fails when ONNX Runtime and PyTorch differ by more than
`export.parity_tol` on the first `export.parity_images` crops of the evaluation split.
"""
from __future__ import annotations

import json
from pathlib import Path

from rsmoe.data.loaders import load_prepared
from rsmoe.evaluation.card import model_card, write_card
from rsmoe.evaluation.scoring import scores_markdown
from rsmoe.export import check_parity, export_encoders
from rsmoe.params import Params
from rsmoe.stages import StageError, require
from rsmoe.training.stage import load_model


def run(params: Params) -> dict:
    src = params.paths.models / "stage2"
    require(src / "config.json", "stage2")
    model = load_model(params, src)
    out = Path(params.paths.onnx)
    sidecar = export_encoders(model, out, opset=params.export.opset)
    captions = load_prepared(params.paths.prepared, "captions.json")
    names = [a["filename"] for a in captions if a["split"] == params.evaluate.split][:params.export.parity_images]
    if not names:
        raise StageError(f"no {params.evaluate.split!r} crops in {params.paths.prepared} to check parity on")
    parity = check_parity(model, out, [params.paths.prepared / "images" / n for n in names],
                          tol=params.export.parity_tol)
    metrics = {"opset": params.export.opset, "parity_tol": parity["tol"], "max_abs_diff": parity["max_abs_diff"],
               "parity_images": len(names), "providers": parity["providers"], "preset": sidecar.get("preset")}
    Path(params.paths.metrics).mkdir(parents=True, exist_ok=True)
    (Path(params.paths.metrics) / "export.json").write_text(json.dumps(metrics, indent=2) + "\n")
    # the card with the scores: export runs after evaluate (stage2's folder is stage2's DVC output)
    scores = Path(params.paths.metrics) / "evaluate.json"
    training = Path(params.paths.metrics) / "stage2.json"
    write_card(out, model_card(
        params, "onnx", training=json.loads(training.read_text()) if training.is_file() else None,
        scores=scores_markdown(json.loads(scores.read_text())) if scores.is_file() else None))
    return metrics
