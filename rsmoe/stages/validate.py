"""Stage `validate`: Great Expectations suites over the raw data; quarantine bad records.

Reads `paths.raw` (and `data.captions` / `data.qa` when set); writes
`paths.validated/report.json`. Fails on hard errors, carries on past quarantined records.
"""
from __future__ import annotations

from typing import Any

from rsmoe.data.validation import validate
from rsmoe.params import Params
from rsmoe.stages import StageError


def run(params: Params) -> dict[str, Any]:
    report = validate(params.paths.raw, params.validate_, captions=params.data.captions,
                      qa=params.data.qa, bands=params.data.bands, progress=True)
    out = params.paths.validated / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report.to_json(out)
    print(report.summary())
    if not report.ok:
        raise StageError(f"validation found hard errors; see {out}")
    return {"report": str(out), "counts": report.counts}
