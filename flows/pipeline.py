"""Prefect flow `rsmoe`: the pipeline's stages in order, each run through DVC.

Every task is a thin wrapper around `dvc repro <stage>`, so Prefect and DVC share one stage
definition (dvc.yaml) and one cache: a stage whose deps and params did not change is a no-op.

    python flows/pipeline.py                       # run the flow once (a temporary local Prefect server)
    python flows/pipeline.py --experts 1           # paper Table V ablation, as a DVC experiment
    python flows/pipeline.py --strategy one-stage  # paper Table VII ablation (`dvc exp show` lists both)
    python flows/pipeline.py --last-run            # the last run's outcome, failed stage and log tail

Every run leaves a markdown artifact `rsmoe-run` (completed, or the failed stage with its last log
lines); a failed run exits non-zero, so `make run` and a scheduler see it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from rsmoe.evaluation.scoring import scores_markdown
from rsmoe.orchestration import last_run, run_markdown
from rsmoe.params import set_params
from rsmoe.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]


def dvc(*args: str) -> None:
    """Run `dvc ARGS` in the repository, streaming its output into the Prefect log."""
    logger = get_run_logger()
    bin_dir = Path(sys.executable).parent  # the venv's dvc and rsmoe, whatever PATH says
    # progress bars update every 10 s here: each update becomes one line of the Prefect log
    env = {"TQDM_MININTERVAL": "10", **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(bin_dir / "dvc") if (bin_dir / "dvc").exists() else "dvc", *args]
    logger.info("$ dvc %s", " ".join(args))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def dvc_repro(stage: str, force: bool = False) -> None:
    """`dvc repro STAGE` (and the stages it depends on, when they are out of date)."""
    dvc("repro", stage, *(["--force", "--single-item"] if force else []))


@task(name="push", retries=2, retry_delay_seconds=10)
def dvc_push() -> None:
    """Send data, prepared crops, checkpoints and exports to the default DVC remote."""
    dvc("push")


@task(name="summary")
def summary() -> str:
    """A markdown artifact: the model's scores beside its baselines, and where the report is."""
    metrics = ROOT / "metrics" / "evaluate.json"
    if not metrics.is_file():
        return ""
    text = scores_markdown(json.loads(metrics.read_text()))
    create_markdown_artifact(text, key="rsmoe-evaluation", description="rsmoe evaluation scores")
    return text


def run_status(outcome: str, done: list[str], overrides: dict, detail: str = "") -> None:
    """A markdown artifact `rsmoe-run` on every run, success or failure: the outcome, the stages
    that finished, the parameters set, and for a failure the failed command's last log lines, so
    a failed scheduled run is readable without the UI (`python flows/pipeline.py --last-run`)."""
    from prefect.runtime import flow_run

    create_markdown_artifact(run_markdown(flow_run.get_name() or "", outcome, done, overrides, detail),
                             key="rsmoe-run", description=f"rsmoe run: {outcome}")


def stage_task(name: str):
    """The Prefect task of one stage: `dvc repro NAME`, retried once for transient failures."""

    @task(name=name, retries=1, retry_delay_seconds=5)
    def run(force: bool = False) -> None:
        dvc_repro(name, force)

    return run


# The pipeline order; a test checks it equals dvc.yaml's stages and rsmoe.stages.STAGES.
TASKS = tuple(stage_task(name) for name in STAGES)


@task(name="experiment")
def run_experiment(overrides: dict, name: str) -> str:
    """The whole pipeline as a DVC experiment in a temporary copy of the checkout (`dvc exp run
    --temp -S ...`): the workspace's params.yaml and outputs stay as they are, and `dvc exp show`
    lists the run with its params and metrics (`dvc exp apply NAME` brings it into the workspace).
    The converted weights and the feature cache are the workspace's (absolute paths), so the
    temporary copy does not convert or encode anything again."""
    import yaml

    paths = yaml.safe_load((ROOT / "params.yaml").read_text())["paths"]
    caches = {f"paths.{k}": str((ROOT / paths[k]).resolve()) for k in ("cache", "features")}
    sets = [arg for k, v in {**caches, **overrides}.items() for arg in ("-S", f"{k}={v}")]
    dvc("exp", "run", "--temp", "-n", name, *sets)
    return name


@flow(name="rsmoe", log_prints=True)
def pipeline(preset: str | None = None, experts: int | None = None, strategy: str | None = None,
             force: bool = False, push: bool = True, experiment: str | None = None) -> None:
    """Run every stage in order through DVC.

    preset / experts / strategy: when any is given, the run is a DVC experiment in a temporary
    copy of the checkout (`dvc exp run --temp -S ...`, named `experiment` or after the flow run):
    the workspace's params.yaml and outputs are left alone and `dvc exp show` lists the run with
    its params and metrics. `experts=1` is paper Table V's single-expert ablation,
    `strategy="one-stage"` Table VII's. Without them every stage runs in the workspace, skipped
    by DVC when up to date. force: rerun every stage even when DVC finds it up to date. push:
    `dvc push` data and checkpoints to the default DVC remote after a successful run (plain runs;
    an experiment is shared with `dvc exp push`).
    """
    from prefect.runtime import flow_run

    overrides = {k: v for k, v in (("model.preset", preset), ("model.experts", experts),
                                   ("train.strategy", strategy)) if v is not None}
    if overrides:
        set_params(ROOT / "params.yaml", overrides, dry_run=True)  # a bad value fails here, named
        name = experiment or f"flow-{flow_run.get_name() or 'run'}"
        try:
            run_experiment(overrides, name)
        except Exception as exc:
            run_status(f"failed: experiment `{name}`", [], overrides, str(exc))
            raise
        run_status(f"completed: experiment `{name}` (`dvc exp show`; `dvc exp apply {name}` to take it)",
                   list(STAGES), overrides)
        return
    done: list[str] = []
    for name, run_stage in zip(STAGES, TASKS):
        try:
            run_stage(force)
        except Exception as exc:
            run_status(f"failed at stage `{name}`", done, overrides, str(exc))
            raise
        done.append(name)
    summary()
    if push:
        dvc_push()
    run_status("completed", done, overrides)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Run the rsmoe flow once.")
    ap.add_argument("--preset")
    ap.add_argument("--experts", type=int, choices=(1, 2, 3, 4))
    ap.add_argument("--strategy", choices=("two-stage", "one-stage"))
    ap.add_argument("--force", action="store_true", help="rerun every stage")
    ap.add_argument("--no-push", action="store_true", help="do not `dvc push` the outputs afterwards")
    ap.add_argument("--name", help="the DVC experiment's name (runs with --preset / --experts / --strategy)")
    ap.add_argument("--last-run", action="store_true",
                    help="print the last run's outcome (the `rsmoe-run` artifact: failed stage, last log lines) and exit")
    args = ap.parse_args(argv)
    if args.last_run:
        print(last_run())
        return
    pipeline(preset=args.preset, experts=args.experts, strategy=args.strategy, force=args.force,
             push=not args.no_push, experiment=args.name)


if __name__ == "__main__":
    main()
