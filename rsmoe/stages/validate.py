"""Stage `validate`: Great Expectations suites over the raw data; quarantine bad records.

Reads `paths.raw` (DOTA scenes, and `data.captions` / `data.qa` when set) or, with
`data.format` rsicap / karpathy / folder, the captioned set `data.annotations` + `data.images`;
writes `paths.validated/report.json`. Fails on hard errors, carries on past quarantined records.
"""
from __future__ import annotations

from typing import Any

from rsmoe.data.captioned import find_annotations
from rsmoe.data.validation import validate, validate_captioned
from rsmoe.errors import InputError
from rsmoe.params import Params
from rsmoe.stages import StageError


def run(params: Params) -> dict[str, Any]:
    data = params.data
    if data.format == "dota":
        report = validate(params.paths.raw, params.validate_, captions=data.captions,
                          qa=data.qa, bands=data.bands, progress=True)
    else:
        images = data.images or params.paths.raw / "images"
        try:
            annotations = find_annotations(data.format, data.annotations, images)
        except InputError as err:
            raise StageError(str(err)) from None
        report = validate_captioned(data.format, annotations, images, params.validate_, bands=data.bands,
                                    progress=True)
    out = params.paths.validated / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report.to_json(out)
    print(report.summary())
    if not report.ok:
        raise StageError(f"validation found hard errors; see {out}")
    return {"report": str(out), "counts": report.counts}
