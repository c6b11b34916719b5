"""Background context: ground, roads, lots, buildings, trees, fields. Painted, never labelled."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
from PIL import Image, ImageFilter

from rsmoe.data.records import Point
from rsmoe.data.synth.canvas import Canvas, Frame
from rsmoe.data.synth.constants import BOX, CELL, FLAT_ROOF, GROUND, PAVED, RGB, ROOF
from rsmoe.data.synth.painters import paint_lines


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise with features of about `cell` px: (h, w) float32, roughly unit spread.
    Drawn on a coarse grid and upsampled, which is what makes it cheap."""
    gh, gw = h // cell + 3, w // cell + 3
    small = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32))
    big = small.resize((gw * cell, gh * cell), Image.Resampling.BICUBIC)
    return np.asarray(big)[cell:cell + h, cell:cell + w]


def paint_ground(cv: Canvas, a: RGB, b: RGB, grain: float = 0.08) -> None:
    """Two materials (grass and soil, say) mixed by large-scale noise, with a finer grain."""
    rng, h, w = cv.rng, cv.h, cv.w
    mix = 1 / (1 + np.exp(-3 * (_noise(rng, h, w, 160) + 0.5 * _noise(rng, h, w, 40))))  # (h, w)
    col = np.asarray(a, np.float32) + (np.subtract(b, a).astype(np.float32)) * mix[..., None]
    col *= (1 + grain * _noise(rng, h, w, 6))[..., None]
    cv.img.paste(Image.fromarray(np.clip(col, 0, 255).astype(np.uint8)))


def finish_scene(cv: Canvas) -> np.ndarray:
    """Sensor look: slight blur, brightness drifting over the scene, pixel noise. (h, w, 3) uint8."""
    rng, h, w = cv.rng, cv.h, cv.w
    arr = np.asarray(cv.img.filter(ImageFilter.GaussianBlur(0.6)), np.float32)
    light = 1 + 0.05 * _noise(rng, h, w, 128) + 0.03 * _noise(rng, h, w, 4)  # (h, w)
    arr = arr * light[..., None] + 2.5 * rng.standard_normal((h, w, 1), dtype=np.float32)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def free_spot(cv: Canvas, region: Sequence[float]) -> tuple[float, float]:
    """A uniform random point of region (x0, y0, x1, y1 px); an empty region yields a point
    outside the image, which then never fits."""
    x0, y0, x1, y1 = region
    if x1 < x0 or y1 < y0:
        return -1e6, -1e6
    return cv.rng.uniform(x0, x1), cv.rng.uniform(y0, y1)


def car_size(rng: np.random.Generator) -> tuple[float, float]:
    length = rng.uniform(3.8, 5.2)
    return length, length * rng.uniform(0.38, 0.44)


def truck_size(rng: np.random.Generator) -> tuple[float, float]:
    return rng.uniform(8.0, 16.0), rng.uniform(2.4, 2.6)


def ship_size(rng: np.random.Generator, lo: float, hi: float) -> tuple[float, float]:
    length = rng.uniform(lo, hi)
    return length, length * rng.uniform(0.14, 0.19)


def random_axis(cv: Canvas) -> Callable[[], float]:
    """Headings along the scene's street grid, slightly off."""
    return lambda: cv.pick((0.0, math.pi / 2)) + cv.rng.normal(0, 0.02)


def paint_road(cv: Canvas, pts: list[Point], width_m: float, colour: RGB = (88, 88, 90),
          centre: RGB | None = (225, 225, 215), dash: tuple[float, float] | None = (3.0, 6.0),
          kerb: RGB | None = None) -> None:
    if kerb is not None:  # pavements either side
        cv.line(pts, kerb, width_m + 4, terrain=PAVED)
    cv.line(pts, cv.tone(colour, 3), width_m, terrain=PAVED)
    for p, q in pairwise(pts):
        if centre is not None and dash is not None:
            cv.dashes(p, q, centre, *dash)
        elif centre is not None:
            cv.draw.line([p, q], fill=centre, width=1)


