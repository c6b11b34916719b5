"""load_rgb / probe / save_png on every image layout a remote sensing user brings, built in tmp_path."""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from rs_fixtures import ramp, scene, truncate, write_png, write_png16
from rsmoe.data.images import ImageInfo, ImageReadError, list_images, load_rgb, probe, save_png


def stripes(h: int, w: int, n: int, dtype=np.uint16, low: float = 100, high: float = 3000) -> np.ndarray:
    """(h, w, n): band b is `high` in column stripe b and `low` elsewhere, plus a faint ramp.

    After a per-band stretch every band looks alike except for *where* it is bright, which is
    what tells us that band selection picked the right bands.
    """
    xx = np.arange(w)[None, :].repeat(h, 0)
    out = np.empty((h, w, n), dtype=np.float64)
    for b in range(n):
        out[..., b] = np.where(xx // (w // n) == b, high, low) + (xx % 7)
    return out.astype(dtype)


def bright_stripe(channel: np.ndarray, n: int) -> int:
    """Index of the column stripe in which a (H, W) uint8 channel is brightest."""
    w = channel.shape[1] // n
    return int(np.argmax([channel[:, i * w:(i + 1) * w].mean() for i in range(n)]))


# ------------------------------------------------------------------ 8-bit: exact pass-through

def test_png_rgb8_is_exact(tmp_path):
    rgb = scene(40, 56)
    x = load_rgb(write_png(tmp_path / "a.png", rgb))
    assert x.dtype == np.uint8 and x.shape == (40, 56, 3)
    np.testing.assert_array_equal(x, rgb)


def test_jpeg_reads(tmp_path):
    Image.fromarray(scene(32, 48)).save(tmp_path / "a.jpg", quality=95)
    x = load_rgb(tmp_path / "a.jpg")
    assert x.shape == (32, 48, 3) and x.dtype == np.uint8


def test_grayscale_is_replicated(tmp_path):
    g = scene(30, 20)[..., 0]
    Image.fromarray(g).save(tmp_path / "g.png")
    x = load_rgb(tmp_path / "g.png")
    assert x.shape == (30, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(x[..., c], g)


def test_rgba_and_la_drop_alpha(tmp_path):
    rgb = scene(16, 24)
    alpha = np.zeros((16, 24, 1), np.uint8)  # fully transparent: colours must survive anyway
    Image.fromarray(np.concatenate([rgb, alpha], -1)).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgba.png"), rgb)
    Image.merge("LA", [Image.fromarray(rgb[..., 1]), Image.fromarray(alpha[..., 0])]).save(tmp_path / "la.png")
    x = load_rgb(tmp_path / "la.png")
    np.testing.assert_array_equal(x, np.repeat(rgb[..., 1:2], 3, axis=2))
    assert probe(tmp_path / "la.png").bands == 1 and probe(tmp_path / "rgba.png").bands == 3


def test_palette_is_expanded(tmp_path):
    im = Image.fromarray(scene(20, 20)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    im.save(tmp_path / "p.png")
    x = load_rgb(tmp_path / "p.png")
    np.testing.assert_array_equal(x, np.asarray(im.convert("RGB")))
    info = probe(tmp_path / "p.png")
    assert (info.mode, info.bands, info.dtype) == ("P", 1, "uint8")


def test_tiff_rgb8_is_exact(tmp_path):
    rgb = scene(24, 40)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.tif"), rgb)


# ------------------------------------------------------------------ 16-bit and float: stretched

def assert_stretched(x: np.ndarray) -> None:
    """A 2-98 % linear stretch of a smooth ramp: full range, about 2 % clipped at each end."""
    for c in range(3):
        ch = x[..., c]
        assert ch.min() == 0 and ch.max() == 255
        assert 0.005 < (ch == 0).mean() < 0.05 and 0.005 < (ch == 255).mean() < 0.05


def test_png_rgb16_keeps_all_16_bits(tmp_path):
    # 12-bit data in 16-bit samples: the high byte alone has only 16 levels per band
    data = ramp(64, 80, 3, scale=1.3)  # max ~ 3770 < 4096
    assert (data >> 8).max() < 16
    x = load_rgb(write_png16(tmp_path / "rgb16.png", data))
    assert x.shape == (64, 80, 3) and x.dtype == np.uint8
    assert len(np.unique(x[..., 0])) > 200  # real 16-bit precision, not 16 levels
    assert_stretched(x)
    lo, hi = np.percentile(data[..., 1].astype(float), (2, 98))
    expected = np.rint(np.clip((data[..., 1] - lo) * 255 / (hi - lo), 0, 255))
    np.testing.assert_array_equal(x[..., 1], expected.astype(np.uint8))
    info = probe(tmp_path / "rgb16.png")
    assert (info.width, info.height, info.bands, info.dtype, info.format) == (80, 64, 3, "uint16", "PNG")


def test_png_rgba16_and_gray16(tmp_path):
    data = ramp(40, 50, 3)
    rgba = np.concatenate([data, np.full((40, 50, 1), 65535, np.uint16)], -1)
    x = load_rgb(write_png16(tmp_path / "rgba16.png", rgba))
    np.testing.assert_array_equal(x, load_rgb(write_png16(tmp_path / "rgb16.png", data)))
    g = load_rgb(write_png16(tmp_path / "g16.png", data[..., 2]))
    assert_stretched(g)
    np.testing.assert_array_equal(g[..., 0], x[..., 2])
    assert probe(tmp_path / "g16.png") == ImageInfo(50, 40, 1, "uint16", "I;16", "PNG")


def test_tiff_rgb16(tmp_path):
    data = ramp(48, 64, 3)
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="rgb")
    x = load_rgb(tmp_path / "a.tif")
    assert x.shape == (48, 64, 3)
    assert_stretched(x)


@pytest.mark.parametrize("n, bands", [(4, (2, 1, 0)), (6, (5, 3, 0))])
def test_multiband_geotiff_band_selection(tmp_path, n, bands):
    data = stripes(32, 24 * n, n)
    path = tmp_path / f"ms{n}.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")  # (H, W, B)
    x = load_rgb(path, bands=bands)
    assert x.shape == (32, 24 * n, 3)
    assert [bright_stripe(x[..., c], n) for c in range(3)] == list(bands)
    default = load_rgb(path)
    assert [bright_stripe(default[..., c], n) for c in range(3)] == [0, 1, 2]
    info = probe(path)
    assert (info.bands, info.dtype, info.format, info.width, info.height) == (n, "uint16", "TIFF", 24 * n, 32)


@pytest.mark.parametrize("layout", ["planar", "pages"])
def test_channel_first_tiff(tmp_path, layout):
    data = np.moveaxis(stripes(20, 60, 6), -1, 0)  # (B, H, W)
    path = tmp_path / "cf.tif"
    if layout == "planar":
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(path, data)  # six pages, one band each
    x = load_rgb(path, bands=(4, 1, 3))
    assert x.shape == (20, 60, 3)
    assert [bright_stripe(x[..., c], 6) for c in range(3)] == [4, 1, 3]
    assert probe(path).bands == 6


def test_float32_tiff_with_nan_and_nodata(tmp_path):
    data = ramp(40, 40, 1, dtype=np.float32, scale=0.001)[..., 0]
    data[:2, :] = np.nan
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, data)
    x = load_rgb(path)
    assert x.shape == (40, 40, 3) and (x[:2] == 0).all()
    assert x.max() == 255 and (x[..., 0] == x[..., 2]).all()
    assert probe(path).dtype == "float32"
    # 4-band float32 with a GDAL nodata value: nodata pixels neither bend the stretch nor show
    ms = stripes(20, 80, 4, dtype=np.float32, low=0.1, high=0.6)
    ms[0, :] = -9999
    tifffile.imwrite(tmp_path / "n.tif", ms, photometric="minisblack", planarconfig="contig",
                     extratags=[(42113, "s", 0, "-9999", True)])
    y = load_rgb(tmp_path / "n.tif", bands=(3, 2, 1))
    assert (y[0] == 0).all() and y[1:].max() == 255
    assert [bright_stripe(y[1:, :, c], 4) for c in range(3)] == [3, 2, 1]


