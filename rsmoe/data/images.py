"""Read any remote sensing image as (H, W, 3) uint8 RGB, probe its header, write crops.

Two readers, chosen by the file's magic bytes (never by its extension):
- TIFF / GeoTIFF / BigTIFF -> tifffile: any number of bands, any dtype, planar (channel-first)
  or contiguous (channel-last) samples, bands stored as pages; `bands` picks R, G, B.
- everything else -> Pillow (PNG, JPEG, JPEG 2000, BMP, GIF, WebP), read by its colour mode:
  grayscale is replicated, alpha dropped, palettes expanded. A 16-bit RGB(A) PNG keeps all
  16 bits (Pillow alone would keep only the high byte; see `_png16`).

Anything that is not 8-bit (16-bit, float, ...) gets a per-band 2nd-98th percentile linear
stretch to 0..255. Every failure is an `ImageReadError` naming the file, the problem and a fix.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import tifffile
from PIL import Image, ImageFile, UnidentifiedImageError

from rsmoe.errors import InputError
from rsmoe.files import written_file

# Extensions the pipeline lists in RAW_DIR/images (validate and prepare must agree on them).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
# Pillow formats we let it open: no EPS/PDF (they shell out), nothing exotic.
_PIL_FORMATS = ("PNG", "JPEG", "JPEG2000", "BMP", "GIF", "WEBP", "TIFF")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
MAX_PIXELS = 40000 * 40000  # same bound as ValidateParams.max_side; Pillow's own bomb check is off
_STRETCH_SAMPLE = 1 << 22  # percentiles from at most ~4M pixels per band (strided, deterministic)
_ALPHA = (1, 2)  # TIFF ExtraSamples: associated / unassociated alpha


class ImageReadError(InputError):
    """An image that cannot be used. `kind` is one of: missing, empty, not_image, truncated,
    corrupt, unsupported, bands, too_large."""

    def __init__(self, path: str | Path, problem: str, fix: str, kind: str = "corrupt"):
        self.kind = kind
        super().__init__(path, problem, fix)


@dataclass(frozen=True)
class ImageFailure:
    """An image skipped by a batch job (captioning, encoding), and why: the others carry on."""

    path: str
    kind: str  # ImageReadError.kind
    reason: str  # the problem and its fix

    @classmethod
    def of(cls, path: str | Path, err: ImageReadError) -> "ImageFailure":
        return cls(str(path), err.kind, f"{err.problem}. Fix: {err.fix}")


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    bands: int  # colour / spectral bands, alpha not counted (a palette image has 1)
    dtype: str  # numpy name of one sample: uint8, uint16, float32, bool, ...
    mode: str  # Pillow mode ("RGB", "P", "I;16", ...) or, for TIFF, tifffile axes + photometric
    format: str  # "PNG", "TIFF", "JPEG", ...


# --------------------------------------------------------------------------- Pillow settings

class _StrictPil:
    """Force LOAD_TRUNCATED_IMAGES off and Pillow's pixel limit off while any read runs.

    Pillow keeps both as module globals; a counter makes the override safe across threads and
    restores whatever the caller had once the last read finishes.
    """

    def __init__(self) -> None:
        self._lock, self._users, self._saved = threading.Lock(), 0, (False, None)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
            self._users += 1
            ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, None
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = self._saved


_strict_pil = _StrictPil()


class _TiffLogs(logging.Filter):
    """tifffile logs (instead of raising) when a file is damaged: collect those as errors.

    A filter on the `tifffile` logger takes the records of the threads that are reading right
    now (so concurrent reads never see each other's messages) and drops them before any handler
    prints them; records of other threads pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock, self._active = threading.Lock(), {}  # thread id -> messages

    def filter(self, record: logging.LogRecord) -> bool:
        messages = self._active.get(record.thread)
        if messages is None:
            return True
        if record.levelno >= logging.WARNING:
            messages.append(record.getMessage())
        return False

    @contextmanager
    def __call__(self) -> Iterator[list[str]]:
        logger, tid = logging.getLogger("tifffile"), threading.get_ident()
        with self._lock:
            if tid in self._active:  # nested in this thread: share the outer list
                outer = True
            else:
                outer = False
                if not self._active:
                    logger.addFilter(self)
                self._active[tid] = []
            messages = self._active[tid]
        try:
            yield messages
        finally:
            if not outer:
                with self._lock:
                    del self._active[tid]
                    if not self._active:
                        logger.removeFilter(self)


_tiff_logs = _TiffLogs()


# --------------------------------------------------------------------------- public API

def list_images(images_dir: str | Path) -> list[Path]:
    """Image files directly in `images_dir` (by extension, case-insensitive), sorted by name."""
    d = Path(images_dir)
    return sorted(p for p in d.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def probe(path: str | Path) -> ImageInfo:
    """Size, band count and sample type from the header only (no pixel decoding)."""
    path = Path(path)
    if _is_tiff(_head(path)):
        with _open_tiff(path) as (tf, logs):
            _, info = _tiff_layout(tf, path)
            _raise_tiff_logs(path, logs)
            return info
    with _strict_pil(), _open_pil(path) as im:
        return _pil_info(im)


def load_rgb(path: str | Path, bands: Sequence[int] = (0, 1, 2), *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Fully decode `path` -> (H, W, 3) uint8.

    `bands` (R, G, B indices) applies to TIFFs with 3 or more non-alpha bands; 1- and 2-band
    images are shown as gray (band 0), and Pillow formats are read by their colour mode.
    """
    path = Path(path)
    bands = tuple(int(b) for b in bands)
    if len(bands) != 3 or min(bands) < 0:
        raise ImageReadError(path, f"bands must be 3 non-negative indices, got {bands}",
                             "set data.bands in params.yaml, e.g. [0, 1, 2]", "bands")
    if _is_tiff(_head(path)):
        try:
            return _load_tiff(path, bands, max_pixels)
        except ImageReadError as err:
            if err.kind != "unsupported":
                raise
            try:  # a codec tifffile lacks (LZW, JPEG, packbits without imagecodecs): Pillow may have it
                return _load_pil(path, max_pixels)
            except ImageReadError:
                raise err from None
    return _load_pil(path, max_pixels)


# The 8 views of the dihedral group D4 (an aerial crop has no "up"): identity, the two flips, the
# three rotations (counter-clockwise) and the two transposes, in the order a first-n choice uses.
_DIHEDRAL = {
    "identity": lambda a: a, "flip_lr": lambda a: a[:, ::-1], "flip_tb": lambda a: a[::-1],
    "rot90": lambda a: np.rot90(a, 1), "rot180": lambda a: np.rot90(a, 2), "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: a.swapaxes(0, 1), "transverse": lambda a: np.rot90(a, 2).swapaxes(0, 1),
}
DIHEDRAL_VIEWS = tuple(_DIHEDRAL)


def dihedral_view(rgb: np.ndarray, view: str) -> np.ndarray:
    """An (H, W, C) image in one of `DIHEDRAL_VIEWS`, as a contiguous array."""
    if view not in _DIHEDRAL:
        raise ValueError(f"unknown view {view!r}; one of {', '.join(DIHEDRAL_VIEWS)}")
    return np.ascontiguousarray(_DIHEDRAL[view](rgb))


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as PNG, byte-identical for identical input.

    Fixed zlib level, no optimiser pass, no metadata chunks; written to a temporary name and
    renamed so that a killed run never leaves half a PNG behind.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: save_png expects an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    path = Path(path)
    with written_file(path) as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG", compress_level=6, optimize=False)


# --------------------------------------------------------------------------- helpers

def _head(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageReadError(path, "not a regular file", "point to an image file", "missing")
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        raise ImageReadError(path, "file does not exist", "check the path or restore the file", "missing") from None
    except OSError as err:
        raise ImageReadError(path, f"cannot read the file ({err.strerror or err})",
                             "check the file's permissions", "missing") from None
    if size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "re-export or re-download the image", "empty")
    return head


def _is_tiff(head: bytes) -> bool:
    return head[:4] in _TIFF_MAGIC


def _check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(path, f"image has no pixels ({width}x{height})", "re-export the image", "corrupt")
    if width * height > max_pixels:
        raise ImageReadError(path, f"{width}x{height} pixels is more than the limit of {max_pixels}",
                             "split the scene into smaller tiles before ingesting it", "too_large")


# ---- Pillow

@contextmanager
def _open_pil(path: Path) -> Iterator[Image.Image]:
    try:
        im = Image.open(path, formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        head = _head(path)
        raise ImageReadError(path, f"not a recognised image (file starts with {head[:8]!r})",
                             "re-export it as PNG or GeoTIFF", "not_image") from None
    except ImageReadError:
        raise
    except Exception as err:  # a damaged header: Pillow raises SyntaxError, struct.error, ...
        raise ImageReadError(path, f"damaged image header ({type(err).__name__}: {err})",
                             "re-export the image", "corrupt") from None
    try:
        yield im
    finally:
        im.close()


def _pil_dtype(im: Image.Image) -> str:
    if im.mode.startswith("I;16"):
        return "uint16"
    if im.format == "PNG" and any(_tile_rawmode(t).endswith(";16B") for t in im.tile):
        return "uint16"  # 16-bit RGB(A)/LA PNG: Pillow calls the mode RGB(A) but the file has 16 bits
    return {"1": "bool", "I": "int32", "F": "float32"}.get(im.mode, "uint8")


def _pil_info(im: Image.Image) -> ImageInfo:
    colour = [b for b in im.getbands() if b not in ("A", "a")]
    if im.format == "PNG" and im.tile and _tile_rawmode(im.tile[0]) == "LA;16B":
        colour = ["L"]  # Pillow opens a 16-bit gray+alpha PNG as RGBA
    return ImageInfo(width=im.width, height=im.height, bands=max(1, len(colour)), dtype=_pil_dtype(im),
                     mode=im.mode, format=im.format or "unknown")


def _tile_rawmode(tile: object) -> str:
    args = getattr(tile, "args", None)
    if isinstance(args, tuple) and args:
        args = args[0]
    return args if isinstance(args, str) else ""


def _decode(path: Path, im: Image.Image) -> None:
    try:
        im.load()
    except OSError as err:
        if "truncated" in str(err) or "ended prematurely" in str(err):
            raise ImageReadError(path, f"file is truncated ({path.stat().st_size} bytes; {err})",
                                 "re-download or re-export the image; the file ends early", "truncated") from None
        raise ImageReadError(path, f"cannot decode pixel data ({err})", "re-export the image", "corrupt") from None
    except Exception as err:  # SyntaxError (broken PNG), EOFError, ValueError, zlib.error, ...
        problem = f"cannot decode pixel data ({type(err).__name__}: {err})"
        kind = "truncated" if isinstance(err, EOFError) or "truncated" in str(err).lower() else "corrupt"
        raise ImageReadError(path, problem, "re-export the image", kind) from None


def _png16(path: Path, im: Image.Image) -> np.ndarray | None:
    """All 16 bits of an RGB/RGBA PNG as (H, W, C) uint16, or None when `im` is not one.

    Pillow's unpackers keep only the high byte of big-endian 16-bit samples ("RGB;16B"). The
    little-endian unpacker ("RGB;16L") reads the *other* byte of each sample, i.e. the low byte
    of big-endian data; both have 48 (64) bits per pixel so PNG unfiltering is identical. Two
    decodes -> high * 256 + low, lossless. Should a Pillow release drop that unpacker, the high
    byte alone is used (8 significant bits, still stretched).
    """
    rawmode = _tile_rawmode(im.tile[0]) if len(im.tile) == 1 else ""
    if rawmode not in ("RGB;16B", "RGBA;16B"):
        return None
    _decode(path, im)
    high = np.asarray(im, dtype=np.uint16)
    try:
        with Image.open(path, formats=("PNG",)) as low_im:
            low_im.tile = [low_im.tile[0]._replace(args=rawmode.replace("16B", "16L"))]
            low_im.load()
            low = np.asarray(low_im, dtype=np.uint16)
    except Exception:  # the first decode of the same bytes succeeded: only the trick failed
        return high << 8
    return (high << 8) | low


def _load_pil(path: Path, max_pixels: int) -> np.ndarray:
    with _strict_pil(), _open_pil(path) as im:
        _check_pixels(path, im.width, im.height, max_pixels)
        if im.format == "PNG":
            deep = _png16(path, im)  # (H, W, 3|4) uint16 or None
            if deep is not None:
                return _stretch(deep[..., :3])
        _decode(path, im)
        mode, deep8 = im.mode, _pil_dtype(im) == "uint16"  # deep8: 16-bit LA PNG, high byte kept
        try:
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16/32-bit int or float gray
                return _gray(_stretch(np.asarray(im)[..., None])[..., 0])
            if mode in ("1", "L", "LA", "La"):
                return _gray(np.asarray(im.getchannel(0).convert("L"), dtype=np.uint8))
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)  # P, PA, RGBA, CMYK, YCbCr, LAB, HSV
        except Exception as err:
            raise ImageReadError(path, f"cannot convert mode {mode} to RGB ({type(err).__name__}: {err})",
                                 "re-export the image as 8-bit RGB", "unsupported") from None
        return _stretch(rgb) if deep8 else rgb


def _gray(band: np.ndarray) -> np.ndarray:
    return np.repeat(band[..., None], 3, axis=2)


# ---- TIFF

@contextmanager
def _open_tiff(path: Path) -> Iterator[tuple[tifffile.TiffFile, list[str]]]:
    with _tiff_logs() as logs:
        try:
            tf = tifffile.TiffFile(path)
        except Exception as err:  # TiffFileError, struct.error, ValueError on a broken header
            raise ImageReadError(path, f"damaged TIFF header ({type(err).__name__}: {err})",
                                 "re-export the image", "corrupt") from None
        try:
            yield tf, logs
        finally:
            tf.close()


def _raise_tiff_logs(path: Path, logs: list[str]) -> None:
    if logs:
        raise ImageReadError(path, f"damaged TIFF ({logs[0]})",
                             "re-download or re-export the image", "corrupt")


@dataclass(frozen=True)
class _Layout:
    axes: str
    band_axis: int | None  # index into axes, None for a single band
    take_first: tuple[int, ...]  # other non-Y/X axes: read index 0
    alpha: tuple[int, ...]  # band indices that are alpha (dropped)
    photometric: str


def _tiff_layout(tf: tifffile.TiffFile, path: Path) -> tuple[_Layout, ImageInfo]:
    """Which axis holds the bands: S (samples, channel-last or planar), else C, else the page axis."""
    if not tf.series or not tf.pages:
        raise ImageReadError(path, "TIFF has no image data", "re-export the image", "corrupt")
    series, page = tf.series[0], tf.pages.first
    axes, shape = series.axes, series.shape
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(path, f"TIFF layout '{axes}' has no Y/X image axes",
                             "save the raster as a 2-D (multi-band) GeoTIFF", "unsupported")
    extra = [i for i, a in enumerate(axes) if a not in "YX" and shape[i] > 1]
    band_axis = next((i for pref in "SC" for i in extra if axes[i] == pref), extra[-1] if extra else None)
    take_first = tuple(i for i, a in enumerate(axes) if a not in "YX" and i != band_axis)
    n = shape[band_axis] if band_axis is not None else 1
    alpha: tuple[int, ...] = ()
    if band_axis is not None and axes[band_axis] == "S":
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        first_extra = n - len(extras)
        alpha = tuple(first_extra + i for i, e in enumerate(extras) if e in _ALPHA)
    photometric = getattr(page.photometric, "name", str(page.photometric))
    height, width = shape[axes.index("Y")], shape[axes.index("X")]
    bands = 1 if photometric == "PALETTE" else max(1, n - len(alpha))
    info = ImageInfo(width=int(width), height=int(height), bands=int(bands), dtype=str(series.dtype),
                     mode=f"{axes}/{photometric}", format="TIFF")
    return _Layout(axes, band_axis, take_first, alpha, photometric), info


def _check_tiff_extent(tf: tifffile.TiffFile, path: Path) -> None:
    """A strip or tile that points past the end of the file means the file was cut short."""
    size = path.stat().st_size
    for page in tf.pages:
        for off, n in zip(page.dataoffsets, page.databytecounts):
            if n and off + n > size:
                raise ImageReadError(path, f"file is truncated: pixel data ends at byte {off + n} but the file "
                                     f"has {size} bytes", "re-download or re-export the image", "truncated")


def _load_tiff(path: Path, bands: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    with _open_tiff(path) as (tf, logs):
        layout, info = _tiff_layout(tf, path)
        if layout.photometric not in ("MINISBLACK", "MINISWHITE", "RGB", "PALETTE") or \
                np.dtype(info.dtype).kind not in "biuf":  # CMYK, YCbCr, Lab, complex: Pillow may read it
            raise ImageReadError(path, f"TIFF with photometric {layout.photometric} and {info.dtype} samples",
                                 "re-save it as RGB or multi-band (minisblack) GeoTIFF", "unsupported")
        _check_pixels(path, info.width, info.height, max_pixels)
        _check_tiff_extent(tf, path)
        _raise_tiff_logs(path, logs)
        page = tf.pages.first
        try:
            data = tf.series[0].asarray()
        except ImageReadError:
            raise
        except Exception as err:
            if "imagecodecs" in str(err) or isinstance(err, (NotImplementedError, ImportError)):
                # LZW, JPEG, packbits, ... need the optional imagecodecs package; Pillow is tried next
                raise ImageReadError(path, f"TIFF compression {page.compression.name} not readable here ({err})",
                                     "re-save the TIFF with deflate (zlib) or no compression", "unsupported") from None
            raise ImageReadError(path, f"cannot decode TIFF pixel data ({type(err).__name__}: {err})",
                                 "re-export the image", "corrupt") from None
        _raise_tiff_logs(path, logs)
        nodata = _nodata(page)
        colormap = page.colormap if layout.photometric == "PALETTE" else None
    # data: any layout -> (H, W, B): drop extra axes, move Y, X, bands into place
    index = tuple(0 if i in layout.take_first else slice(None) for i in range(data.ndim))
    keep = [a for i, a in enumerate(layout.axes) if i not in layout.take_first]
    data = data[index]
    order = [keep.index("Y"), keep.index("X")] + [i for i, a in enumerate(keep) if a not in "YX"]
    data = np.transpose(data, order)
    if data.ndim == 2:
        data = data[..., None]
    if layout.alpha:
        data = np.delete(data, list(layout.alpha), axis=2)
    if colormap is not None:  # (3, 2**bits) uint16 lookup table
        return (colormap[:, data[..., 0]].transpose(1, 2, 0) >> 8).astype(np.uint8)
    if layout.photometric == "MINISWHITE" and np.issubdtype(data.dtype, np.integer):
        data = np.iinfo(data.dtype).max - data
    n = data.shape[2]
    if n < 3:
        chosen = data[..., [0, 0, 0]]
    elif max(bands) >= n:
        raise ImageReadError(path, f"image has {n} bands but bands={list(bands)} asks for band {max(bands)}",
                             f"set data.bands in params.yaml to 3 indices between 0 and {n - 1}", "bands")
    else:
        chosen = data[..., list(bands)]
    if chosen.dtype == np.uint8:
        return np.ascontiguousarray(chosen)
    if chosen.dtype == np.bool_:
        return chosen.astype(np.uint8) * 255
    return _stretch(chosen, nodata)


def _nodata(page: tifffile.TiffPage) -> float | None:
    tag = page.tags.get(42113)  # GDAL_NODATA, stored as text
    if tag is None:
        return None
    try:
        return float(str(tag.value).strip("\x00 "))
    except ValueError:
        return None


# ---- stretch

def _stretch(x: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """(H, W, C) of any real dtype -> (H, W, C) uint8, each band linearly from its 2nd..98th percentile.

    NaN, +-inf and the GeoTIFF nodata value are left out of the percentiles and become 0. A band
    whose percentiles coincide is scaled by its min..max; a truly constant band maps to 0 (value
    <= 0) or 255 (value > 0) so blank images stay visible. Percentiles come from a strided sample
    and scaling runs in row blocks, so a 20000^2 scene never needs a full float copy.
    """
    h, w, n = x.shape
    out = np.zeros((h, w, n), dtype=np.uint8)
    step = max(1, int(np.sqrt(h * w / _STRETCH_SAMPLE)))
    block = max(1, _STRETCH_SAMPLE // max(w, 1))  # rows per block
    for c in range(n):
        sample = x[::step, ::step, c].astype(np.float64).ravel()
        sample = sample[_valid(sample, nodata)]
        if sample.size == 0:
            continue
        lo, hi = np.percentile(sample, (2, 98))
        if hi <= lo:
            lo, hi = float(sample.min()), float(sample.max())
        for r in range(0, h, block):
            band = x[r:r + block, :, c].astype(np.float64)
            valid = _valid(band, nodata)
            if hi <= lo:
                out[r:r + block, :, c] = np.where(valid & (band > 0), 255, 0)
                continue
            scaled = np.clip((band - lo) * (255.0 / (hi - lo)), 0, 255)
            out[r:r + block, :, c] = np.where(valid, np.rint(scaled), 0).astype(np.uint8)
    return out


def _valid(v: np.ndarray, nodata: float | None) -> np.ndarray:
    ok = np.isfinite(v)
    return ok & (v != nodata) if nodata is not None else ok