def place_traffic(cv: Canvas, pts: list[Point], width_m: float, per_100m: float = 3.0,
             parked: bool = False, trucks: float = 0.12) -> None:
    """Vehicles along a road: in their lane (right-hand traffic) or parked at the kerb."""
    for p, q in pairwise(pts):
        d = np.subtract(q, p)
        n = float(np.hypot(*d))
        seg = cv.frame(p[0] + d[0] / 2, p[1] + d[1] / 2, n * cv.gsd, width_m, math.atan2(d[1], d[0]))
        for _ in range(int(cv.rng.poisson(per_100m * n * cv.gsd / 100))):
            side, large = cv.pick((-1, 1)), cv.rng.random() < trucks
            L, W = truck_size(cv.rng) if large else car_size(cv.rng)
            lane = width_m / 2 - W / 2 - 0.5 if parked else width_m / 4
            f = seg.at(side * lane, cv.rng.uniform(-0.5, 0.5) * seg.length, L, W,
                       (0.0 if side > 0 else math.pi) + cv.rng.normal(0, 0.02))
            cv.place("large-vehicle" if large else "small-vehicle", f, (PAVED,), 1.5)


def paint_parking_lot(cv: Canvas, lot: Frame, fill: float, large: bool = False) -> None:
    """Paint lot `lot` (rows run along its width) and park vehicles nose-in, in facing rows."""
    slot_len, slot_w, aisle = (17.0, 4.2, 14.0) if large else (5.0, 2.6, 7.0)
    pairs = max(1, int((lot.length - aisle) // (2 * slot_len + aisle)))
    cols = int((lot.width - 2) // slot_w)
    used = pairs * 2 * slot_len + (pairs - 1) * aisle  # metres across the rows
    paved = lot.at(0, 0, min(lot.length, used + 2 * aisle), lot.width)  # no empty asphalt beyond
    cv.poly(paved.corners(), cv.tone((84, 85, 88), 3), terrain=PAVED)
    a0 = -cols * slot_w / 2
    for p in range(pairs):
        mid = -used / 2 + p * (2 * slot_len + aisle) + slot_len  # the line the noses point to
        paint_lines(cv, lot, [(a0, mid, -a0, mid)] + [(a0 + k * slot_w, mid - slot_len, a0 + k * slot_w,
                                                   mid + slot_len) for k in range(cols + 1)],
               fill=(210, 210, 200))
        for side in (-1, 1):
            for k in range(cols):
                if cv.rng.random() > fill:
                    continue
                L, W = truck_size(cv.rng) if large else car_size(cv.rng)
                L = min(L, slot_len - 0.8)
                turn = (0.0 if side > 0 else math.pi) + cv.rng.normal(0, 0.03)
                turn += math.pi if cv.rng.random() < 0.12 else 0.0  # backed in
                f = lot.at(a0 + (k + 0.5) * slot_w + cv.rng.normal(0, 0.1),
                           mid + side * (cv.rng.uniform(0.3, 0.6) + L / 2), L, W, turn)
                cv.place("large-vehicle" if large else "small-vehicle", f, (PAVED,), 0.05)


def try_parking_lot(cv: Canvas, region: tuple[float, float, float, float], size: tuple[float, float],
             fill: float, large: bool = False, angle: Callable[[], float] | None = None,
             tries: int = 30) -> Frame | None:
    """A parking lot of `size` (across rows, along rows; metres) at a free spot in `region`."""
    for _ in range(tries):
        x, y = free_spot(cv, region)
        lot = cv.frame(x, y, *size, angle() if angle else -math.pi / 2)
        if cv.fits(lot, (GROUND, PAVED), 2.0):
            paint_parking_lot(cv, lot, fill, large)
            return lot
    return None


def paint_building(cv: Canvas, f: Frame, height_m: float, gable: bool = False) -> bool:
    if not cv.fits(f, (GROUND,), 1.5):
        return False
    cv.block(f)
    hw, hl = f.width / 2, f.length / 2
    cv.shadow(f.rect(-hw, -hl, hw, hl), height_m, alpha=125)
    if gable:  # pitched roof: the two slopes lit differently
        roof = cv.tone(cv.pick(ROOF))
        ridge_along = f.length >= f.width
        cv.poly(f.rect(-hw, -hl, 0, hl) if ridge_along else f.rect(-hw, -hl, hw, 0), roof)
        cv.poly(f.rect(0, -hl, hw, hl) if ridge_along else f.rect(-hw, 0, hw, hl),
                cv.shade(roof, 0.78))
        return True
    roof = cv.tone(cv.pick(FLAT_ROOF), 5)
    cv.poly(f.rect(-hw, -hl, hw, hl), cv.shade(roof, 0.82))  # parapet
    cv.poly(f.rect(-hw + 0.8, -hl + 0.8, hw - 0.8, hl - 0.8), roof)
    for _ in range(int(cv.rng.integers(0, 2 + int(f.length * f.width // 500)))):  # roof units
        a, b = cv.rng.uniform(-0.4, 0.4) * f.width, cv.rng.uniform(-0.4, 0.4) * f.length
        s = cv.rng.uniform(1.0, 3.0)
        cv.shadow(f.rect(a - s, b - s, a + s, b + s), 1.5)
        cv.poly(f.rect(a - s, b - s, a + s, b + s), cv.shade(roof, 1.12))
    return True


def place_buildings(cv: Canvas, n: int, region: tuple[float, float, float, float],
               size: tuple[float, float], height: tuple[float, float], gable: bool = False,
               tries: int = 15) -> None:
    angle = random_axis(cv)
    for _ in range(n):
        for _ in range(tries):
            x, y = free_spot(cv, region)
            f = cv.frame(x, y, cv.rng.uniform(*size), cv.rng.uniform(*size), angle())
            if paint_building(cv, f, cv.rng.uniform(*height), gable):
                break


def paint_tree(cv: Canvas, x: float, y: float, radius_m: float) -> None:
    r = cv.px(radius_m)
    if not cv.free_square(x, y, r):
        return
    cv.taken[max(int((y - r) / CELL), 0):int((y + r) / CELL) + 1,
             max(int((x - r) / CELL), 0):int((x + r) / CELL) + 1] = True
    t = np.linspace(0, 2 * math.pi, 12, endpoint=False)
    crown_pts = list(zip((x + r * np.cos(t)).tolist(), (y + r * np.sin(t)).tolist()))
    cv.shadow(crown_pts, 1.1 * radius_m, 120, extrude=False)  # the crown is up in the air
    crown = cv.tone((46, 74, 38), 10)
    cv.disc(x, y, r, crown)
    lit = -cv.sun / (np.hypot(*cv.sun) + 1e-9) * r * 0.3
    cv.disc(x + lit[0], y + lit[1], r * 0.55, cv.shade(crown, 1.2))


def place_trees(cv: Canvas, clusters: int, region: tuple[float, float, float, float] | None = None,
           per: tuple[int, int] = (3, 14), spread_m: float = 9.0) -> None:
    """Clumps of tree crowns on free ground."""
    x0, y0, x1, y1 = region or (0, 0, cv.w, cv.h)
    for _ in range(clusters):
        cx, cy = free_spot(cv, (x0, y0, x1, y1))
        for _ in range(int(cv.rng.integers(*per))):
            dx, dy = cv.rng.normal(0, cv.px(spread_m), 2)
            paint_tree(cv, cx + dx, cy + dy, cv.rng.uniform(1.8, 4.2))


def paint_fields(cv: Canvas) -> float:
    """Patchwork of crop fields on a jittered, rotated grid; returns the grid angle."""
    rng, px = cv.rng, cv.px
    ang = rng.uniform(-0.5, 0.5)
    c, s = math.cos(ang), math.sin(ang)
    span = math.hypot(cv.w, cv.h) / 2 + 40
    du, dv = px(rng.uniform(90, 150)), px(rng.uniform(60, 110))
    us, vs = np.arange(-span - du, span + du, du), np.arange(-span - dv, span + dv, dv)
    u, v = np.meshgrid(us, vs)  # (rows, cols) grid corners, rotated about the centre
    g = np.stack([cv.w / 2 + u * c - v * s, cv.h / 2 + u * s + v * c], axis=-1)
    g += rng.normal(0, px(6), g.shape)
    crops = ((120, 150, 60), (150, 170, 80), (190, 175, 100), (140, 115, 80), (95, 130, 55),
             (170, 150, 90), (110, 100, 75), (160, 140, 110))
    for i in range(len(vs) - 1):
        for j in range(len(us) - 1):
            q = [tuple(g[i, j]), tuple(g[i, j + 1]), tuple(g[i + 1, j + 1]), tuple(g[i + 1, j])]
            xy = np.asarray(q)
            if xy[:, 0].max() < 0 or xy[:, 1].max() < 0 or xy[:, 0].min() > cv.w or xy[:, 1].min() > cv.h:
                continue
            colour = cv.tone(cv.pick(crops), 6)
            cv.poly(q, colour)
            if rng.random() < 0.7:  # tram lines / furrows along the field
                stripe = cv.shade(colour, cv.pick((0.8, 1.15)))
                for t in np.linspace(0, 1, int(np.hypot(*(xy[3] - xy[0])) / px(rng.uniform(3, 7)))):
                    cv.draw.line([tuple(xy[0] + (xy[3] - xy[0]) * t), tuple(xy[1] + (xy[2] - xy[1]) * t)],
                                 fill=stripe, width=1)
            cv.outline(q, (105, 120, 70), width=max(1, round(px(1.5))))  # grass margins
    return ang


def place_containers(cv: Canvas, yard: Frame) -> None:
    """Container stacks: blocks of 6 rows of 12 m boxes, lanes between; rows run along a."""
    hw, hl = yard.width / 2, yard.length / 2
    for b0 in np.arange(-hl + 4, hl - 16, 25.0):
        for a0 in np.arange(-hw + 4, hw - 30, 40.0):
            blk = yard.at(a0 + 18, b0 + 7.5, 15.0, 36.0)
            if not cv.fits(blk, (PAVED, GROUND), 0.5):
                continue
            cv.block(blk)
            for r in range(6):
                for k in range(3):
                    if cv.rng.random() < 0.88:
                        a, b = a0 + k * 12.2, b0 + r * 2.5
                        cv.poly(yard.rect(a, b, a + 12.0, b + 2.35), cv.tone(cv.pick(BOX), 6))


def scatter_objects(cv: Canvas, category: str, n: int, size: Callable[[], tuple[float, float]],
             region: tuple[float, float, float, float], allowed: Sequence[int] = (GROUND,),
             margin_m: float = 2.0, angle: Callable[[], float] | None = None,
             tries: int = 30) -> list[Frame]:
    """Up to n objects at random free spots of `region` (x0, y0, x1, y1 px)."""
    placed = []
    for _ in range(n):
        L, W = size()
        for _ in range(tries):
            x, y = free_spot(cv, region)
            f = cv.frame(x, y, L, W, angle() if angle else cv.rng.uniform(-math.pi, math.pi))
            if cv.place(category, f, allowed, margin_m):
                placed.append(f)
                break
    return placed


def group_objects(cv: Canvas, category: str, n: int, size: tuple[float, float],
           region: tuple[float, float, float, float], pitch: float | None = None,
           angle: Callable[[], float] | None = None, allowed: Sequence[int] = (GROUND,),
           margin_m: float = 3.0, tries: int = 40) -> list[Frame]:
    """n equal objects side by side (courts of a club, a row of tanks or cranes), placed as a
    whole where the whole row fits; `pitch` is the centre spacing across them, metres."""
    L, W = size
    pitch = pitch or W
    for _ in range(tries):
        x, y = free_spot(cv, region)
        row = cv.frame(x, y, L, (n - 1) * pitch + W, angle() if angle else -math.pi / 2)
        if cv.fits(row, allowed, margin_m):
            frames = [row.at((k - (n - 1) / 2) * pitch, 0, L, W) for k in range(n)]
            for f in frames:
                cv.place(category, f, check=False)
            return frames
    return []
