"""Builders for test images and DOTA-style raw folders, written into tmp_path (no binaries in git)."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def ramp(h: int, w: int, bands: int, dtype=np.uint16, scale: float = 1.0) -> np.ndarray:
    """(h, w, bands) with band b = b * 1000 + a ramp, so every band is distinguishable."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = (yy * w + xx) / (h * w)  # 0..1
    stack = np.stack([(b * 1000 + base * 900) * scale for b in range(bands)], axis=-1)
    return stack.astype(dtype)


def write_png16(path: Path, arr: np.ndarray, filters: bool = True) -> Path:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA) written by hand: Pillow cannot write RGB16.

    Rows alternate the None, Sub and Up filters so that the reader's unfiltering is exercised.
    """
    arr = np.asarray(arr, dtype=np.uint16)
    if arr.ndim == 2:
        arr = arr[..., None]
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * c * 2).astype(np.int16)
    bpp = c * 2
    out = []
    for y in range(h):
        raw = rows[y]
        kind = (y % 3) if filters else 0
        if kind == 1:  # Sub
            f = raw - np.concatenate([np.zeros(bpp, np.int16), raw[:-bpp]])
        elif kind == 2:  # Up
            f = raw - (rows[y - 1] if y else 0)
        else:
            f = raw
        out.append(bytes([kind]) + (f % 256).astype(np.uint8).tobytes())

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(out)))
                     + chunk(b"IEND", b""))
    return path


def scene(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """A textured (h, w, 3) uint8 image that compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ---------------------------------------------------------------------------- raw folders

def label_text(rows: list[str], header: bool = True) -> str:
    head = ["imagesource:GoogleEarth", "gsd:0.146"] if header else []
    return "\n".join(head + rows) + "\n"


GOOD_ROWS = [
    "10 10 60 10 60 40 10 40 plane 0",
    "100 100 150 100 150 130 100 130 small-vehicle 1",
    "200.5 20 240 20 240 60 200.5 60 storage-tank 0",
]


def make_raw(root: Path, ids: tuple[str, ...] = ("P0001", "P0002", "P0003"), size: int = 256) -> Path:
    """RAW_DIR with `ids` as PNG scenes of size x size and a clean labelTxt for each."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(exist_ok=True)
    for i, image_id in enumerate(ids):
        write_png(root / "images" / f"{image_id}.png", scene(size, size, seed=i))
        (root / "labelTxt" / f"{image_id}.txt").write_text(label_text(GOOD_ROWS), encoding="utf-8")
    return root


def caption(image_id: str, filename: str, text: str | None = None) -> dict:
    return {"image_id": image_id, "filename": filename, "text_input": "Describe the image.",
            "text_output": text if text is not None else
            "This is an aerial image of an airport with a plane and a small vehicle."}


def qa_entry(filename: str, pairs: list[tuple[str, str, str]]) -> dict:
    return {"filename": filename, "caption": "An aerial image with a plane near a storage tank.",
            "qa_pairs": [{"question": q, "answer": a, "type": t} for q, a, t in pairs]}


def write_json(path: Path, annotations: list) -> Path:
    path.write_text(json.dumps({"annotations": annotations}, indent=1), encoding="utf-8")
    return path


def write_tiff(path: Path, data: np.ndarray, **kwargs) -> Path:
    tifffile.imwrite(path, data, **kwargs)
    return path
