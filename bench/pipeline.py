"""Benchmark: `make run` on a fresh clone, the way a new user meets it.

    python bench/pipeline.py            ->  bench/results/pipeline.json

Clones this repository (its committed HEAD) into a temporary folder, with `../shared` beside
it as in CI, and runs `make run` there: creating .venv and installing (pip takes the wheels from
its local cache when they are there), writing the embedded corpus, then the whole flow
(validate ... export) on the small preset. Records the wall time and the peak resident memory
of the whole process tree (GNU time's maximum RSS of the largest process, and the peak of the
sum over the tree sampled every second). Targets: <= 20 minutes, <= 8 GB on the 2-core machine.
--keep keeps the clone; --reuse-venv links this checkout's .venv instead of installing (the
pipeline alone).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_rss(pid: int) -> int:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pipeline.json"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--reuse-venv", action="store_true", help="symlink this checkout's .venv (skip installation)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rsmoe-bench-"))
    shared = ROOT.parent / "shared"
    if shared.is_dir():
        (tmp / "shared").symlink_to(shared)
    clone = tmp / "rsmoe"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    if args.reuse_venv:
        (clone / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PREFECT_API"))}
    log = tmp / "make-run.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(["/usr/bin/time", "-v", "make", "run"], cwd=clone, env=env, stdout=f,
                                stderr=subprocess.STDOUT)
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        sampler.join()
    wall = time.perf_counter() - start
    text = log.read_text(errors="replace")
    max_rss_kb = next((int(line.split(":")[1]) for line in text.splitlines()
                       if "Maximum resident set size" in line), 0)
    result = {
        "wall_s": round(wall, 1), "peak_rss_gb": round(max(peak[0], max_rss_kb * 1024) / 2**30, 2),
        "tree_peak_rss_gb": round(peak[0] / 2**30, 2), "largest_process_rss_gb": round(max_rss_kb / 2**20, 2),
        "exit_code": code, "installed": not args.reuse_venv,
        "targets": {"wall_s": 1200, "peak_rss_gb": 8},
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "log_tail": text.splitlines()[-5:],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    if code:
        raise SystemExit(f"make run failed (exit {code}); log: {log}")


if __name__ == "__main__":
    main()
