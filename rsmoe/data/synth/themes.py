"""Themes: each lays out its context and places its objects the way they occur in DOTA."""
from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from rsmoe.data.synth.canvas import Canvas
from rsmoe.data.synth.constants import (
    CONCRETE,
    DRY,
    GRASS,
    GROUND,
    PAVED,
    SOIL,
    TANK,
    WATER,
    WATER_RGB,
)
from rsmoe.data.synth.context import (
    car_size,
    free_spot,
    group_objects,
    paint_building,
    paint_fields,
    paint_ground,
    paint_parking_lot,
    paint_road,
    paint_tree,
    place_buildings,
    place_containers,
    place_traffic,
    place_trees,
    random_axis,
    scatter_objects,
    ship_size,
    truck_size,
    try_parking_lot,
)


def _airport(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, GRASS, DRY)
    run_y = px(rng.uniform(30, 40))
    paint_road(cv, [(-9, run_y), (w + 9, run_y)], 45, (70, 70, 72), (235, 235, 235), (30.0, 20.0))
    for s in (-1, 1):  # runway edge lines
        cv.draw.line([(0, run_y + s * px(21)), (w, run_y + s * px(21))], fill=(225, 225, 225),
                     width=max(1, round(px(0.9))))
    taxi_y = run_y + px(rng.uniform(75, 90))
    paint_road(cv, [(-9, taxi_y), (w + 9, taxi_y)], 23, (96, 96, 97), (215, 180, 40), dash=None)
    x0, top, bottom = w * rng.uniform(0.16, 0.24), taxi_y + px(22), h - px(rng.uniform(40, 50))
    for x in (x0 + px(30), (x0 + w) / 2):  # links from the taxiway to the apron
        cv.line([(x, taxi_y), (x, top + 5)], (96, 96, 97), 23, terrain=PAVED)
    cv.poly(cv.area(x0, top, w, bottom).corners(), cv.tone(CONCRETE, 3), terrain=PAVED)
    for x in np.arange(x0, w, px(7.5)):  # joints between the concrete slabs
        cv.draw.line([(x, top), (x, bottom)], fill=(0, 0, 0, 16))
    for y in np.arange(top, bottom, px(7.5)):
        cv.draw.line([(x0, y), (w, y)], fill=(0, 0, 0, 16))
    paint_building(cv, cv.area(x0 + px(15), bottom + px(6), w - px(15), h - px(3)), 14.0)  # terminal
    x = x0 + px(8)
    while True:  # a row of planes at their stands, noses to the terminal
        L = rng.uniform(30, 60)
        S = L * rng.uniform(0.88, 1.05)
        if x + px(S) > w - px(45):
            break
        cx, cy = x + px(S / 2), bottom - px(L / 2 + rng.uniform(4, 10))
        cv.draw.line([(cx, top), (cx, cy)], fill=(215, 180, 40), width=max(1, round(px(0.3))))
        cv.place("plane", cv.frame(cx, cy, L, S, math.pi / 2 + rng.normal(0, 0.02)), (PAVED,), 2.0)
        x += px(S + rng.uniform(6, 20))
    if (bottom - top) * cv.gsd > 160:  # a second row on remote stands, noses to the taxiway
        x = x0 + px(rng.uniform(5, 40))
        while x < w - px(110):
            L = rng.uniform(25, 50)
            S = L * rng.uniform(0.88, 1.05)
            cv.place("plane", cv.frame(x + px(S / 2), top + px(L / 2 + rng.uniform(6, 12)), L, S,
                                       -math.pi / 2 + rng.normal(0, 0.02)), (PAVED,), 2.0)
            x += px(S + rng.uniform(8, 30))
    if rng.random() < 0.7:  # one taxiing
        L = rng.uniform(30, 55)
        scatter_objects(cv, "plane", 1, lambda: (L, L * rng.uniform(0.88, 1.05)), (0, taxi_y, w, taxi_y),
                 (PAVED, GROUND), 5.0, lambda: cv.pick((0.0, math.pi)))
    for k in range(int(rng.integers(1, 4))):  # helipads at the free end of the apron
        hx, hy = w - px(22), top + px(15 + 26 * k)
        cv.outline([(hx + px(8) * math.cos(t), hy + px(8) * math.sin(t))
                    for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)], (225, 190, 50), 2)
        L = rng.uniform(12, 17)
        cv.place("helicopter", cv.frame(hx, hy, L, L * rng.uniform(0.7, 0.8),
                                        rng.uniform(-math.pi, math.pi)), (PAVED,), 1.0)
    group_objects(cv, "large-vehicle", int(rng.integers(2, 6)), truck_size(rng), (x0, top, w, top + px(12)),
           pitch=4.0, angle=lambda: math.pi / 2, allowed=(PAVED,), margin_m=1.0)
    scatter_objects(cv, "small-vehicle", int(rng.integers(3, 9)), lambda: car_size(rng), (x0, top, w, bottom),
             (PAVED,), 2.0)
    scatter_objects(cv, "large-vehicle", int(rng.integers(1, 4)), lambda: truck_size(rng), (x0, top, w, bottom),
             (PAVED,), 2.0)
    D = rng.uniform(12, 22)  # fuel farm on the grass beside the apron
    group_objects(cv, "storage-tank", int(rng.integers(2, 4)), (D, D), (0, top, x0, bottom), pitch=D * 1.5,
           angle=lambda: cv.pick((0.0, -math.pi / 2)), margin_m=2.0)
    place_trees(cv, int(rng.integers(4, 10)), (0, top, x0, h))


