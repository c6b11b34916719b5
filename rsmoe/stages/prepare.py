"""Stage `prepare`: DOTA scenes -> 512x512 RSICap crops, captions with aspect segments, QA, splits.

Reads `paths.raw`, `paths.validated/report.json` (to skip quarantined records) and the optional
human annotations `data.captions` / `data.qa`; writes `paths.prepared`.
"""
from __future__ import annotations

from typing import Any

from rsmoe.data.prepare import prepare
from rsmoe.data.report import ValidationReport
from rsmoe.params import Params
from rsmoe.stages import require


def run(params: Params) -> dict[str, Any]:
    report_path = require(params.paths.validated / "report.json", "validate")
    report = ValidationReport.from_json(report_path)
    stats = prepare(params.paths.raw, params.paths.prepared, params.prepare, captions=params.data.captions,
                    qa=params.data.qa, report=report, bands=params.data.bands)
    print(f"prepared {sum(stats['crops'].values())} crops from {stats['scenes']} scenes "
          f"(train/val/test {stats['crops']['train']}/{stats['crops']['val']}/{stats['crops']['test']}) "
          f"-> {params.paths.prepared}")
    return stats
