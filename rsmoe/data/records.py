"""Plain records shared by the data modules (DOTA objects, crop objects, captions).

Coordinates are pixels, x to the right and y downwards, origin at the top-left corner of the
image the record belongs to (a scene for `DotaObject`, a 512x512 crop for `CropObject`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# DOTA v1.5 categories, in the devkit's order; v1.0 is the same list without container-crane.
DOTA_V15_CLASSES: tuple[str, ...] = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "roundabout", "soccer-ball-field", "swimming-pool", "container-crane",
)
DOTA_V10_CLASSES: tuple[str, ...] = DOTA_V15_CLASSES[:-1]

# The RSICap caption aspects, in caption order (paper: theme -> objects -> relations; N=4 adds
# absolute positions before relations).
ASPECTS: tuple[str, ...] = ("theme", "objects", "positions", "relations")

# The RSIEval question types (its `type` field, normalised by rsmoe.data.report.qa_type).
QA_TYPES: tuple[str, ...] = (
    "presence", "quantity", "color", "ab_position", "re_position", "area_comp", "road_ori",
    "image", "scene", "reasoning",
)

Point = tuple[float, float]


@dataclass(frozen=True)
class DotaObject:
    """One labelTxt row: an oriented box as 4 corner points, its class and difficult flag."""

    polygon: tuple[Point, Point, Point, Point]
    category: str
    difficult: int = 0


@dataclass
class DotaLabel:
    """One labelTxt file: optional header (`imagesource:`, `gsd:`) and its objects."""

    objects: list[DotaObject] = field(default_factory=list)
    imagesource: str | None = None
    gsd: float | None = None  # metres per pixel, when the header gives it


@dataclass(frozen=True)
class CropObject:
    """An object as seen inside one crop, after clipping (what captions and QA are written from).

    `polygon` is the part of the object inside the crop, in crop pixels; `area` is that part's
    area in px^2; `visible` is area inside / full object area; `truncated` is True when the
    object is cut by the crop border beyond the tolerance; `color` is a colour name measured
    from the crop's pixels inside the polygon (None when it could not be measured);
    `angle` is the orientation of the box's long side in degrees in [0, 180).
    """

    category: str
    polygon: tuple[Point, ...]
    center: Point
    area: float
    length: float  # long side of the oriented box, px
    width: float  # short side, px
    angle: float
    visible: float
    truncated: bool
    difficult: int = 0
    color: str | None = None
