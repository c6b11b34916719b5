"""What the training stages share: the model from params, run keys, metrics files."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from rsmoe.model import RSMoE, get_preset
from rsmoe.model.presets import Preset
from rsmoe.params import Params


def preset_from(params: Params) -> Preset:
    m = params.model
    overrides: dict = {"experts": m.experts}
    if m.instructblip:
        overrides["image_encoder"] = {"path": str(m.instructblip)}
        overrides["qformer"] = {"path": str(m.instructblip)}
    if m.llm:
        overrides["llm"] = {"path": str(m.llm)}
    for key in ("scene_tokens", "object_tokens", "position_tokens"):
        if getattr(m, key) is not None:
            overrides["qformer"] = {**overrides.get("qformer", {}), key: getattr(m, key)}
    return get_preset(m.preset, **overrides)


def load_model(params: Params, folder: Path) -> RSMoE:
    """A model folder of an earlier stage, with the local paths of params (paper presets)."""
    m = params.model
    paths = {k: str(v) for k, v in (("instructblip", m.instructblip), ("llm", m.llm)) if v}
    return RSMoE.from_pretrained(folder, cache=params.paths.cache, **paths)


def digest(*items: object) -> str:
    """A short hash of JSON-able values and files (their bytes) and folders (every file's bytes)."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, Path) and item.is_dir():
            for f in sorted(x for x in item.rglob("*") if x.is_file()):
                h.update(f.relative_to(item).as_posix().encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
        elif isinstance(item, Path) and item.is_file():
            h.update(hashlib.sha256(item.read_bytes()).digest())
        elif isinstance(item, BaseModel):
            h.update(item.model_dump_json().encode())
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def write_metrics(params: Params, name: str, summary: dict) -> dict:
    """metrics/<name>.json (for `dvc metrics`) and metrics/<name>_steps.csv (for `dvc plots`)."""
    out = Path(params.paths.metrics)
    out.mkdir(parents=True, exist_ok=True)
    history = summary.pop("history", [])
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    columns = list(dict.fromkeys(k for row in history for k in row)) or ["step", "loss"]
    with open(out / f"{name}_steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
    return summary
