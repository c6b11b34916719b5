"""Deterministic synthetic DOTA-format scenes: the pipeline's embedded default dataset.

No captioned remote sensing imagery can be downloaded, so `synthesize` paints aerial-looking
scenes (textured ground, roads, water, trees, buildings with shadows) and places objects of
the 16 DOTA v1.5 classes in the arrangements they have in real imagery: cars in parking rows,
planes along an apron, ships moored at piers, tanks in grids, courts in groups. Every object's
labelTxt polygon is exactly the box it was painted in, so `prepare` treats the output like DOTA.

Geometry: an object is an oriented box (`Frame`): centre in px, length along its heading and
width across it in metres. Painters draw in local metres, `a` to the right of the heading and
`b` towards the tail (the head is at b = -length/2). A label lists the corners front-left,
front-right, back-right, back-left: clockwise in image coordinates, starting at the left corner
of the head as DOTA does; objects without a head (tanks, courts, ...) start at the top-left-most
corner instead. A scene is one `numpy.random.default_rng([seed, index])` stream, so it does not
depend on how many scenes are generated.
"""
from __future__ import annotations

from rsmoe.data.synth.api import render_scene, scene_id, synthesize, theme_of
from rsmoe.data.synth.canvas import Canvas, Frame
from rsmoe.data.synth.constants import (
    DIFFICULT_AREA,
    GSD_RANGE,
    HEADLESS,
    IMAGESOURCE,
    PNG_COMPRESS_LEVEL,
    THEMES,
)

__all__ = [
    "DIFFICULT_AREA", "GSD_RANGE", "HEADLESS", "IMAGESOURCE", "PNG_COMPRESS_LEVEL", "THEMES",
    "Canvas", "Frame", "render_scene", "scene_id", "synthesize", "theme_of",
]
