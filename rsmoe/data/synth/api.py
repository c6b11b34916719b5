"""Public API: render one scene in memory, or write a corpus of them in DOTA layout."""
from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from rsmoe.data.dota import write_label
from rsmoe.data.records import DotaLabel, DotaObject
from rsmoe.data.synth.canvas import Canvas
from rsmoe.data.synth.constants import (
    GSD_RANGE,
    HEADLESS,
    IMAGESOURCE,
    PNG_COMPRESS_LEVEL,
    THEMES,
)
from rsmoe.data.synth.context import finish_scene
from rsmoe.data.synth.themes import THEME_LAYOUTS
from rsmoe.files import swapped_folder


def scene_id(index: int) -> str:
    return f"P{index:04d}"


def theme_of(index: int, seed: int = 0) -> str:
    """Themes cycle, so any 8 consecutive scenes cover all of them; the seed shifts the cycle."""
    return THEMES[(index + seed) % len(THEMES)]


def _rot90(arr: np.ndarray, objects: list[DotaObject]) -> tuple[np.ndarray, list[DotaObject]]:
    """Turn the scene a quarter counter-clockwise: pixel (x, y) -> (y, W - x). A rotation keeps
    the polygons clockwise and their head corner first."""
    w = arr.shape[1]
    moved = [DotaObject(tuple((round(y, 1), round(w - x, 1)) for x, y in o.polygon),  # type: ignore[arg-type]
                        o.category, o.difficult) for o in objects]
    return np.rot90(arr), moved


def _headless_first(obj: DotaObject) -> DotaObject:
    """Objects without a head start at their top-left-most corner, keeping clockwise order."""
    if obj.category not in HEADLESS:
        return obj
    k = min(range(4), key=lambda i: (obj.polygon[i][0] + obj.polygon[i][1], i))
    return DotaObject(obj.polygon[k:] + obj.polygon[:k],  # type: ignore[arg-type]
                      obj.category, obj.difficult)


def render_scene(index: int, seed: int = 0, min_size: int = 1024,
                 max_size: int = 1536) -> tuple[np.ndarray, DotaLabel, str]:
    """Scene `index` of corpus `seed` in memory: (H, W, 3) uint8 image, its label, its theme."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    if not 256 <= min_size <= max_size:
        raise ValueError(f"need 256 <= min_size <= max_size, got {min_size}, {max_size}")
    rng = np.random.default_rng([seed, index])
    theme = theme_of(index, seed)
    w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    gsd = round(float(rng.uniform(*GSD_RANGE[theme])), 3)
    cv = Canvas(rng, w, h, gsd)
    THEME_LAYOUTS[theme](cv)
    arr, objects = finish_scene(cv), cv.objects
    for _ in range(int(rng.integers(4))):  # layouts are drawn 'north up'; turn them for variety
        arr, objects = _rot90(arr, objects)
    label = DotaLabel([_headless_first(o) for o in objects], IMAGESOURCE, gsd)
    return np.ascontiguousarray(arr), label, theme


def _write_scene(job: tuple[str, int, int, int, int]) -> str:
    """Render scene `index` and write its PNG and labelTxt (one process-pool job)."""
    out_dir, i, seed, min_size, max_size = job
    out = Path(out_dir)
    arr, label, _ = render_scene(i, seed, min_size, max_size)
    sid = scene_id(i)
    Image.fromarray(arr).save(out / "images" / f"{sid}.png", format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    write_label(out / "labelTxt" / f"{sid}.txt", label)
    return sid


def synthesize(out_dir: str | Path, scenes: int, seed: int = 0, *, min_size: int = 1024,
               max_size: int = 1536, progress: bool = False, workers: int | None = None) -> list[str]:
    """Write scenes P0000.. as out_dir/images/Pxxxx.png and out_dir/labelTxt/Pxxxx.txt.

    Byte-identical for the same (seed, index, sizes), however many `workers` (processes; default:
    one per CPU core, at most 4) render them: each scene has its own RNG stream, PNGs are written
    without metadata at a fixed compression level.

    A new `out_dir` appears only when every scene is written (they go to a sibling folder that is
    swapped in), so a killed run leaves no half corpus that `make data` would take for a whole
    one; a folder that already holds images/ is written into in place.
    """
    out = Path(out_dir)
    if (out / "images").is_dir():
        return _synthesize_into(out, scenes, seed, min_size, max_size, progress, workers)
    for stale in out.parent.glob(f"{out.name}.tmp-*"):  # a killed earlier run's sibling
        shutil.rmtree(stale, ignore_errors=True)
    with swapped_folder(out) as tmp:
        return _synthesize_into(tmp, scenes, seed, min_size, max_size, progress, workers)


def _synthesize_into(out: Path, scenes: int, seed: int, min_size: int, max_size: int, progress: bool,
                     workers: int | None) -> list[str]:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labelTxt").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), i, seed, min_size, max_size) for i in range(scenes)]
    workers = min(workers or os.cpu_count() or 1, 4, max(1, scenes))
    with tqdm(total=scenes, desc="synth", unit="scene", disable=not progress) as bar:
        if workers == 1:
            ids = []
            for job in jobs:
                ids.append(_write_scene(job))
                bar.update(1)
            return ids
        # spawn, not fork: the caller may hold threads (torch) that a forked child would inherit mid-lock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            ids = []
            for sid in pool.map(_write_scene, jobs):
                ids.append(sid)
                bar.update(1)
    return ids