def _harbor(cv: Canvas) -> None:
    rng, px, w, h, gsd = cv.rng, cv.px, cv.w, cv.h, cv.gsd
    paint_ground(cv, DRY, SOIL)
    quay = h * rng.uniform(0.38, 0.48)
    cv.poly([(0, 0), (w, 0), (w, quay), (0, quay)], cv.tone(cv.pick(WATER_RGB), 3), terrain=WATER)
    yard = quay + px(rng.uniform(95, 130))
    cv.poly([(0, quay), (w, quay), (w, yard), (0, yard)], cv.tone(CONCRETE, 3), terrain=PAVED)
    cv.draw.line([(0, quay), (w, quay)], fill=(70, 70, 70), width=2)  # fenders along the quay
    piers = []  # the DOTA 'harbor' objects: piers reaching out from the quay
    n = int(rng.integers(2, 4))
    for x in (np.arange(n) + rng.uniform(0.3, 0.7, n)) * w / n:
        # at most 440 px long, so that a 512 px crop can hold the whole pier
        Lp, Wp = min(440 * gsd, rng.uniform(0.5, 0.85) * quay * gsd), rng.uniform(12, 24)
        pier = cv.frame(x, quay - px(Lp / 2), Lp, Wp, -math.pi / 2)
        if cv.place("harbor", pier, (WATER, PAVED), 4.0):
            piers.append(pier)
    L, W = rng.uniform(60, 95), rng.uniform(16, 24)  # ship-to-shore cranes, booms over the water
    y = quay + px(4 - 0.05 * L)  # puts the waterside legs 4 m behind the quay edge
    group_objects(cv, "container-crane", int(rng.integers(2, 5)), (L, W), (0, y, w, y), pitch=W + 8,
           angle=lambda: -math.pi / 2, allowed=(WATER, PAVED), margin_m=1.0)
    for pier in piers:  # ships moored along both sides of each pier
        for side in (-1, 1):
            b = -pier.length / 2 + rng.uniform(2, 10)
            while (Ls := rng.uniform(25, max(26.0, min(150.0, pier.length - 5)))) < pier.length / 2 - b:
                if rng.random() < 0.8:
                    Ws = Ls * rng.uniform(0.14, 0.18)
                    cv.place("ship", pier.at(side * (pier.width / 2 + Ws / 2 + 1.5), b + Ls / 2, Ls,
                                             Ws, cv.pick((0.0, math.pi))), (WATER,), 1.0)
                b += Ls + rng.uniform(4, 25)
    x = px(rng.uniform(0, 30))
    while x < w:  # ships along the quay where cranes and piers leave room
        Ls = rng.uniform(30, 150)
        Ws = Ls * rng.uniform(0.14, 0.18)
        if rng.random() < 0.7:
            cv.place("ship", cv.frame(x + px(Ls / 2), quay - px(Ws / 2 + 2), Ls, Ws,
                                      cv.pick((0.0, math.pi))), (WATER,), 1.0)
        x += px(Ls + rng.uniform(5, 40))
    scatter_objects(cv, "ship", int(rng.integers(0, 4)), lambda: ship_size(rng, 12, 120),
             (0, 0, w, quay * 0.7), (WATER,), 15.0)
    place_containers(cv, cv.area(0, quay + px(52), w, yard - px(14)))
    place_traffic(cv, [(-9, yard - px(7)), (w + 9, yard - px(7))], 9, 2.5, trucks=0.6)
    paint_road(cv, [(-9, yard + px(10)), (w + 9, yard + px(10))], 10)
    place_traffic(cv, [(-9, yard + px(10)), (w + 9, yard + px(10))], 10, 2.0, trucks=0.4)
    land = (0, yard + px(20), w, h)
    if rng.random() < 0.6:
        D = rng.uniform(15, 35)
        group_objects(cv, "storage-tank", int(rng.integers(2, 5)), (D, D), land, pitch=D * 1.4)
    try_parking_lot(cv, land, (rng.uniform(20, 40), rng.uniform(30, 80)), rng.uniform(0.4, 0.9))
    place_buildings(cv, int(rng.integers(4, 10)), land, (25, 80), (8, 15))
    place_trees(cv, int(rng.integers(2, 8)), land)


