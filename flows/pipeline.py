"""Prefect flow `rsmoe`: the pipeline's stages in order, each run through DVC.

Every task is a thin wrapper around `dvc repro <stage>`, so Prefect and DVC share one stage
definition (dvc.yaml) and one cache: a stage whose deps and params did not change is a no-op.

    python flows/pipeline.py            # run the flow once (a temporary local Prefect server)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

ROOT = Path(__file__).resolve().parents[1]


def dvc_repro(stage: str, force: bool = False) -> None:
    """Run `dvc repro STAGE` in the repository, streaming its output into the Prefect log."""
    logger = get_run_logger()
    bin_dir = Path(sys.executable).parent  # the venv's dvc and rsmoe, whatever PATH says
    # progress bars update every 10 s here: each update becomes one line of the Prefect log
    env = {"TQDM_MININTERVAL": "10", **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(bin_dir / "dvc") if (bin_dir / "dvc").exists() else "dvc", "repro", stage]
    if force:
        cmd += ["--force", "--single-item"]
    logger.info("$ dvc %s", " ".join(cmd[1:]))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"stage {stage} failed (dvc repro exit {proc.returncode}):\n" + "\n".join(tail))


@task(name="validate", retries=1, retry_delay_seconds=5)
def validate(force: bool = False) -> None:
    dvc_repro("validate", force)


@task(name="prepare", retries=1, retry_delay_seconds=5)
def prepare(force: bool = False) -> None:
    dvc_repro("prepare", force)


@task(name="stage1", retries=1, retry_delay_seconds=5)
def stage1(force: bool = False) -> None:
    dvc_repro("stage1", force)


@task(name="propagate", retries=1, retry_delay_seconds=5)
def propagate(force: bool = False) -> None:
    dvc_repro("propagate", force)


@task(name="stage2", retries=1, retry_delay_seconds=5)
def stage2(force: bool = False) -> None:
    dvc_repro("stage2", force)


# The pipeline order; a test checks it equals dvc.yaml's stages and rsmoe.stages.STAGES.
TASKS = (validate, prepare, stage1, propagate, stage2)


@flow(name="rsmoe", log_prints=True)
def pipeline(force: bool = False) -> None:
    """Run every stage in order; `force` reruns each stage even when DVC finds it up to date."""
    for stage_task in TASKS:
        stage_task(force)


if __name__ == "__main__":
    pipeline()
