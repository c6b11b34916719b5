"""Prefect plumbing the flows use (flows/ only composes tasks): a local Prefect server, the
markdown of the `rsmoe-run` artifact, and reading it back from the REST API."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def start_server(port: int, timeout: float = 90, env: dict | None = None) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port; returns once /api/health answers. The UI it
    serves is told the same address (otherwise it calls 127.0.0.1:4200 whatever the port)."""
    env = {**(os.environ if env is None else env), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    prefect = Path(sys.executable).parent / "prefect"
    proc = subprocess.Popen([str(prefect) if prefect.exists() else "prefect", "server", "start",
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode}; is port {port} free?")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"prefect server did not become healthy on port {port} within {timeout:.0f} s")


def run_markdown(name: str, outcome: str, done: list[str], overrides: dict, detail: str = "") -> str:
    """The `rsmoe-run` artifact of one flow run: its outcome, the stages that finished, the
    parameters set, and for a failure the failed command's last log lines."""
    lines = [f"# rsmoe run {name}: {outcome}", "",
             f"- stages finished: {', '.join(done) or 'none'}",
             f"- parameters set: {json.dumps(overrides) if overrides else 'none (params.yaml as committed)'}"]
    if detail:
        lines += ["", "Last log lines:", "", "```", detail.strip()[-4000:], "```"]
    return "\n".join(lines)


def last_run() -> str:
    """The newest `rsmoe-run` artifact's markdown. Asked of the REST API directly: in Prefect 3.8
    both `prefect artifact inspect` and the client's read_artifacts send filters (null, or empty
    ones that drop flow-level artifacts) that this server rejects or misreads."""
    from prefect.client.orchestration import get_client

    query = {"artifacts": {"key": {"any_": ["rsmoe-run"]}}, "sort": "CREATED_DESC", "limit": 1, "offset": 0}
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json=query)
        response.raise_for_status()
        found = response.json()
    return str(found[0]["data"]) if found else "no rsmoe run recorded on this Prefect server"
