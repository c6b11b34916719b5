"""Benchmark: how fast `rsmoe --help` and every `rsmoe SUBCOMMAND --help` answer.

    python bench/cli.py [--runs 5]   ->  bench/results/cli.json

Each command runs as a new process (`python -m rsmoe ... --help`, as the `rsmoe` script does),
--runs times after one untimed run (so the OS file cache is warm, as it is for a user's second
call); the median and the worst wall time are recorded. Target: every one under 1 s. The
subcommands are read from the parser itself, so a new one is timed without editing this file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def subcommands() -> list[str]:
    from rsmoe.cli import build_parser
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def time_command(args: list[str], runs: int) -> dict:
    cmd = [sys.executable, "-m", "rsmoe", *args]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)  # untimed: warms the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli.json"))
    args = ap.parse_args()
    commands = {"--help": ["--help"], **{f"{name} --help": [name, "--help"] for name in subcommands()}}
    rows = {}
    for label, argv in commands.items():
        rows[label] = time_command(argv, args.runs)
        print(f"rsmoe {label:<22} median {rows[label]['median_s']:.3f} s  max {rows[label]['max_s']:.3f} s", flush=True)
    worst = max(r["max_s"] for r in rows.values())
    result = {"worst_s": worst, "target_s": 1.0, "met": worst < 1.0, "runs": args.runs, "commands": rows,
              "python": platform.python_version(), "machine": platform.processor() or platform.machine(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst {worst:.3f} s (target < 1 s) -> {args.out}")


if __name__ == "__main__":
    main()
