"""Pipeline stages: one module per stage, each with `run(params) -> dict`.

`STAGES` is the pipeline order; dvc.yaml and the Prefect flow declare the same list (a test
keeps the three in sync).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

STAGES: tuple[str, ...] = ("validate", "prepare", "stage1", "propagate", "stage2", "evaluate", "export")


class StageError(RuntimeError):
    """A stage that cannot finish; the message says why and what to do."""


def require(path: Path, stage: str) -> Path:
    """`path`, which the stage `stage` writes; a StageError saying to run that stage when it is missing."""
    if not Path(path).exists():
        raise StageError(f"{path} not found; run `rsmoe stage {stage}` first")
    return Path(path)


def load(name: str) -> ModuleType:
    if name not in STAGES:
        raise StageError(f"unknown stage '{name}'; stages are: {', '.join(STAGES)}")
    return importlib.import_module(f"rsmoe.stages.{name}")
