"""DOTA labelTxt files (v1.0 and v1.5): reading row by row, strict parsing, writing.

A labelTxt file is optional header lines (`imagesource:GoogleEarth`, `gsd:0.146`) followed by
one object per line: `x1 y1 x2 y2 x3 y3 x4 y4 category difficult` (the four corners of an
oriented box, clockwise). DOTA v1.0 files sometimes omit the header or the difficult flag.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rsmoe.data.records import DOTA_V15_CLASSES, DotaLabel, DotaObject
from rsmoe.errors import InputError


class LabelFormatError(InputError):
    """A labelTxt row that cannot be used; names the file, the line and the fix."""

    def __init__(self, path: str | Path, line: int, problem: str, fix: str):
        self.line = line
        super().__init__(path, problem, fix, record=line)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class LabelRow:
    line: int  # 1-based line number in the file
    text: str


def read_label_rows(path: str | Path) -> tuple[dict[str, str], list[LabelRow]]:
    """Header fields and the raw object rows of a labelTxt file, without checking the rows."""
    header: dict[str, str] = {}
    rows: list[LabelRow] = []
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        if sep and key in ("imagesource", "gsd") and not rows:
            header[key] = value.strip()
            continue
        rows.append(LabelRow(i, line))
    return header, rows


def parse_row(row: LabelRow, path: str | Path = "<labelTxt>",
              classes: tuple[str, ...] = DOTA_V15_CLASSES) -> DotaObject:
    """One row -> DotaObject, or LabelFormatError naming what is wrong."""
    parts = row.text.split()
    if len(parts) not in (9, 10):
        raise LabelFormatError(path, row.line, f"expected 8 coordinates, a category and a difficult flag, "
                               f"found {len(parts)} fields", "write 'x1 y1 x2 y2 x3 y3 x4 y4 category difficult'")
    try:
        coords = [float(v) for v in parts[:8]]
    except ValueError:
        raise LabelFormatError(path, row.line, f"non-numeric coordinate in {parts[:8]}",
                               "coordinates must be numbers in pixels") from None
    if not all(math.isfinite(c) for c in coords):
        raise LabelFormatError(path, row.line, "coordinate is NaN or infinite", "coordinates must be finite numbers")
    category = parts[8]
    if category not in classes:
        raise LabelFormatError(path, row.line, f"unknown category '{category}'",
                               f"use one of the DOTA classes: {', '.join(classes)}")
    difficult = 0
    if len(parts) == 10:
        if parts[9] not in ("0", "1"):
            raise LabelFormatError(path, row.line, f"difficult flag '{parts[9]}' is not 0 or 1",
                                   "set the last field to 0 (normal) or 1 (difficult)")
        difficult = int(parts[9])
    pts = tuple((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return DotaObject(polygon=pts, category=category, difficult=difficult)  # type: ignore[arg-type]


def read_label(path: str | Path, classes: tuple[str, ...] = DOTA_V15_CLASSES) -> DotaLabel:
    """Strictly parse a labelTxt file; the first bad row raises LabelFormatError."""
    header, rows = read_label_rows(path)
    gsd = None
    if "gsd" in header:
        try:
            gsd = float(header["gsd"])
        except ValueError:
            gsd = None  # DOTA ships 'gsd:null' for some images
    return DotaLabel(objects=[parse_row(r, path, classes) for r in rows],
                     imagesource=header.get("imagesource"), gsd=gsd)


def format_label(label: DotaLabel) -> str:
    lines = []
    if label.imagesource is not None:
        lines.append(f"imagesource:{label.imagesource}")
    if label.gsd is not None:
        lines.append(f"gsd:{label.gsd:g}")
    for obj in label.objects:
        coords = " ".join(f"{v:.1f}" for pt in obj.polygon for v in pt)
        lines.append(f"{coords} {obj.category} {obj.difficult}")
    return "\n".join(lines) + "\n"


def write_label(path: str | Path, label: DotaLabel) -> None:
    Path(path).write_text(format_label(label), encoding="utf-8")
