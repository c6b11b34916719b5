"""Tiling and clipping against hand-computed windows and polygons."""
import numpy as np
import pytest

from rsmoe.data.records import DotaObject
from rsmoe.data.tiling import box_geometry, clip_object, crop_pixels, windows


def square(x0, y0, x1, y1, cat="small-vehicle"):
    return DotaObject(((x0, y0), (x1, y0), (x1, y1), (x0, y1)), cat, 0)


def test_windows_follow_the_devkit_convention():
    # stride 384; the last window is pulled back to end at the border (1024 - 512 = 512)
    got = [(w.left, w.top) for w in windows(1024, 1024, 512, 128)]
    assert got == [(0, 0), (0, 384), (0, 512), (384, 0), (384, 384), (384, 512), (512, 0), (512, 384), (512, 512)]
    assert [w.index for w in windows(1024, 1024, 512, 128)] == list(range(9))
    assert [(w.left, w.top) for w in windows(1300, 512, 512, 0)] == [(0, 0), (512, 0), (788, 0)]
    assert [(w.left, w.top) for w in windows(300, 700, 512, 128)] == [(0, 0), (0, 188)]
    with pytest.raises(ValueError, match="overlap"):
        windows(1024, 1024, 512, 512)


def test_crop_pads_small_scenes():
    rgb = np.full((300, 200, 3), 7, np.uint8)
    crop = crop_pixels(rgb, windows(200, 300, 512, 128)[0])
    assert crop.shape == (512, 512, 3)
    assert crop[:300, :200].min() == 7 and crop[300:].max() == 0 and crop[:, 200:].max() == 0


def test_object_fully_inside_keeps_its_shape_in_crop_coordinates():
    win = windows(1024, 1024, 512, 128)[3]  # left=384, top=0
    obj = clip_object(square(450, 100, 550, 200, "plane"), win, 0.7, 0.98)
    assert obj is not None and not obj.truncated and obj.visible == 1.0
    assert sorted(obj.polygon) == [(66, 100), (66, 200), (166, 100), (166, 200)]
    assert obj.center == (116, 150) and obj.area == 10000


def test_object_across_the_border_is_dropped_or_truncated_by_threshold():
    win = windows(1024, 1024, 512, 128)[0]  # 0..512
    # 62 of 100 px wide inside -> visible 0.62
    assert clip_object(square(450, 100, 550, 200), win, 0.7, 0.98) is None
    obj = clip_object(square(450, 100, 550, 200), win, 0.6, 0.98)
    assert obj is not None and obj.truncated and obj.visible == pytest.approx(0.62)
    assert obj.area == pytest.approx(6200) and max(x for x, _ in obj.polygon) == 512
    # 99 % inside is not truncated at truncated_below=0.98
    obj = clip_object(square(413, 0, 513, 100), win, 0.7, 0.98)
    assert obj is not None and obj.visible == pytest.approx(0.99) and not obj.truncated


def test_rotated_box_clipping_matches_hand_computation():
    # A diamond (square rotated 45 degrees) centred on the window's right edge x=512: half inside.
    diamond = DotaObject(((512, 100), (562, 150), (512, 200), (462, 150)), "storage-tank", 0)
    win = windows(1024, 1024, 512, 128)[0]
    obj = clip_object(diamond, win, 0.5, 0.98)
    assert obj is not None and obj.visible == pytest.approx(0.5)
    assert obj.area == pytest.approx(2500)  # half of (50*sqrt2)^2 = 5000
    assert sorted(obj.polygon) == sorted([(512, 100), (512, 200), (462, 150)])
    assert clip_object(diamond, win, 0.51, 0.98) is None


def test_bow_tie_corner_order_still_has_the_true_area():
    bow = DotaObject(((0, 0), (10, 10), (10, 0), (0, 10)), "ship", 0)
    obj = clip_object(bow, windows(512, 512, 512, 0)[0], 0.7, 0.98)
    assert obj is not None and obj.area == pytest.approx(100)


def test_box_geometry_length_width_angle():
    from shapely.geometry import Polygon

    length, width, angle = box_geometry(Polygon([(0, 0), (40, 0), (40, 10), (0, 10)]))
    assert (length, width) == (pytest.approx(40), pytest.approx(10)) and angle in (0.0, pytest.approx(180.0))
    length, width, angle = box_geometry(Polygon([(0, 0), (30, 30), (25, 35), (-5, 5)]))
    assert length == pytest.approx(30 * 2 ** 0.5) and width == pytest.approx(5 * 2 ** 0.5)
    assert angle == pytest.approx(45)
