"""Tiling DOTA scenes into fixed-size crops and clipping oriented boxes (DOTA devkit convention).

Windows follow the devkit's `ImgSplit`: stride = crop_size - overlap, the last window in each
direction is shifted back to end at the image border, columns outer and rows inner; a scene
smaller than the crop is padded with black at the bottom / right. Objects are clipped with
shapely; an object is kept when at least `keep_threshold` of its area is inside the window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon, box

from rsmoe.data.records import CropObject, DotaObject


@dataclass(frozen=True)
class Window:
    index: int  # crop index inside its scene -> name P{scene}_{index:04d}
    left: int
    top: int
    size: int


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Window origins along one axis, the last one flush with the border (devkit ImgSplit)."""
    starts, pos = [], 0
    while True:
        if pos + size >= length:
            starts.append(max(length - size, 0))
            return starts
        starts.append(pos)
        pos += stride


def windows(width: int, height: int, size: int, overlap: int) -> list[Window]:
    if overlap >= size:
        raise ValueError(f"overlap ({overlap}) must be smaller than the crop size ({size})")
    stride = size - overlap
    out = []
    for left in _starts(width, size, stride):
        for top in _starts(height, size, stride):
            out.append(Window(len(out), left, top, size))
    return out


def crop_pixels(rgb: np.ndarray, win: Window) -> np.ndarray:
    """(H, W, 3) scene -> (size, size, 3) crop, zero-padded where the scene is smaller."""
    part = rgb[win.top:win.top + win.size, win.left:win.left + win.size]
    if part.shape[:2] == (win.size, win.size):
        return np.ascontiguousarray(part)
    out = np.zeros((win.size, win.size, rgb.shape[2]), dtype=rgb.dtype)
    out[:part.shape[0], :part.shape[1]] = part
    return out


def box_geometry(polygon: Polygon) -> tuple[float, float, float]:
    """Long side, short side (px) and orientation of the long side in degrees [0, 180)."""
    rect = polygon.minimum_rotated_rectangle
    if rect.geom_type != "Polygon":
        return 0.0, 0.0, 0.0
    pts = list(rect.exterior.coords)[:4]
    edges = [(pts[(i + 1) % 4][0] - pts[i][0], pts[(i + 1) % 4][1] - pts[i][1]) for i in range(2)]
    lengths = [math.hypot(dx, dy) for dx, dy in edges]
    long_i = 0 if lengths[0] >= lengths[1] else 1
    dx, dy = edges[long_i]
    angle = math.degrees(math.atan2(dy, dx)) % 180.0
    return max(lengths), min(lengths), round(angle, 2) % 180.0


def clip_object(obj: DotaObject, win: Window, keep_threshold: float,
                truncated_below: float) -> CropObject | None:
    """The part of `obj` inside `win`, in crop coordinates, or None when too little is inside.

    The object's polygon is the convex hull of its 4 corners, so a box whose corners are listed
    in the wrong order (a bow-tie) still has its true area.
    """
    full = Polygon(obj.polygon).convex_hull
    if full.area <= 0:
        return None
    inside = full.intersection(box(win.left, win.top, win.left + win.size, win.top + win.size))
    visible = inside.area / full.area
    if inside.is_empty or visible < keep_threshold:
        return None
    if inside.geom_type != "Polygon":  # a sliver next to a full part: keep the largest piece
        inside = max(getattr(inside, "geoms", [inside]), key=lambda g: g.area)
    length, width, angle = box_geometry(full)
    coords = tuple((round(x - win.left, 2), round(y - win.top, 2)) for x, y in list(inside.exterior.coords)[:-1])
    c = inside.centroid
    return CropObject(
        category=obj.category, polygon=coords, center=(round(c.x - win.left, 2), round(c.y - win.top, 2)),
        area=round(inside.area, 2), length=round(length, 2), width=round(width, 2), angle=angle,
        visible=round(visible, 4), truncated=visible < truncated_below, difficult=obj.difficult,
    )


def clip_objects(objects: list[DotaObject], win: Window, keep_threshold: float,
                 truncated_below: float) -> list[CropObject]:
    kept = (clip_object(o, win, keep_threshold, truncated_below) for o in objects)
    return [o for o in kept if o is not None]