def _street_grid(cv: Canvas, step: tuple[float, float], extent: int) -> list[float]:
    """Positions (px) of parallel streets across `extent` px, `step` metres apart."""
    out, pos = [], cv.px(cv.rng.uniform(0.3, 0.9) * step[0])
    while pos < extent - cv.px(0.3 * step[0]):
        out.append(pos)
        pos += cv.px(cv.rng.uniform(*step))
    return out


def _houses(cv: Canvas, blk: tuple[float, float, float, float]) -> None:
    """Detached houses along the block's top (and bottom) edge: drive, car, pool, garden trees."""
    rng, px, (x0, y0, x1, y1) = cv.rng, cv.px, blk
    for edge, s in [(y0, 1)] + ([(y1, -1)] if (y1 - y0) * cv.gsd > 45 else []):
        x = x0 + px(rng.uniform(0, 4))
        while x < x1 - px(14):
            lw, hd = rng.uniform(16, 23), rng.uniform(8, 12)
            hw = rng.uniform(8, lw - 5)
            hx, setback = x + px(lw / 2), rng.uniform(4, 7)
            paint_building(cv, cv.frame(hx, edge + s * px(setback + hd / 2), hd, hw,
                                   -math.pi / 2 + rng.normal(0, 0.02)), 6.0, gable=True)
            dx = hx + px(hw / 2 + 2.3)  # drive beside the house, often with the car on it
            drive = cv.frame(dx, edge + s * px(setback + 3), 2 * setback + 6, 3.0, -math.pi / 2)
            if rng.random() < 0.6 and cv.fits(drive, (GROUND, PAVED), 0.0):
                cv.poly(drive.corners(), (168, 166, 158), terrain=PAVED)
                if rng.random() < 0.7:
                    L, W = car_size(rng)
                    cv.place("small-vehicle", cv.frame(dx, edge + s * px(1.5 + L / 2), L, W,
                                                       -s * math.pi / 2), (PAVED,), 0.2)
            if rng.random() < 0.35:  # pool in the back garden
                pl = rng.uniform(8, 14)
                pw = pl * rng.uniform(0.45, 0.6)
                cv.place("swimming-pool", cv.frame(hx + px(rng.uniform(-2, 2)),
                                                   edge + s * px(setback + hd + 3 + pw / 2), pl, pw,
                                                   cv.pick((0.0, math.pi / 2))), (GROUND,), 1.0)
            for _ in range(int(rng.integers(0, 3))):
                paint_tree(cv, hx + px(rng.uniform(-8, 8)), edge + s * px(setback + hd + rng.uniform(6, 16)),
                      rng.uniform(2.0, 4.0))
            x += px(lw)


