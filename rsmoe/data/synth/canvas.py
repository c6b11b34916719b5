"""Geometry and canvas: the oriented box `Frame` and the `Canvas` a scene is painted on."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from rsmoe.data.records import DotaObject, Point
from rsmoe.data.synth.constants import CELL, DIFFICULT_AREA, GRASS, GROUND, RGB
from rsmoe.data.synth.painters import PAINTERS


@dataclass(frozen=True)
class Frame:
    """An oriented box: centre (px), length along the heading and width across it (metres)."""

    cx: float
    cy: float
    length: float
    width: float
    angle: float  # heading, radians in image axes: 0 = +x, pi/2 = +y (downwards)
    gsd: float

    def pts(self, ab: Sequence[Sequence[float]] | np.ndarray) -> list[Point]:
        """Local metres (a to the right of the heading, b towards the tail) -> image px."""
        ab = np.asarray(ab, dtype=np.float64).reshape(-1, 2) / self.gsd
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = self.cx - ab[:, 0] * s - ab[:, 1] * c
        y = self.cy + ab[:, 0] * c - ab[:, 1] * s
        return list(zip(x.tolist(), y.tolist()))

    def rect(self, a0: float, b0: float, a1: float, b1: float) -> list[Point]:
        return self.pts([(a0, b0), (a1, b0), (a1, b1), (a0, b1)])

    def circle(self, a: float, b: float, r: float, n: int = 28) -> list[Point]:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        return self.pts(np.stack([a + r * np.cos(t), b + r * np.sin(t)], axis=1))

    def corners(self) -> list[Point]:
        """Front-left, front-right, back-right, back-left in px, rounded as the label stores them."""
        hw, hl = self.width / 2, self.length / 2
        return [(round(x, 1), round(y, 1)) for x, y in self.rect(-hw, -hl, hw, hl)]

    def at(self, a: float, b: float, length: float, width: float, turn: float = 0.0) -> Frame:
        """A box centred at local (a, b), heading turned by `turn` from this one's."""
        (x, y), = self.pts([(a, b)])
        return Frame(x, y, length, width, self.angle + turn, self.gsd)