def test_single_band_tiff_is_replicated_whatever_bands(tmp_path):
    data = ramp(16, 16, 1)[..., 0]
    tifffile.imwrite(tmp_path / "g.tif", data)
    x = load_rgb(tmp_path / "g.tif", bands=(3, 2, 1))
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()


def test_rgba_tiff_drops_alpha_and_palette_tiff(tmp_path):
    rgb = scene(10, 12)
    rgba = np.concatenate([rgb, np.zeros((10, 12, 1), np.uint8)], -1)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.tif"), rgb)
    assert probe(tmp_path / "a.tif").bands == 3
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0, 1], cmap[1, 2] = 65535, 65535  # index 1 -> red, 2 -> green
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", idx, photometric="palette", colormap=cmap)
    x = load_rgb(tmp_path / "p.tif")
    assert x[0, 1].tolist() == [255, 0, 0] and x[1, 0].tolist() == [0, 255, 0] and x[0, 0].tolist() == [0, 0, 0]


def test_tiffs_tifffile_cannot_decode_here_fall_back_to_pillow(tmp_path):
    """LZW / JPEG need imagecodecs in tifffile; CMYK is not a band layout: Pillow reads them."""
    rgb = scene(40, 50)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(load_rgb(tmp_path / "lzw.tif"), rgb)
    Image.fromarray(rgb).save(tmp_path / "jpeg.tif", compression="jpeg", quality=95)
    assert np.abs(load_rgb(tmp_path / "jpeg.tif").astype(int) - rgb).mean() < 10
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(load_rgb(tmp_path / "cmyk.tif"), rgb)
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((8, 8), np.complex64))
    expect_error(tmp_path / "c.tif", "unsupported")