def _residential(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, (92, 126, 66), (125, 135, 85))
    rw = rng.uniform(7, 10)
    xs, ys = _street_grid(cv, (85, 130), w), _street_grid(cv, (60, 95), h)
    for x in xs:
        paint_road(cv, [(x, -9), (x, h + 9)], rw, kerb=(170, 170, 164))
    for y in ys:
        paint_road(cv, [(-9, y), (w + 9, y)], rw, kerb=(170, 170, 164))
    inner = [(x, y) for x in xs for y in ys if px(30) < x < w - px(30) and px(30) < y < h - px(30)]
    if inner:
        D = rng.uniform(28, 40)
        x, y = cv.pick(inner)
        cv.place("roundabout", cv.frame(x, y, D, D, -math.pi / 2), (GROUND, PAVED), 0.0)
    for x in xs:
        place_traffic(cv, [(x, 0), (x, h)], rw, 2.0, parked=rng.random() < 0.5)
    for y in ys:
        place_traffic(cv, [(0, y), (w, y)], rw, 2.0, parked=rng.random() < 0.5)
    kerb = px(rw / 2 + 2)
    ex, ey = [-kerb, *xs, w + kerb], [-kerb, *ys, h + kerb]
    blocks = [(max(xa + kerb, 0), max(ya + kerb, 0), min(xb - kerb, w), min(yb - kerb, h))
              for xa, xb in pairwise(ex) for ya, yb in pairwise(ey)]
    blocks = [b for b in blocks if min(b[2] - b[0], b[3] - b[1]) * cv.gsd > 25]
    park = max(range(len(blocks)), default=-1,
               key=lambda i: (blocks[i][2] - blocks[i][0]) * (blocks[i][3] - blocks[i][1]))
    for i, blk in enumerate(blocks):
        if i != park:
            _houses(cv, blk)
            continue
        tennis = (23.8 + 2 * rng.uniform(3, 5.5), 11 + 2 * rng.uniform(2.5, 3.5))
        group_objects(cv, "tennis-court", int(rng.integers(1, 4)), tennis, blk, angle=random_axis(cv), margin_m=2.0)
        group_objects(cv, "basketball-court", int(rng.integers(1, 3)), (30.0, 17.0), blk, angle=random_axis(cv))
        scatter_objects(cv, "swimming-pool", 1, lambda: (25.0, 12.5), blk, angle=random_axis(cv))
        place_trees(cv, 6, blk)
    place_trees(cv, 10)