class Canvas:
    """One scene being painted: RGB image, coarse terrain and occupancy grids, the objects."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, gsd: float):
        self.rng, self.w, self.h, self.gsd = rng, width, height, gsd
        self.img = Image.new("RGB", (width, height), GRASS)
        self.draw = ImageDraw.Draw(self.img, "RGBA")  # RGBA fills blend: shadows are translucent
        gw, gh = -(-width // CELL), -(-height // CELL)
        self.terrain = Image.new("L", (gw, gh), GROUND)  # (gh, gw) codes GROUND / PAVED / WATER
        self._tdraw = ImageDraw.Draw(self.terrain)
        self._terrain_np: np.ndarray | None = None
        self.taken = np.zeros((gh, gw), dtype=bool)  # cells covered by objects, buildings, trees
        self.objects: list[DotaObject] = []
        self.tank_colour: RGB | None = None  # set while painting a farm of same-coloured tanks
        sun = rng.uniform(0, 2 * math.pi)
        # shadow offset in px per metre of height (sun elevation ~45-65 degrees)
        self.sun = np.array([math.cos(sun), math.sin(sun)]) * rng.uniform(0.5, 1.0) / gsd

    # -- small helpers --------------------------------------------------------------------
    def px(self, metres: float) -> float:
        return metres / self.gsd

    def frame(self, cx: float, cy: float, length: float, width: float, angle: float) -> Frame:
        return Frame(cx, cy, length, width, angle, self.gsd)

    def area(self, x0: float, y0: float, x1: float, y1: float) -> Frame:
        """An axis-aligned frame whose local (a, b) are image (x, y) directions, in metres."""
        return Frame((x0 + x1) / 2, (y0 + y1) / 2, (y1 - y0) * self.gsd, (x1 - x0) * self.gsd,
                     -math.pi / 2, self.gsd)

    def pick(self, options: Sequence):
        return options[int(self.rng.integers(len(options)))]

    def tone(self, rgb: RGB, spread: float = 8.0) -> RGB:
        """`rgb` with random brightness and a slight hue shift: no two objects look identical."""
        c = np.asarray(rgb, float) * self.rng.uniform(0.92, 1.06) + self.rng.normal(0, spread / 3, 3)
        return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]

    @staticmethod
    def shade(rgb: RGB, k: float) -> RGB:
        return tuple(int(min(255, v * k)) for v in rgb)  # type: ignore[return-value]

    # -- painting (image, and the terrain grid when `terrain` is given) ------------------
    def poly(self, pts: list[Point], fill, terrain: int | None = None) -> None:
        self.draw.polygon(pts, fill=fill)
        if terrain is not None:
            self._tdraw.polygon([(x / CELL, y / CELL) for x, y in pts], fill=terrain)
            self._terrain_np = None

    def line(self, pts: list[Point], fill, width_m: float, terrain: int | None = None) -> None:
        self.draw.line(pts, fill=fill, width=max(1, round(self.px(width_m))), joint="curve")
        if terrain is not None:
            self._tdraw.line([(x / CELL, y / CELL) for x, y in pts], fill=terrain,
                             width=max(1, round(self.px(width_m) / CELL)), joint="curve")
            self._terrain_np = None

    def outline(self, pts: list[Point], fill, width: int = 1) -> None:
        self.draw.line(pts + pts[:1], fill=fill, width=width)

    def disc(self, x: float, y: float, r: float, fill) -> None:
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def shadow(self, pts: list[Point], height_m: float, alpha: int = 105,
               extrude: bool = True) -> None:
        """Translucent shadow of a shape `height_m` tall: swept along the sun direction for
        things standing on the ground, only offset for things in the air (plane, boom)."""
        dx, dy = self.sun * height_m
        moved = [(x + dx, y + dy) for x, y in pts]
        self.draw.polygon(_hull(pts + moved) if extrude else moved, fill=(0, 0, 0, alpha))

    def dashes(self, p: Point, q: Point, fill, dash_m: float, gap_m: float, width: int = 1) -> None:
        p0, d = np.asarray(p, float), np.subtract(q, p)
        n = float(np.hypot(*d))
        for t in np.arange(0, n, self.px(dash_m + gap_m)):
            a, b = p0 + d * (t / n), p0 + d * (min(t + self.px(dash_m), n) / n)
            self.draw.line([tuple(a), tuple(b)], fill=fill, width=width)

    # -- occupancy -----------------------------------------------------------------------
    def _cells(self, f: Frame, margin_px: float) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the grid cells whose centres lie in the grown box."""
        hl, hw = f.length / f.gsd / 2 + margin_px, f.width / f.gsd / 2 + margin_px
        c, s = math.cos(f.angle), math.sin(f.angle)
        ex, ey = abs(c) * hl + abs(s) * hw, abs(s) * hl + abs(c) * hw
        gh, gw = self.taken.shape
        c0, c1 = max(int((f.cx - ex) / CELL), 0), min(int((f.cx + ex) / CELL) + 1, gw)
        r0, r1 = max(int((f.cy - ey) / CELL), 0), min(int((f.cy + ey) / CELL) + 1, gh)
        xs = (np.arange(c0, c1) + 0.5) * CELL - f.cx
        ys = (np.arange(r0, r1) + 0.5) * CELL - f.cy
        along = xs[None, :] * c + ys[:, None] * s
        across = -xs[None, :] * s + ys[:, None] * c
        rr, cc = np.nonzero((np.abs(along) <= hl) & (np.abs(across) <= hw))
        centre = (min(int(f.cy / CELL), gh - 1), min(int(f.cx / CELL), gw - 1))
        return np.append(rr + r0, centre[0]), np.append(cc + c0, centre[1])

    def fits(self, f: Frame, allowed: Sequence[int] = (GROUND,), margin_m: float = 1.0) -> bool:
        """Inside the image, on allowed terrain, and clear of everything placed so far."""
        xy = np.asarray(f.corners())
        if xy.min() < 1 or xy[:, 0].max() > self.w - 1 or xy[:, 1].max() > self.h - 1:
            return False
        if self._terrain_np is None:
            self._terrain_np = np.asarray(self.terrain)
        rr, cc = self._cells(f, 0.0)
        if not np.isin(self._terrain_np[rr, cc], allowed).all():
            return False
        rr, cc = self._cells(f, self.px(margin_m))
        return not self.taken[rr, cc].any()

    def block(self, f: Frame) -> None:
        self.taken[self._cells(f, 0.0)] = True

    def free_square(self, x: float, y: float, r: float, allowed: Sequence[int] = (GROUND,)) -> bool:
        """Whether the square of half-side r px around (x, y) is free ground (for trees)."""
        if not (0 <= x < self.w and 0 <= y < self.h):
            return False
        r0, r1 = max(int((y - r) / CELL), 0), int((y + r) / CELL) + 1
        c0, c1 = max(int((x - r) / CELL), 0), int((x + r) / CELL) + 1
        if self._terrain_np is None:
            self._terrain_np = np.asarray(self.terrain)
        t = self._terrain_np[r0:r1, c0:c1]
        return t.size > 0 and bool(np.isin(t, allowed).all()) and not self.taken[r0:r1, c0:c1].any()

    def place(self, category: str, f: Frame, allowed: Sequence[int] = (GROUND,),
              margin_m: float = 1.0, check: bool = True) -> bool:
        """Paint a labelled object in box `f` when it fits; its label is exactly that box."""
        if check and not self.fits(f, allowed, margin_m):
            return False
        self.block(f)
        PAINTERS[category](self, f)
        corners = f.corners()
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = corners
        area = 0.5 * ((x0 - x2) * (y1 - y3) - (x1 - x3) * (y0 - y2))  # of the rounded box, px^2
        self.objects.append(DotaObject(tuple(corners), category,  # type: ignore[arg-type]
                                       int(area < DIFFICULT_AREA)))
        return True


def _hull(pts: list[Point]) -> list[Point]:
    """Convex hull (monotone chain) of a few points."""
    ps = sorted(set(pts))

    def half(seq: Sequence[Point]) -> list[Point]:
        out: list[Point] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    return half(ps)[:-1] + half(ps[::-1])[:-1]