def test_constant_16bit_image_does_not_divide_by_zero(tmp_path):
    write_png16(tmp_path / "z.png", np.zeros((8, 8, 3), np.uint16))
    assert (load_rgb(tmp_path / "z.png") == 0).all()
    tifffile.imwrite(tmp_path / "c.tif", np.full((8, 8), 700, np.uint16))
    assert (load_rgb(tmp_path / "c.tif") == 255).all()


# ------------------------------------------------------------------ errors: always ImageReadError

def expect_error(path, kind: str | None = None, **kw) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        load_rgb(path, **kw)
    err = info.value
    assert str(path) in str(err) and "Fix:" in str(err) and err.path == str(path)
    if kind:
        assert err.kind == kind, err
    return err


def test_truncated_png(tmp_path):
    path = truncate(write_png(tmp_path / "t.png", scene(128, 128)))
    err = expect_error(path, "truncated")
    assert "truncated" in err.problem


def test_truncated_png_even_if_caller_allows_truncated_images(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    expect_error(truncate(write_png(tmp_path / "t.png", scene(128, 128))), "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_zero_byte_and_text_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert expect_error(tmp_path / "empty.png", "empty").fix
    (tmp_path / "notes.png").write_text("this is not an image\n")
    expect_error(tmp_path / "notes.png", "not_image")
    with pytest.raises(ImageReadError):
        probe(tmp_path / "notes.png")
    expect_error(tmp_path / "nope.png", "missing")


def test_truncated_and_broken_tiffs(tmp_path, capfd):
    data = ramp(60, 50, 6)
    tifffile.imwrite(tmp_path / "pages.tif", np.moveaxis(data, -1, 0))  # one page per band
    err = expect_error(truncate(tmp_path / "pages.tif", 2 / 3))  # tifffile only logs this one
    assert "invalid page offset" in err.problem
    assert "tifffile" not in capfd.readouterr().err  # its log record became the error, not noise
    for comp in (None, "zlib"):
        path = tmp_path / f"t_{comp}.tif"
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig", compression=comp)
        expect_error(truncate(path), "truncated")
    (tmp_path / "fake.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    expect_error(tmp_path / "fake.tif")
    (tmp_path / "fake2.tiff").write_bytes(b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01")
    expect_error(tmp_path / "fake2.tiff")


def test_truncated_jpeg(tmp_path):
    Image.fromarray(scene(96, 96)).save(tmp_path / "t.jpg", quality=90)
    expect_error(truncate(tmp_path / "t.jpg"), "truncated")


def test_bands_out_of_range(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", ramp(8, 8, 4), photometric="minisblack", planarconfig="contig")
    err = expect_error(tmp_path / "m.tif", "bands", bands=(5, 2, 1))
    assert "4 bands" in err.problem and "data.bands" in err.fix


def test_too_many_pixels(tmp_path):
    write_png(tmp_path / "big.png", scene(64, 64))
    expect_error(tmp_path / "big.png", "too_large", max_pixels=1000)


@pytest.mark.parametrize("seed", range(12))
def test_damaged_png_never_raises_anything_else(tmp_path, seed):
    """Bytes flipped anywhere (header, chunk, pixel data): an array or ImageReadError, nothing else."""
    path = write_png(tmp_path / "d.png", scene(48, 48, seed=seed))
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(8, len(data), 3):
        data[pos] ^= 0xFF
    path.write_bytes(bytes(data))
    try:
        x = load_rgb(path)
        assert x.shape[2] == 3
    except ImageReadError as err:
        assert str(path) in str(err)


def test_damaged_png_crc_is_corrupt(tmp_path):
    path = write_png(tmp_path / "c.png", scene(64, 64))
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF  # inside the first IDAT: zlib data or CRC no longer match
    path.write_bytes(bytes(data))
    expect_error(path)


# ------------------------------------------------------------------ save_png, listing

def test_save_png_deterministic_and_metadata_free(tmp_path):
    rgb = scene(33, 17)
    save_png(tmp_path / "a.png", rgb)
    save_png(tmp_path / "b.png", rgb)
    a = (tmp_path / "a.png").read_bytes()
    assert a == (tmp_path / "b.png").read_bytes()
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.png"), rgb)
    chunks, pos = [], 8
    while pos < len(a):
        n = int.from_bytes(a[pos:pos + 4], "big")
        chunks.append(a[pos + 4:pos + 8].decode())
        assert zlib.crc32(a[pos + 4:pos + 8 + n]) == int.from_bytes(a[pos + 8 + n:pos + 12 + n], "big")
        pos += 12 + n
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError):
        save_png(tmp_path / "bad.png", rgb.astype(np.uint16))


def test_list_images(tmp_path):
    for name in ("b.PNG", "a.tif", "c.jpg", ".hidden.png", "notes.txt", "d.tiff"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b.PNG", "c.jpg", "d.tiff"]
