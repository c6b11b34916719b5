"""Constants of the synthetic corpus: themes, ground sampling distances, terrain codes, palettes."""
from __future__ import annotations

THEMES: tuple[str, ...] = ("airport", "harbor", "residential", "industrial", "sports ground",
                           "farmland", "river/bridge", "parking")
IMAGESOURCE = "rsmoe-synth"
# Ground sampling distance (m/px) per theme: fine for car parks and houses, coarse enough for
# a 180 m running track or a 150 m ship to fit inside a 512 px crop. DOTA mixes sources too.
GSD_RANGE: dict[str, tuple[float, float]] = {
    "airport": (0.30, 0.42), "harbor": (0.32, 0.45), "residential": (0.18, 0.28),
    "industrial": (0.25, 0.35), "sports ground": (0.38, 0.45), "farmland": (0.30, 0.40),
    "river/bridge": (0.30, 0.40), "parking": (0.15, 0.25)}
PNG_COMPRESS_LEVEL = 6
DIFFICULT_AREA = 60.0  # px^2; smaller objects are flagged difficult, as DOTA does for tiny ones
CELL = 4  # px per cell of the occupancy grids
GROUND, PAVED, WATER = 0, 1, 2  # terrain codes of the coarse grid
HEADLESS = frozenset({"storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
                      "ground-track-field", "harbor", "bridge", "roundabout", "soccer-ball-field",
                      "swimming-pool"})

RGB = tuple[int, int, int]
CAR = ((242, 242, 240),) * 3 + ((30, 31, 34),) * 2 + ((170, 172, 176),) * 2 + (
    (108, 110, 114), (160, 30, 28), (36, 62, 140), (28, 36, 70), (44, 84, 52), (215, 185, 40),
    (195, 180, 150), (215, 110, 30))
TRUCK = ((235, 235, 232), (200, 200, 198), (150, 152, 155), (40, 70, 150), (170, 40, 35),
         (50, 110, 60), (225, 150, 40))
TAIL = ((30, 60, 140), (180, 30, 30), (30, 110, 70), (240, 170, 30), (90, 40, 120), (40, 40, 45))
HELI = ((85, 95, 60), (225, 225, 222), (40, 45, 60), (190, 40, 35), (230, 190, 40))
HULL = ((120, 40, 35), (38, 40, 45), (35, 48, 85), (45, 85, 60), (90, 90, 95))
BOX = ((175, 60, 40), (55, 90, 150), (205, 205, 200), (70, 120, 70), (205, 150, 50),
       (130, 130, 135), (150, 40, 40), (40, 110, 130))
TANK = ((246, 246, 243), (236, 236, 232), (215, 215, 211), (215, 200, 170), (200, 208, 196))
ROOF = ((165, 80, 60), (125, 88, 68), (82, 84, 90), (150, 60, 50), (170, 170, 165),
        (110, 115, 120), (185, 150, 110))
FLAT_ROOF = ((190, 190, 185), (150, 152, 155), (212, 212, 207), (110, 130, 150),
             (160, 110, 80), (125, 125, 120))
WATER_RGB = ((38, 66, 88), (44, 82, 92), (30, 55, 75), (52, 84, 80), (40, 72, 100))
POOL = ((70, 185, 215), (45, 140, 205), (65, 195, 195), (95, 200, 230))
CRANE = ((190, 45, 35), (40, 80, 160), (225, 130, 30), (220, 220, 215), (230, 190, 40))
GRASS, DRY, SOIL, CONCRETE = (88, 118, 62), (140, 138, 96), (135, 115, 88), (158, 156, 150)
