"""A small prepared folder (RSICap format) for training tests: random 64x64 images with real
RSICap captions from ../shared/data, and params for the tiny preset pointing into tmp paths."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from rsmoe.data.aspects import split_caption
from rsmoe.params import Params, parse_params

REPO = Path(__file__).resolve().parents[1]
RSICAP = REPO.parent / "shared" / "data" / "rsicap" / "captions.json"
RSIEVAL = REPO.parent / "shared" / "data" / "rsieval" / "annotations.json"


def make_prepared(root: Path, n: int = 8) -> Path:
    """root/prepared with n train crops; captions are the first n real RSICap captions."""
    out = root / "prepared"
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    real = json.loads(RSICAP.read_text())["annotations"][:n]
    annotations = []
    for i, a in enumerate(real):
        name = f"P{i:04d}_0000.png"
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(out / "images" / name)
        text = a["text_output"].strip()
        annotations.append({"image_id": str(i), "filename": name, "text_input": a["text_input"],
                            "text_output": text, "split": "train", "segments": split_caption(text)})
    (out / "captions.json").write_text(json.dumps({"annotations": annotations}))
    return out


def annotate_crops(prepared: Path, fields) -> Path:
    """Add `fields(i)` (a dict: scene_type, objects, window...) to crop i's record in captions.json."""
    caps = json.loads((prepared / "captions.json").read_text())
    for i, a in enumerate(caps["annotations"]):
        a.update(fields(i))
    (prepared / "captions.json").write_text(json.dumps(caps))
    return prepared


def fitted_concepts(model, prepared: Path, features_dir: Path):
    """(model, FrozenFeatures, train examples, summary) with the model's concept heads fitted on
    the prepared train split (feature statistics first, as Stage I does)."""
    from rsmoe.training.concepts import fit_concept_heads
    from rsmoe.training.data import load_examples
    from rsmoe.training.features import FrozenFeatures

    examples = load_examples(prepared, "train", 3)
    features = FrozenFeatures(model, features_dir)
    features.fit_feature_stats([e.image for e in examples])
    return model, features, examples, fit_concept_heads(model, features, examples)


# DOTA annotations for two test crops, so grounding has something to check against
TEST_OBJECTS = {0: [{"category": "plane"}] * 7 + [{"category": "small-vehicle"}] * 3,
                1: [{"category": "large-vehicle"}] * 4 + [{"category": "small-vehicle"}] * 6}


def add_test_split(prepared: Path) -> Path:
    """A test split of the real RSIEval images' captions and QA pairs (random pixels), two of
    them with DOTA objects; written into prepared/captions.json and prepared/qa.json."""
    rng = np.random.default_rng(1)
    caps = json.loads((prepared / "captions.json").read_text())
    qa = {"annotations": []}
    for i, a in enumerate(json.loads(RSIEVAL.read_text())["annotations"]):
        name = f"T{i:04d}_0000.png"
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(prepared / "images" / name)
        text = a["caption"].strip()
        record = {"image_id": f"t{i}", "filename": name, "text_input": "Describe this image.", "text_output": text,
                  "split": "test", "segments": split_caption(text)}
        if i in TEST_OBJECTS:
            record["objects"] = TEST_OBJECTS[i]
        caps["annotations"].append(record)
        qa["annotations"].append({"filename": name, "caption": text, "split": "test", "qa_pairs": a["qa_pairs"]})
    (prepared / "captions.json").write_text(json.dumps(caps))
    (prepared / "qa.json").write_text(json.dumps(qa))
    return prepared


def tiny_params(root: Path, **sections) -> Params:
    """Params for the tiny preset with every path under root; `sections` override (merged)."""
    data = {  # every path: one left out is relative to the cwd, the repo (a test once wrote the workspace's validate report)
        "paths": {"raw": str(root / "raw"), "validated": str(root / "validated"), "prepared": str(root / "prepared"), "models": str(root / "models"),
                  "metrics": str(root / "metrics"), "checkpoints": str(root / "checkpoints"),
                  "reports": str(root / "reports"), "onnx": str(root / "onnx"),
                  "features": str(root / "features"),
                  "cache": os.environ["RSMOE_CACHE"]},  # converted weights: shared, not per test
        "model": {"preset": "tiny", "experts": 3},
        # fp32 everywhere: "auto" would pick bf16 on CPUs that have it, and runs compared
        # across machines (resume, two processes, golden losses) must not depend on the CPU
        "train": {"batch_size": 2, "lr": 3e-3, "warmup_epochs": 0, "checkpoint_every": 3, "mixed_precision": "no"},
        "stage1": {"epochs": 1}, "stage2": {"epochs": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_params(data, "<test>")


def write_params_file(root: Path, **sections) -> Path:
    params = tiny_params(root, **sections)
    path = root / "params.yaml"
    import yaml
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", by_alias=True)))
    return path