def _industrial(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, (140, 135, 115), (118, 124, 92))
    xr, yr = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    paint_road(cv, [(xr, -9), (xr, h + 9)], 12)
    paint_road(cv, [(-9, yr), (w + 9, yr)], 12)
    place_traffic(cv, [(xr, 0), (xr, h)], 12, 2.0, trucks=0.4)
    place_traffic(cv, [(0, yr), (w, yr)], 12, 2.0, trucks=0.4)
    m = px(10)
    quads = [(0, 0, xr - m, yr - m), (xr + m, 0, w, yr - m), (0, yr + m, xr - m, h),
             (xr + m, yr + m, w, h)]
    for use, (x0, y0, x1, y1) in zip(rng.permutation(4), quads):
        pad = cv.area(x0 + px(4), y0 + px(4), x1 - px(4), y1 - px(4))
        if use == 0:  # tank farm: gravel pad, a grid of equal tanks, bund walls
            cv.poly(pad.corners(), cv.tone((128, 124, 112), 4), terrain=PAVED)
            D = min(rng.uniform(18, 45), pad.width / 3.2, pad.length / 3.2)
            cv.tank_colour = cv.pick(TANK)
            for b in np.arange(-pad.length / 2 + 0.8 * D, pad.length / 2 - 0.7 * D, 1.5 * D):
                n = int((pad.width - 0.6 * D) // (1.5 * D))
                for a in (np.arange(n) - (n - 1) / 2) * 1.5 * D:
                    if rng.random() < 0.9 and cv.place("storage-tank", pad.at(a, b, D, D), (PAVED,), 1.0):
                        cv.outline(pad.rect(a - 0.7 * D, b - 0.7 * D, a + 0.7 * D, b + 0.7 * D),
                                   (190, 186, 175), 2)
            cv.tank_colour = None
        elif use == 1:  # factory halls, staff car park
            place_buildings(cv, int(rng.integers(2, 5)), (x0, y0, x1, y1), (30, 110), (8, 18))
            try_parking_lot(cv, (x0, y0, x1, y1), (rng.uniform(20, 40), rng.uniform(30, 70)),
                     rng.uniform(0.5, 0.95))
        elif use == 2:  # truck yard
            try_parking_lot(cv, (x0, y0, x1, y1), (62.0, min(pad.width - 8, rng.uniform(40, 90))),
                     rng.uniform(0.5, 0.9), large=True)
            try_parking_lot(cv, (x0, y0, x1, y1), (rng.uniform(20, 35), rng.uniform(25, 60)),
                     rng.uniform(0.4, 0.9))
        else:  # container terminal: rail-mounted gantry cranes over the stacks
            cv.poly(pad.corners(), cv.tone(CONCRETE, 3), terrain=PAVED)
            L, W = min(rng.uniform(40, 60), pad.length - 6), rng.uniform(12, 18)
            group_objects(cv, "container-crane", int(rng.integers(1, 3)), (L, W), (x0, y0, x1, y1),
                   pitch=W + rng.uniform(20, 50), angle=random_axis(cv), allowed=(PAVED,), margin_m=1.0)
            place_containers(cv, pad)
            scatter_objects(cv, "large-vehicle", int(rng.integers(1, 4)), lambda: truck_size(rng),
                     (x0, y0, x1, y1), (PAVED,), 1.5, random_axis(cv))
    place_buildings(cv, int(rng.integers(4, 10)), (0, 0, w, h), (15, 50), (6, 14))
    place_trees(cv, int(rng.integers(6, 14)))


def _sports(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, GRASS, (112, 132, 72))
    road_y = h - px(rng.uniform(8, 14))
    paint_road(cv, [(-9, road_y), (w + 9, road_y)], 10)
    place_traffic(cv, [(0, road_y), (w, road_y)], 10, 2.0)
    area = (0, 0, w, road_y - px(12))
    axis = random_axis(cv)
    for gtf in scatter_objects(cv, "ground-track-field", 1, lambda: (rng.uniform(172, 180), rng.uniform(88, 96)),
                        area, margin_m=6.0, angle=axis, tries=200):
        for side in (-1, 1):  # spectator stands along the straights
            paint_building(cv, gtf.at(side * (gtf.width / 2 + 7), 0, rng.uniform(50, 90), 9.0), 7.0)
    scatter_objects(cv, "soccer-ball-field", int(rng.integers(1, 3)),
             lambda: (rng.uniform(100, 110), rng.uniform(64, 75)), area, margin_m=5.0, angle=axis,
             tries=100)
    side = rng.uniform(90, 115)  # home plate to the outfield fence
    scatter_objects(cv, "baseball-diamond", 1, lambda: (side, side), area, margin_m=4.0, tries=100)
    group_objects(cv, "tennis-court", int(rng.integers(2, 7)),
           (23.8 + 2 * rng.uniform(3, 5.5), 11 + 2 * rng.uniform(2.5, 3.5)), area, angle=axis)
    group_objects(cv, "basketball-court", int(rng.integers(1, 4)),
           (28 + 2 * rng.uniform(1, 2.5), 15 + 2 * rng.uniform(1, 2.5)), area, angle=axis)
    size = (50.0, 21.0) if rng.random() < 0.5 else (25.0, 12.5)
    for _ in range(60):  # outdoor pool on its paved deck
        x, y = free_spot(cv, area)
        pool = cv.frame(x, y, *size, axis())
        deck = pool.at(0, 0, size[0] + rng.uniform(8, 16), size[1] + rng.uniform(8, 14))
        if cv.fits(deck, (GROUND,), 3.0):
            cv.poly(deck.corners(), cv.tone((196, 192, 182), 4), terrain=PAVED)
            cv.place("swimming-pool", pool, check=False)
            break
    try_parking_lot(cv, (0, road_y - px(60), w, road_y - px(30)), (rng.uniform(30, 40), rng.uniform(40, 90)),
             rng.uniform(0.3, 0.9))
    place_buildings(cv, int(rng.integers(2, 5)), area, (12, 35), (4, 9))  # club houses
    place_trees(cv, int(rng.integers(10, 24)))


def _farmland(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, (130, 140, 85), SOIL)
    ang = paint_fields(cv)
    y0, y1 = h * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
    road = [(-9.0, y0), (w + 9.0, y1)]
    paint_road(cv, road, 6, cv.pick(((90, 90, 92), (150, 132, 104))), centre=None)
    place_traffic(cv, road, 6, 1.0, trucks=0.3)
    fx = w * rng.uniform(0.25, 0.75)  # farmstead beside the road
    fy = y0 + (y1 - y0) * (fx + 9) / (w + 18) + cv.pick((-1, 1)) * px(rng.uniform(50, 60))
    yard = cv.frame(fx, fy, rng.uniform(45, 60), rng.uniform(60, 80), -math.pi / 2)
    cv.poly(yard.corners(), cv.tone((160, 150, 130), 4), terrain=PAVED)
    hw, hl = px(yard.width / 2), px(yard.length / 2)
    inside = (fx - hw, fy - hl, fx + hw, fy + hl)
    around = (fx - hw - px(30), fy - hl - px(30), fx + hw + px(30), fy + hl + px(30))
    place_buildings(cv, int(rng.integers(2, 5)), around, (12, 40), (5, 9), gable=rng.random() < 0.5)
    D = rng.uniform(6, 12)  # silos
    group_objects(cv, "storage-tank", int(rng.integers(2, 5)), (D, D), inside, pitch=D + 1.5,
           allowed=(PAVED,), margin_m=1.0)
    scatter_objects(cv, "large-vehicle", int(rng.integers(1, 4)), lambda: truck_size(rng), inside,
             (PAVED,), 1.5, random_axis(cv))
    scatter_objects(cv, "small-vehicle", int(rng.integers(1, 4)), lambda: car_size(rng), inside,
             (PAVED,), 1.0, random_axis(cv))
    scatter_objects(cv, "large-vehicle", int(rng.integers(1, 3)),  # tractors working along the furrows
             lambda: (rng.uniform(5.5, 8), rng.uniform(2.4, 3.0)), (0, 0, w, h), (GROUND,), 8.0,
             lambda: ang + cv.pick((0.0, math.pi / 2, math.pi)))
    for t in np.linspace(0.02, 0.98, int(rng.integers(15, 40))):  # trees along the road
        x, y = road[0][0] + (road[1][0] - road[0][0]) * t, road[0][1] + (road[1][1] - road[0][1]) * t
        paint_tree(cv, x, y + cv.pick((-1, 1)) * px(7), rng.uniform(2.5, 4.5))
    place_trees(cv, int(rng.integers(3, 8)))


def _river(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, GRASS, (122, 130, 82))
    wr = rng.uniform(50, 110)  # river width, metres
    y0, slope = h * rng.uniform(0.4, 0.6), rng.uniform(-0.25, 0.25)
    amp, period, phase = px(rng.uniform(0, 25)), px(rng.uniform(500, 900)), rng.uniform(0, 2 * math.pi)

    def centre(x: np.ndarray) -> np.ndarray:  # river centre line y(x), px
        return y0 + slope * (x - w / 2) + amp * np.sin(2 * math.pi * x / period + phase)

    xs = np.linspace(-px(60), w + px(60), 64)
    mid = np.stack([xs, centre(xs)], axis=1)  # (64, 2)
    nrm = np.stack([-np.gradient(mid[:, 1], xs), np.ones_like(xs)], axis=1)
    nrm /= np.hypot(nrm[:, 0], nrm[:, 1])[:, None]  # unit normals, pointing downstream-right
    banks = [mid - nrm * px(wr / 2), mid + nrm * px(wr / 2)]
    for bank in banks:  # muddy margins
        cv.line([tuple(p) for p in bank], (128, 122, 96), 6.0)
    cv.poly([tuple(p) for p in np.vstack([banks[0], banks[1][::-1]])],
            cv.tone(cv.pick(WATER_RGB), 3), terrain=WATER)
    half = wr / 2 + rng.uniform(10, 16)  # bridge half-length, metres
    off = half + 20 + rng.uniform(6, 20)  # bank roads, metres from the centre line
    bank_roads = [[tuple(p) for p in mid + s * nrm * px(off)] for s in (-1, 1)]
    for road in bank_roads:
        paint_road(cv, road, 9)
    nb = int(rng.integers(1, 3))
    for k, xb in enumerate((np.arange(nb) + rng.uniform(0.3, 0.7, nb)) * w / nb):
        yb = float(centre(np.array([xb]))[0])
        t = math.atan(float((centre(np.array([xb + 1.0])) - centre(np.array([xb - 1.0])))[0]) / 2)
        u = np.array([-math.sin(t), math.cos(t)])  # across the river
        for s in (-1, 1):  # approach roads from the bridge ends to the scene edge
            paint_road(cv, [tuple(np.array([xb, yb]) + s * u * px(half - 2)),
                       tuple(np.array([xb, yb]) + s * u * (w + h))], 9)
        cv.place("bridge", cv.frame(xb, yb, 2 * half, rng.uniform(12, 22), t + math.pi / 2),
                 (WATER, GROUND, PAVED), 0.0)
        if k == 0:
            D, s = rng.uniform(28, 38), cv.pick((-1, 1))
            cx, cy = np.array([xb, yb]) + s * u * px(off)
            cv.place("roundabout", cv.frame(cx, cy, D, D, -math.pi / 2), (GROUND, PAVED), 0.0)
    for road in bank_roads:
        place_traffic(cv, road, 9, 2.5)
    if rng.random() < 0.7:  # a jetty with boats
        i, s = int(rng.integers(10, 54)), cv.pick((-1, 1))
        Lp, Wp = wr * rng.uniform(0.2, 0.32), rng.uniform(4, 8)
        jetty = cv.frame(*(mid[i] + s * nrm[i] * px(wr / 2 - Lp / 2)), Lp, Wp,
                         math.atan2(-s * nrm[i, 1], -s * nrm[i, 0]))
        if cv.place("harbor", jetty, (WATER, GROUND), 3.0):
            for side in (-1, 1):
                Ls = rng.uniform(10, max(11.0, Lp * 0.9))
                cv.place("ship", jetty.at(side * (Wp / 2 + Ls * 0.09 + 1), 0, Ls, Ls * 0.18,
                                          cv.pick((0.0, math.pi))), (WATER,), 0.5)
    for _ in range(int(rng.integers(2, 6))):  # boats under way along the river
        for _ in range(20):
            i = int(rng.integers(4, 60))
            L = rng.uniform(12, min(80.0, 2.5 * wr))
            t = math.atan2(float(mid[i + 1, 1] - mid[i - 1, 1]), float(mid[i + 1, 0] - mid[i - 1, 0]))
            c = mid[i] + nrm[i] * px(rng.uniform(-0.25, 0.25) * wr)
            if cv.place("ship", cv.frame(*c, L, L * rng.uniform(0.14, 0.2), t + cv.pick((0.0, math.pi))),
                        (WATER,), 4.0):
                break
    place_buildings(cv, int(rng.integers(6, 16)), (0, 0, w, h), (12, 40), (6, 20))
    for bank in banks:
        for p in bank[::3]:
            place_trees(cv, 1, (p[0] - px(15), p[1] - px(15), p[0] + px(15), p[1] + px(15)), (1, 5), 6.0)
    place_trees(cv, int(rng.integers(4, 10)))


def _parking(cv: Canvas) -> None:
    rng, px, w, h = cv.rng, cv.px, cv.w, cv.h
    paint_ground(cv, (110, 125, 85), CONCRETE)
    rx, ay = px(rng.uniform(12, 25)), h * rng.uniform(0.3, 0.7)
    mall_x = w - px(rng.uniform(50, 90))
    paint_road(cv, [(rx, -9), (rx, h + 9)], 14, kerb=(170, 170, 164), dash=None)
    paint_road(cv, [(rx, ay), (mall_x, ay)], 8, kerb=(170, 170, 164))  # access road to the mall
    paint_building(cv, cv.area(mall_x + px(4), px(8), w - px(4), h - px(8)), rng.uniform(10, 18))
    x0, x1 = rx + px(14), mall_x - px(10)
    if rng.random() < 0.7:  # roundabout at the junction; the lots start beyond it
        D = rng.uniform(30, 42)
        cv.place("roundabout", cv.frame(rx + px(D / 2 + 2), ay, D, D, -math.pi / 2), (GROUND, PAVED), 0.0)
        x0 = rx + px(D + 8)
    place_traffic(cv, [(rx, 0), (rx, h)], 14, 4.0)
    place_traffic(cv, [(rx, ay), (mall_x, ay)], 8, 3.0)
    for y0, y1 in ((px(5), ay - px(10)), (ay + px(10), h - px(5))):
        # each lot takes part of its side of the access road; grass and trees around it
        y0, y1 = (y0, y0 + (y1 - y0) * rng.uniform(0.6, 1.0)) if y0 > ay else \
                 (y1 - (y1 - y0) * rng.uniform(0.6, 1.0), y1)
        x1_ = x0 + (x1 - x0) * rng.uniform(0.6, 1.0)
        if (x1_ - x0) * cv.gsd < 30 or (y1 - y0) * cv.gsd < 20:
            continue
        x_cars = x0
        if rng.random() < 0.35 and (x1_ - x0) * cv.gsd > 90:  # a bus and truck section at one end
            x_cars = x0 + px(rng.uniform(35, 45))
            paint_parking_lot(cv, cv.area(x0, y0, x_cars, y1), rng.uniform(0.4, 0.9), large=True)
            x_cars += px(6)
        paint_parking_lot(cv, cv.area(x_cars, y0, x1_, y1), rng.uniform(0.35, 0.9))
    place_trees(cv, int(rng.integers(8, 18)), (x0, 0, mall_x, h))


THEME_LAYOUTS: dict[str, Callable[[Canvas], None]] = {
    "airport": _airport, "harbor": _harbor, "residential": _residential,
    "industrial": _industrial, "sports ground": _sports, "farmland": _farmland,
    "river/bridge": _river, "parking": _parking,
}
