"""The stage lists of rsmoe/stages, dvc.yaml and the Prefect flow are one list."""
import pkgutil
from pathlib import Path

import pytest
import yaml

import rsmoe.stages
from rsmoe.stages import STAGES

REPO = Path(__file__).resolve().parents[1]


def test_stage_modules_dvc_and_flow_agree():
    modules = sorted(m.name for m in pkgutil.iter_modules(rsmoe.stages.__path__))
    assert sorted(STAGES) == modules
    dvc_stages = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert dvc_stages == list(STAGES)
    from flows.pipeline import TASKS, pipeline

    assert [t.name for t in TASKS] == list(STAGES)
    assert pipeline.name == "rsmoe"


def test_every_dvc_stage_runs_its_stage_module_and_reads_declared_params():
    from rsmoe.params import Params

    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    sections = set(Params.model_fields) | {"validate"}
    for name, stage in spec.items():
        assert stage["cmd"] == f"rsmoe stage {name}"
        for key in stage["params"]:  # a section, or section.field
            section, _, field = key.partition(".")
            assert section in sections, f"{name}: {key}"
            if field:
                model = Params.model_fields["validate_" if section == "validate" else section].annotation
                assert field in model.model_fields, f"{name}: {key}"
        assert f"rsmoe/stages/{name}.py" in stage["deps"]


def test_flow_runs_every_stage_through_dvc_in_order_then_pushes(monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    import flows.pipeline as fp

    calls = []
    monkeypatch.setattr(fp, "dvc", lambda *args: calls.append(args))
    with prefect_test_harness(server_startup_timeout=60):
        fp.pipeline(force=True)
    assert calls == [("repro", s, "--force", "--single-item") for s in STAGES] + [("push",)]


def test_dvc_accepts_the_pipeline_file():
    """DVC's own schema check (a stage-level plot's `y` must be one column, for instance)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    dvc = Path(sys.executable).parent / "dvc"
    out = subprocess.run([str(dvc) if dvc.exists() else shutil.which("dvc"), "stage", "list"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines() if line.strip()] == list(STAGES)


def test_flow_parameters_run_as_a_dvc_experiment_and_leave_params_alone(monkeypatch, tmp_path):
    """With preset / experts / strategy the flow runs `dvc exp run --temp -S ...` (the workspace's
    params.yaml untouched, the caches shared by absolute path); a bad value fails before DVC runs.
    (The real experiment runs, two at once on a served deployment, are in test_deploy.)"""
    from prefect.testing.utilities import prefect_test_harness

    import flows.pipeline as fp
    from rsmoe.params import ParamsError

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    before = (tmp_path / "params.yaml").read_bytes()
    monkeypatch.setattr(fp, "ROOT", tmp_path)
    calls, repro = [], []
    monkeypatch.setattr(fp, "dvc", lambda *args: calls.append(args))
    monkeypatch.setattr(fp, "dvc_repro", lambda stage, force=False: repro.append(stage))
    with prefect_test_harness(server_startup_timeout=60):
        fp.pipeline(experts=1, strategy="one-stage", push=False, experiment="n1")
        with pytest.raises(ParamsError, match="experts"):
            fp.pipeline(experts=7, push=False)
    assert calls == [("exp", "run", "--temp", "-n", "n1",
                      "-S", f"paths.cache={(tmp_path / '.cache/rsmoe').resolve()}",
                      "-S", f"paths.features={(tmp_path / '.cache/rsmoe/features').resolve()}",
                      "-S", "model.experts=1", "-S", "train.strategy=one-stage")]
    assert repro == [] and (tmp_path / "params.yaml").read_bytes() == before


def test_work_pool_deployment_matches_the_served_one():
    """prefect.yaml (work pools) declares the same flow entrypoint and schedule as flows/deploy.py."""
    from rsmoe.params import load_params

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    assert deployment["name"] == "full" and deployment["entrypoint"] == "flows/pipeline.py:pipeline"
    schedule = load_params(REPO / "params.yaml").schedule
    assert deployment["schedules"] == [{"cron": schedule.cron, "timezone": schedule.timezone}]


@pytest.mark.parametrize("stage, needs", [("prepare", "validate"), ("propagate", "stage1"), ("stage2", "propagate"),
                                          ("evaluate", "stage2"), ("export", "stage2")])
def test_a_stage_run_before_its_input_exists_says_which_stage_to_run(tmp_path, stage, needs):
    import sys
    sys.path.insert(0, str(REPO / "tests"))
    from train_fixtures import tiny_params

    from rsmoe.stages import StageError, load

    with pytest.raises(StageError, match=rf"not found; run `rsmoe stage {needs}` first"):
        load(stage).run(tiny_params(tmp_path, paths={"validated": str(tmp_path / "validate")}))
