"""Serve the deployment `full` of the flow `rsmoe`, retraining on the cron of params.yaml.

    make serve                                  # = python flows/deploy.py
    prefect deployment run rsmoe/full           # in another shell (PREFECT_API_URL as printed)

When no Prefect API is configured (PREFECT_API_URL unset), a local Prefect server is started on
127.0.0.1 (analytics off) and stopped again on exit. The deployment runs the pipeline in this
process; with unchanged data and params every stage is a DVC no-op, and a new `data.dvc`
version retrains and re-evaluates. For GPU hosts and work pools see prefect.yaml.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=4200, help="port of the local server (when one is started)")
    ap.add_argument("--cron", help="override params.yaml schedule.cron")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args(argv)

    from rsmoe.orchestration import start_server
    from rsmoe.params import load_params

    schedule = load_params(args.params).schedule
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        server = start_server(args.port)
        os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{args.port}/api"
        print(f"started a local Prefect server: export PREFECT_API_URL={os.environ['PREFECT_API_URL']}", flush=True)
    try:
        from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
        from prefect.client.schemas.schedules import CronSchedule

        from pipeline import pipeline  # flows/pipeline.py, beside this script

        # one run at a time on this checkout (one params.yaml, one DVC workspace): a run started
        # while another is running waits in the queue instead of racing it
        pipeline.serve(name="full", schedules=[CronSchedule(cron=args.cron or schedule.cron, timezone=schedule.timezone)],
                       global_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
                       description="rsmoe: validate, prepare, train, evaluate, export (DVC stages)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
