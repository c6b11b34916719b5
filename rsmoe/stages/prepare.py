"""Stage `prepare`: DOTA scenes -> 512x512 RSICap crops, captions with aspect segments, QA, splits;
or a captioned set (`data.format` rsicap / karpathy / folder) -> the same layout, every reference kept.

Reads `paths.raw` (or `data.annotations` + `data.images`), `paths.validated/report.json` (to skip
quarantined records) and, for DOTA, the optional human annotations `data.captions` / `data.qa`;
writes `paths.prepared`.
"""
from __future__ import annotations

from typing import Any

from rsmoe.data.captioned import find_annotations
from rsmoe.data.prepare_captioned import prepare_captioned
from rsmoe.data.prepare import prepare
from rsmoe.data.report import ValidationReport
from rsmoe.params import Params
from rsmoe.stages import require


def run(params: Params) -> dict[str, Any]:
    report_path = require(params.paths.validated / "report.json", "validate")
    report = ValidationReport.from_json(report_path)
    data = params.data
    if data.format == "dota":
        stats = prepare(params.paths.raw, params.paths.prepared, params.prepare, captions=data.captions,
                        qa=data.qa, report=report, bands=data.bands)
        print(f"prepared {sum(stats['crops'].values())} crops from {stats['scenes']} scenes "
              f"(train/val/test {stats['crops']['train']}/{stats['crops']['val']}/{stats['crops']['test']}) "
              f"-> {params.paths.prepared}")
        return stats
    images = data.images or params.paths.raw / "images"
    stats = prepare_captioned(data.format, find_annotations(data.format, data.annotations, images), images,
                              params.paths.prepared, params.prepare, report=report, bands=data.bands)
    c, r = stats["crops"], stats["references"]
    print(f"prepared {stats['images']} {data.format} images (train/val/test {c['train']}/{c['val']}/{c['test']}; "
          f"references {r['train']}/{r['val']}/{r['test']}) -> {params.paths.prepared}")
    return stats
