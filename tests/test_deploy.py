"""The way users run the pipeline, end to end on the tiny preset, in a temporary git + DVC
repository: a real Prefect server on loopback, `flows/deploy.py` serving the deployment
`rsmoe/full`, `prefect deployment run rsmoe/full --watch` from the CLI; a second run re-runs no
stage; the flow pushed to the DVC remote, and after deleting the cache and outputs `dvc pull`
brings the checkpoints back byte-identical."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sh(cmd: list[str], cwd: Path, env: dict, timeout: float = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def _tail(log: Path, chars: int = 4000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.is_file() else f"{log}: no log"


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    repo = root / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "flows", "rsmoe"):  # rsmoe/: dvc.yaml's code deps (imports use the installed package)
        src = REPO / name
        (shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, repo / name))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["paths"]["cache"] = os.environ["RSMOE_CACHE"]  # converted weights: shared, not rebuilt
    params["synth"].update(scenes=3, min_size=512, max_size=512)  # one crop per scene: train / val / test
    params["model"]["preset"] = "tiny"
    params["train"].update(batch_size=1, checkpoint_every=50)
    params["stage1"]["max_steps"] = params["stage2"]["max_steps"] = 2
    params["evaluate"].update(max_new_tokens=4, vqa_max_new_tokens=3, samples=1)
    params["export"]["parity_images"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PREFECT_HOME": str(root / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}  # the served runner picks a new run up in 2 s, not 10
    env.pop("PREFECT_API_URL", None)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"],
                ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["dvc", "remote", "add", "-d", "local", str(root / "storage")],
                ["rsmoe", "synth", "--out", "data/raw"], ["dvc", "add", "-q", "data"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        _sh(cmd, repo, env)
    return root, repo, env


def _flow_run_states(port: int) -> list[str]:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/flow_runs/filter", method="POST",
                                     data=json.dumps({"limit": 50, "offset": 0}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return [run["state_type"] for run in json.loads(response.read())]


def _ui_lists_the_deployment(port: int) -> None:
    """The Prefect UI served on `port` (not 4200) reaches its API and lists the deployment `full`
    (headless Chromium renders the page's JavaScript)."""
    from chromium import dump_dom, require_chromium

    if not require_chromium("the Prefect UI", skip=False):
        return
    dom = ""
    for _ in range(3):  # the UI's first load can outlast one virtual-time budget on a busy machine
        dom = dump_dom(f"http://127.0.0.1:{port}/deployments")
        if ">full<" in dom:
            break
    assert "Can't connect to Server API" not in dom, dom[-2000:]
    assert ">full<" in dom, dom[-2000:]


def test_served_deployment_runs_then_is_a_no_op_and_outputs_round_trip_through_the_remote(project):
    root, repo, env = project
    port = _free_port()
    env = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    from rsmoe.orchestration import start_server

    server = start_server(port, timeout=120, env=env)  # as `make serve` starts it, on a non-default port
    log = root / "serve.log"
    serve = None
    try:
        # the served flow runs log to a file: an unread pipe fills up (64 KiB) and stalls the runs
        serve = subprocess.Popen([sys.executable, "flows/deploy.py"], cwd=repo, env=env, stdout=log.open("w"),
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.time() + 120  # until the deployment is registered
        while time.time() < deadline:
            inspect = subprocess.run([str(BIN / "prefect"), "deployment", "inspect", "rsmoe/full"], env=env,
                                     capture_output=True, text=True)
            if inspect.returncode == 0:
                break
            assert serve.poll() is None, _tail(log)
            time.sleep(2)
        # one run at a time on this checkout, later ones queued
        assert "'limit': 1" in inspect.stdout and "ENQUEUE" in inspect.stdout, inspect.stdout
        _ui_lists_the_deployment(port)

        def run_deployment() -> str:
            return _sh([str(BIN / "prefect"), "deployment", "run", "rsmoe/full", "--watch", "--watch-timeout", "900"],
                       repo, env, timeout=960)

        out = run_deployment()
        assert "Completed" in out, out
        for path in ("metrics/evaluate.json", "metrics/export.json", "reports/report.html",
                     "models/onnx/image_encoder.onnx", "models/stage2/config.json"):
            assert (repo / path).is_file(), path
        stamps = {p: p.stat().st_mtime_ns for p in (repo / "metrics").glob("*.json")}
        lock = (repo / "dvc.lock").read_text()

        out = run_deployment()  # unchanged data and params: every stage is a no-op
        assert "Completed" in out, out
        assert {p: p.stat().st_mtime_ns for p in (repo / "metrics").glob("*.json")} == stamps
        assert (repo / "dvc.lock").read_text() == lock

        # two overlapping runs with different parameters: each a DVC experiment in a temporary
        # copy, queued one after the other by the deployment's limit; the workspace is untouched
        workspace = (repo / "params.yaml").read_bytes()
        for n in (1, 2):
            _sh([str(BIN / "prefect"), "deployment", "run", "rsmoe/full", "-p", f"experts={n}",
                 "-p", f"experiment=exp-n{n}"], repo, env)
        deadline = time.time() + 1800  # a guard against a hang, generous for a slow machine
        while time.time() < deadline:  # the server's REST API: Prefect 3.8's `flow-run ls` sends a filter it rejects
            states = _flow_run_states(port)
            if states.count("COMPLETED") >= 4 or {"FAILED", "CRASHED"} & set(states):
                break
            time.sleep(5)
        assert states.count("COMPLETED") >= 4, f"{states}\n{_tail(log)}"
        shown = json.loads(_sh(["dvc", "exp", "show", "--json"], repo, env).strip().splitlines()[-1])
        found = {}

        def walk(node):
            if isinstance(node, dict):
                if str(node.get("name", "")).startswith("exp-n") and node.get("data"):
                    data = node["data"]
                    evaluated = data["metrics"]["metrics/evaluate.json"]["data"]  # DVC keeps the numbers
                    found[node["name"]] = (data["params"]["params.yaml"]["data"]["model"]["experts"],
                                           isinstance(evaluated["captions"]["CIDEr"], float))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(shown)
        assert found == {"exp-n1": (1, True), "exp-n2": (2, True)}, found
        assert (repo / "params.yaml").read_bytes() == workspace
        assert (repo / "dvc.lock").read_text() == lock
    finally:
        for proc in (serve, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    # a Stage II parameter makes stage2 stale and nothing upstream (evaluate and export follow
    # once stage2's output changes)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["stage2"]["max_steps"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = json.loads(_sh(["dvc", "status", "--json"], repo, env).strip().splitlines()[-1])
    assert sorted(stale) == ["stage2"], stale
    params["stage2"]["max_steps"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # the flow pushed: a lost cache and lost outputs come back from the remote, byte for byte
    before = {name: _tree_hashes(repo / "models" / name) for name in ("stage1", "stage2", "onnx")}
    assert any((root / "storage").rglob("*")), "nothing was pushed"
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "models")
    _sh(["dvc", "pull", "-q"], repo, env)
    assert {name: _tree_hashes(repo / "models" / name) for name in ("stage1", "stage2", "onnx")} == before


def test_a_failed_run_exits_non_zero_and_leaves_a_readable_artifact(project, tmp_path):
    """`python flows/pipeline.py` (what `make run` calls) with a paper preset but no local weights:
    stage1 fails; a non-zero exit, and the artifact `rsmoe-run` names the failed stage, the stages
    that finished and the stage's own error (with its fix), readable from the CLI without the UI."""
    root, repo, env = project
    env = {**env, "PREFECT_HOME": str(tmp_path / "prefect")}  # its own temporary server and database
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["model"]["preset"] = "paper-1b"  # model.instructblip / model.llm not set
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = subprocess.run([sys.executable, "flows/pipeline.py", "--no-push"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=600)
    finally:
        params_file.write_text(original)
    assert out.returncode != 0, out.stdout[-2000:]
    art = _sh([sys.executable, "flows/pipeline.py", "--last-run"], repo, env)
    assert "failed at stage `stage1`" in art and "stages finished: validate, prepare" in art, art
    assert "set model.instructblip in params.yaml" in art, art  # the stage's own error, with its fix
