"""Painters: one per DOTA class, drawing inside the box only (shadows fall outside, as in DOTA)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rsmoe.data.records import Point
from rsmoe.data.synth.constants import (
    BOX,
    CAR,
    CRANE,
    HELI,
    HULL,
    POOL,
    TAIL,
    TANK,
    TRUCK,
)

if TYPE_CHECKING:  # canvas.py imports PAINTERS at runtime; only annotations need these here
    from rsmoe.data.synth.canvas import Canvas, Frame


def _chamfer(f: Frame, r: float) -> list[Point]:
    hw, hl = f.width / 2, f.length / 2
    r = min(r, hw * 0.8, hl * 0.8)
    return f.pts([(-hw + r, -hl), (hw - r, -hl), (hw, -hl + r), (hw, hl - r),
                  (hw - r, hl), (-hw + r, hl), (-hw, hl - r), (-hw, -hl + r)])


def _small_vehicle(cv: Canvas, f: Frame) -> None:
    hw, hl, L = f.width / 2, f.length / 2, f.length
    body = _chamfer(f, 0.45)
    cv.shadow(body, 1.5)
    cv.poly(body, cv.tone(cv.pick(CAR)))
    glass = (38, 42, 50)
    cv.poly(f.rect(-hw + 0.2, -hl + 0.27 * L, hw - 0.2, -hl + 0.39 * L), glass)  # windscreen
    cv.poly(f.rect(-hw + 0.25, hl - 0.22 * L, hw - 0.25, hl - 0.14 * L), glass)  # rear window


def _large_vehicle(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    cv.shadow(f.rect(-hw, -hl, hw, hl), 3.2)
    if cv.rng.random() < 0.3:  # bus: one body with roof units
        body = cv.tone(cv.pick(TRUCK))
        cv.poly(_chamfer(f, 0.5), body)
        cv.poly(f.rect(-hw + 0.2, -hl + 0.2, hw - 0.2, -hl + 0.9), (45, 50, 58))
        for b in (-0.2 * f.length, 0.15 * f.length):
            cv.poly(f.rect(-0.7, b - 1.0, 0.7, b + 1.0), cv.shade(body, 0.8))
        return
    cab_len = min(2.4, 0.3 * f.length)  # tractor unit, then the trailer or box body
    cab = cv.tone(cv.pick(TRUCK))
    cv.poly(f.rect(-hw + 0.1, -hl, hw - 0.1, -hl + cab_len), cab)
    cv.poly(f.rect(-hw + 0.2, -hl + 0.15, hw - 0.2, -hl + 0.7), (45, 50, 58))
    trailer = cv.tone(cv.pick(TRUCK))
    cv.poly(f.rect(-hw, -hl + cab_len + 0.4, hw, hl), trailer)
    cv.poly(f.rect(-hw + 0.3, -hl + cab_len + 0.7, hw - 0.3, hl - 0.3), cv.shade(trailer, 0.93))


def _plane(cv: Canvas, f: Frame) -> None:
    L, S = f.length, f.width  # S = wingspan
    fw = max(0.085 * L, 3.0)  # fuselage width
    sweep, root = cv.rng.uniform(0.12, 0.28) * L, -0.12 * L
    fus = [(-fw / 2, -L / 2 + 1.3 * fw), (0, -L / 2), (fw / 2, -L / 2 + 1.3 * fw),
           (fw / 2, 0.36 * L), (0.15 * fw, L / 2), (-0.15 * fw, L / 2), (-fw / 2, 0.36 * L)]
    parts = [fus]
    for side in (-1, 1):
        parts.append([(side * fw / 2, root), (side * S / 2, root + sweep),
                      (side * S / 2, root + sweep + 0.06 * L), (side * fw / 2, root + 0.24 * L)])
        parts.append([(side * fw * 0.3, 0.37 * L), (side * 0.19 * S, 0.45 * L),
                      (side * 0.19 * S, 0.48 * L), (side * fw * 0.3, 0.46 * L)])
    for p in parts:
        cv.shadow(f.pts(p), 3.5, alpha=80, extrude=False)
    body = cv.tone(cv.pick(((246, 246, 244), (246, 246, 244), (210, 212, 215))), 4)
    for p in parts[1:]:
        cv.poly(f.pts(p), cv.shade(body, 0.92))
    cv.poly(f.pts(fus), body)
    for side in (-1, 1):  # engines under the wings, a third of the way out
        a = side * 0.3 * S / 2 + side * fw / 2
        b = root + sweep * (abs(a) - fw / 2) / (S / 2 - fw / 2) - 0.05 * L
        cv.poly(f.rect(a - 0.03 * L, b, a + 0.03 * L, b + 0.08 * L), (150, 152, 156))
    cv.poly(f.rect(-0.25 * fw, 0.36 * L, 0.25 * fw, 0.49 * L), cv.tone(cv.pick(TAIL)))  # tail fin
    cv.poly(f.rect(-0.3 * fw, -L / 2 + 0.8 * fw, 0.3 * fw, -L / 2 + 1.1 * fw), (50, 55, 65))


def _helicopter(cv: Canvas, f: Frame) -> None:
    L, D = f.length, f.width  # D = rotor diameter
    hub = -L / 2 + D / 2  # rotor disc touches the front of the box
    body_pts = f.pts([(1.3 * math.cos(t), hub + 0.6 + 2.6 * math.sin(t))
                      for t in np.linspace(0, 2 * math.pi, 20, endpoint=False)])
    boom = f.rect(-0.35, hub + 2.5, 0.35, L / 2 - 0.5)
    colour = cv.tone(cv.pick(HELI))
    for p in (body_pts, boom):
        cv.shadow(p, 2.0, extrude=False)
    cv.poly(f.circle(0, hub, D / 2 - 0.1, 32), (0, 0, 0, 28))  # blur of the turning rotor
    cv.poly(body_pts, colour)
    cv.poly(boom, cv.shade(colour, 0.9))
    cv.poly(f.rect(-1.2, L / 2 - 0.9, 1.2, L / 2 - 0.2), cv.shade(colour, 0.8))  # tail rotor
    cv.poly(f.pts([(0, hub - 2.0), (0.9, hub - 0.9), (-0.9, hub - 0.9)]), (45, 55, 70))  # canopy
    t0 = cv.rng.uniform(0, math.pi)
    for k in range(int(cv.rng.integers(2, 5))):
        t = t0 + k * 2 * math.pi / 4
        d = np.array([math.cos(t), math.sin(t)])
        n = np.array([-d[1], d[0]]) * 0.25
        tip = d * (D / 2 - 0.2)
        cv.poly(f.pts([n + (0, hub), tip + n + (0, hub), tip - n + (0, hub), -n + (0, hub)]),
                (55, 57, 60))


def _ship(cv: Canvas, f: Frame) -> None:
    L, W = f.length, f.width
    hull = f.pts([(0, -L / 2), (W / 2, -L / 2 + 0.2 * L), (W / 2, L / 2 - 0.04 * L),
                  (0.4 * W, L / 2), (-0.4 * W, L / 2), (-W / 2, L / 2 - 0.04 * L),
                  (-W / 2, -L / 2 + 0.2 * L)])
    cv.shadow(hull, min(0.06 * L, 5.0), alpha=90)
    if L < 45:  # boat or yacht: white hull, a cabin
        deck = cv.tone(cv.pick(((246, 246, 244), (238, 240, 242), (225, 220, 205))), 4)
        cv.poly(hull, deck)
        cv.poly(f.rect(-0.3 * W, -0.12 * L, 0.3 * W, 0.22 * L), cv.shade(deck, 0.93))
        cv.poly(f.rect(-0.28 * W, -0.12 * L, 0.28 * W, -0.06 * L), (45, 55, 70))
        return
    cv.poly(hull, cv.tone(cv.pick(HULL)))
    deck = cv.tone(cv.pick(((120, 60, 50), (150, 150, 150), (170, 90, 60), (185, 175, 150))))
    cv.poly(f.rect(-0.42 * W, -0.28 * L, 0.42 * W, 0.44 * L), deck)
    if cv.rng.random() < 0.55:  # container ship: bays of coloured boxes across the deck
        n_bays = max(4, int(0.62 * L / 7))
        rows = max(2, int(0.8 * W / 2.6))
        for i in range(n_bays):
            b0 = -0.28 * L + i * 0.62 * L / n_bays
            for j in range(rows):
                if cv.rng.random() < 0.85:
                    a0 = -0.4 * W + j * 0.8 * W / rows
                    cv.poly(f.rect(a0, b0, a0 + 0.8 * W / rows - 0.2, b0 + 0.62 * L / n_bays - 0.4),
                            cv.tone(cv.pick(BOX)))
    else:  # tanker / bulk carrier: pipe along the deck, hatches
        cv.poly(f.rect(-0.04 * W, -0.3 * L, 0.04 * W, 0.32 * L), (205, 205, 200))
        for b in np.linspace(-0.22 * L, 0.22 * L, 5):
            cv.poly(f.rect(-0.3 * W, b - 0.03 * L, 0.3 * W, b + 0.03 * L), cv.shade(deck, 0.8))
    cv.poly(f.rect(-0.42 * W, 0.34 * L, 0.42 * W, 0.44 * L), (235, 235, 232))  # bridge house


def paint_lines(cv: Canvas, f: Frame, segs: Sequence[Sequence[float]], fill=(235, 235, 230),
           width: int = 1) -> None:
    """Court markings: segments (a0, b0, a1, b1) in local metres."""
    for a0, b0, a1, b1 in segs:
        cv.draw.line(f.pts([(a0, b0), (a1, b1)]), fill=fill, width=width)


def _storage_tank(cv: Canvas, f: Frame) -> None:
    r = f.length / 2 / cv.gsd
    cv.shadow(f.circle(0, 0, f.length / 2, 24), min(0.5 * f.length, 18.0), alpha=110)
    shell = cv.tone(cv.tank_colour or cv.pick(TANK), 4)
    cv.disc(f.cx, f.cy, r, shell)
    cv.disc(f.cx, f.cy, r * 0.9, cv.shade(shell, 0.94))  # floating roof inside the rim
    lit = np.array([-cv.sun[0], -cv.sun[1]]) / (np.hypot(*cv.sun) + 1e-9) * r * 0.25
    cv.disc(f.cx + lit[0], f.cy + lit[1], r * 0.45, cv.shade(shell, 0.97))
    cv.disc(f.cx, f.cy, max(1.0, r * 0.07), (90, 90, 88))


def _baseball_diamond(cv: Canvas, f: Frame) -> None:
    S = f.length  # square box; home plate at the back-left corner, outfield fan towards the head
    home = np.array([-S / 2, S / 2])
    t = np.linspace(0, math.pi / 2, 24)
    ray = np.stack([np.cos(t), -np.sin(t)], axis=1)  # unit directions from home across the fan
    cv.poly(f.pts(np.vstack([home, home + S * ray])), cv.tone((170, 130, 95)))  # warning track
    cv.poly(f.pts(np.vstack([home, home + (S - 4) * ray])), cv.tone((70, 152, 60)))
    mound = np.array([1, -1]) * 18.4 / math.sqrt(2)  # from home
    along = ray @ mound  # (24,) where each ray meets the 29 m skin circle around the mound
    reach = along + np.sqrt(along ** 2 - mound @ mound + 29.0 ** 2)
    cv.poly(f.pts(np.vstack([home, home + reach[:, None] * ray])), cv.tone((186, 128, 88)))
    base = 27.4
    diamond = home + np.array([[1.5, -1.5], [base - 1.5, -1.5], [base - 1.5, -base + 1.5],
                               [1.5, -base + 1.5]]) * 0.95
    cv.poly(f.pts(diamond), cv.tone((90, 150, 66)))
    cv.poly(f.circle(*(home + mound), 2.8), (186, 128, 88))
    cv.poly(f.circle(*home, 4.0), (186, 128, 88))
    paint_lines(cv, f, [(*home, *(home + (S - 4) * ray[0])), (*home, *(home + (S - 4) * ray[-1]))])
    for corner in ([base, 0], [base, -base], [0, -base]):
        cv.poly(f.circle(*(home + corner), 0.6, 6), (240, 240, 235))


def _tennis_court(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    outer, inner = cv.pick((((60, 115, 80), (70, 140, 92)), ((50, 90, 150), (60, 120, 175)),
                            ((170, 88, 62), (178, 96, 68)), ((70, 125, 90), (55, 95, 150))))
    cv.poly(f.rect(-hw, -hl, hw, hl), cv.tone(outer, 4))
    cv.poly(f.rect(-5.49, -11.89, 5.49, 11.89), cv.tone(inner, 4))
    paint_lines(cv, f, [(-5.49, -11.89, 5.49, -11.89), (-5.49, 11.89, 5.49, 11.89),
                   (-5.49, -11.89, -5.49, 11.89), (5.49, -11.89, 5.49, 11.89),
                   (-4.12, -11.89, -4.12, 11.89), (4.12, -11.89, 4.12, 11.89),
                   (-4.12, -6.4, 4.12, -6.4), (-4.12, 6.4, 4.12, 6.4), (0, -6.4, 0, 6.4)])
    paint_lines(cv, f, [(-6.4, 0, 6.4, 0)], fill=(40, 40, 40))  # net


def _basketball_court(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    outer, floor = cv.pick((((120, 120, 118), (190, 125, 75)), ((150, 150, 145), (60, 100, 160)),
                            ((150, 70, 60), (60, 125, 150)), ((110, 110, 115), (165, 75, 60))))
    cv.poly(f.rect(-hw, -hl, hw, hl), cv.tone(outer, 4))
    cv.poly(f.rect(-7.5, -14, 7.5, 14), cv.tone(floor, 4))
    key = cv.shade(floor, 0.8)
    for s in (-1, 1):
        cv.poly(f.rect(-2.45, s * 14, 2.45, s * 8.2), key)
        t = np.linspace(-1.35, 1.35, 16)  # three-point arc around the basket
        arc = np.stack([6.75 * np.sin(t), s * (12.4 - 6.75 * np.cos(t))], axis=1)
        cv.draw.line(f.pts(arc), fill=(235, 235, 230), width=1)
    cv.outline(f.rect(-7.5, -14, 7.5, 14), (235, 235, 230))
    cv.outline(f.circle(0, 0, 1.8, 16), (235, 235, 230))
    paint_lines(cv, f, [(-7.5, 0, 7.5, 0)])


def _stadium(f: Frame, hl: float, hw: float, n: int = 20) -> list[Point]:
    """A running-track shape: straights joined by semicircles of radius hw."""
    t = np.linspace(0, math.pi, n)
    front = np.stack([-hw * np.cos(t), -(hl - hw) - hw * np.sin(t)], axis=1)
    back = np.stack([hw * np.cos(t), (hl - hw) + hw * np.sin(t)], axis=1)
    return f.pts(np.vstack([front, back]))


def _ground_track_field(cv: Canvas, f: Frame) -> None:
    hl, hw = f.length / 2, f.width / 2
    track = cv.pick(((168, 78, 62), (168, 78, 62), (150, 70, 58), (70, 105, 150)))
    cv.poly(_stadium(f, hl, hw), cv.tone(track, 4))
    for k in range(1, 8):  # lane lines
        cv.outline(_stadium(f, hl - k * 1.22, hw - k * 1.22), cv.shade(track, 1.25))
    cv.poly(_stadium(f, hl - 10, hw - 10), cv.tone((66, 152, 62), 4))
    ph, pw = min(52.0, hl - 18), min(33.0, hw - 12)  # football pitch inside the track
    for k in range(-4, 4, 2):
        cv.poly(f.rect(-pw, k * ph / 4, pw, (k + 1) * ph / 4), (0, 0, 0, 14))
    cv.outline(f.rect(-pw, -ph, pw, ph), (232, 232, 228))
    paint_lines(cv, f, [(-pw, 0, pw, 0)], fill=(232, 232, 228))
    cv.outline(f.circle(0, 0, 9.15, 24), (232, 232, 228))


def _soccer_ball_field(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    grass = cv.tone(cv.pick(((64, 152, 60), (56, 160, 78), (84, 162, 66))), 4)  # watered or turf
    cv.poly(f.rect(-hw, -hl, hw, hl), grass)
    bands = 12
    for k in range(0, bands, 2):  # mowing stripes
        b0 = -hl + k * f.length / bands
        cv.poly(f.rect(-hw, b0, hw, b0 + f.length / bands), cv.shade(grass, 1.1))
    lh, lw = hl - 2.0, hw - 2.0
    white = (236, 236, 232)
    cv.outline(f.rect(-lw, -lh, lw, lh), white)
    paint_lines(cv, f, [(-lw, 0, lw, 0)], fill=white)
    cv.outline(f.circle(0, 0, 9.15, 24), white)
    for s in (-1, 1):
        cv.outline(f.rect(-20.16, s * lh, 20.16, s * (lh - 16.5)), white)
        cv.outline(f.rect(-9.16, s * lh, 9.16, s * (lh - 5.5)), white)
        cv.outline(f.rect(-3.66, s * lh, 3.66, s * (lh + 1.5)), white)


def _swimming_pool(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    cv.poly(f.rect(-hw, -hl, hw, hl), cv.tone((225, 225, 215), 4))  # coping
    water = cv.tone(cv.pick(POOL), 5)
    cv.poly(f.rect(-hw + 0.5, -hl + 0.5, hw - 0.5, hl - 0.5), water)
    if f.width >= 12:  # lanes along the length
        lanes = int(f.width // 2.5)
        paint_lines(cv, f, [(a, -hl + 2, a, hl - 2) for a in np.linspace(-hw, hw, lanes + 1)[1:-1]],
               fill=cv.shade(water, 0.7))


def _roundabout(cv: Canvas, f: Frame) -> None:
    R = f.length / 2
    ring = min(9.0, 0.3 * R + 3)
    cv.poly(f.circle(0, 0, R, 40), cv.tone((92, 92, 94), 3))
    if R > 20:  # lane divider of a two-lane ring
        cv.outline(f.circle(0, 0, R - ring / 2, 40), (200, 200, 195))
    cv.poly(f.circle(0, 0, R - ring, 36), (205, 205, 198))  # kerb
    cv.poly(f.circle(0, 0, R - ring - 0.8, 36), cv.tone((85, 135, 65)))
    for _ in range(int(R // 8)):
        a, b = cv.rng.uniform(-0.5, 0.5, 2) * (R - ring - 3)
        cv.poly(f.circle(a, b, cv.rng.uniform(1.5, 3.0), 10), cv.tone((45, 78, 40)))


def _pier(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    cv.shadow(f.rect(-hw, -hl, hw, hl), 2.5, alpha=80)
    deck = cv.tone((178, 175, 166), 4)
    cv.poly(f.rect(-hw, -hl, hw, hl), deck)
    cv.outline(f.rect(-hw + 0.4, -hl + 0.4, hw - 0.4, hl - 0.4), cv.shade(deck, 0.75))
    for b in np.arange(-hl + 6, hl - 3, 12.0):  # bollards along both edges
        for a in (-hw + 1.0, hw - 1.0):
            cv.poly(f.circle(a, b, 0.5, 6), (60, 60, 60))
    if hw > 8:  # rail tracks along the pier
        paint_lines(cv, f, [(a, -hl + 3, a, hl) for a in (-1.5, 1.5)], fill=cv.shade(deck, 0.7))


def _bridge(cv: Canvas, f: Frame) -> None:
    hw, hl = f.width / 2, f.length / 2
    cv.shadow(f.rect(-hw, -hl, hw, hl), 7.0, alpha=100)
    cv.poly(f.rect(-hw, -hl, hw, hl), cv.tone((150, 148, 142), 4))  # railings / walkways
    cv.poly(f.rect(-hw + 1.5, -hl, hw - 1.5, hl), cv.tone((92, 92, 95), 3))
    cv.dashes(*f.pts([(0, -hl), (0, hl)]), fill=(225, 225, 215), dash_m=3, gap_m=5)
    for b in np.arange(-hl + 15, hl - 5, 30.0):  # expansion joints
        paint_lines(cv, f, [(-hw + 1.5, b, hw - 1.5, b)], fill=(70, 70, 72))


def _container_crane(cv: Canvas, f: Frame) -> None:
    L, W = f.length, f.width  # boom along the length, gantry legs across the width
    hw, hl = W / 2, L / 2
    waterside = -hl + 0.55 * L
    landside = waterside + 0.22 * L
    colour = cv.tone(cv.pick(CRANE), 5)
    boom = f.rect(-1.8, -hl, 1.8, hl)
    frame = [f.rect(-hw, b - 1.2, hw, b + 1.2) for b in (waterside, landside)]
    frame += [f.rect(a, waterside, a + 1.4, landside) for a in (-hw, hw - 1.4)]
    cv.shadow(boom, 35.0, alpha=85, extrude=False)
    for p in frame:
        cv.shadow(p, 18.0, alpha=85)
    for p in frame:
        cv.poly(p, colour)
    cv.poly(boom, cv.shade(colour, 0.95))
    paint_lines(cv, f, [(-1.8, b, 1.8, b) for b in np.arange(-hl + 2, hl, 3.0)],
           fill=cv.shade(colour, 0.6))  # lattice of the boom
    cv.poly(f.rect(-3.5, landside + 0.03 * L, 3.5, landside + 0.14 * L), (225, 225, 222))


PAINTERS: dict[str, Callable[[Canvas, Frame], None]] = {
    "plane": _plane, "ship": _ship, "storage-tank": _storage_tank,
    "baseball-diamond": _baseball_diamond, "tennis-court": _tennis_court,
    "basketball-court": _basketball_court, "ground-track-field": _ground_track_field,
    "harbor": _pier, "bridge": _bridge, "large-vehicle": _large_vehicle,
    "small-vehicle": _small_vehicle, "helicopter": _helicopter, "roundabout": _roundabout,
    "soccer-ball-field": _soccer_ball_field, "swimming-pool": _swimming_pool,
    "container-crane": _container_crane,
}
