"""The committed data.dvc describes exactly what `rsmoe synth` writes with params.yaml's settings,
so `make run` on a fresh clone regenerates the tracked data byte for byte."""
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from rsmoe.data.synth import synthesize
from rsmoe.params import load_params

REPO = Path(__file__).resolve().parents[1]


def dvc_dir_md5(root: Path) -> tuple[str, int, int]:
    """DVC 3's directory hash: md5 of the sorted (relpath, md5) listing as JSON."""
    entries = [{"md5": hashlib.md5(p.read_bytes()).hexdigest(), "relpath": p.relative_to(root).as_posix()}
               for p in root.rglob("*") if p.is_file()]
    entries.sort(key=lambda e: e["relpath"])
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir", size, len(entries)


@pytest.mark.slow
def test_default_corpus_matches_data_dvc(tmp_path):
    out = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    params = load_params(REPO / "params.yaml")
    assert out["path"] == "data" and params.paths.raw.parts[0] == "data"
    data = tmp_path / "data"
    cfg = params.synth
    synthesize(data / params.paths.raw.relative_to("data"), cfg.scenes, cfg.seed,
               min_size=cfg.min_size, max_size=cfg.max_size)
    assert dvc_dir_md5(data) == (out["md5"], out["size"], out["nfiles"])
