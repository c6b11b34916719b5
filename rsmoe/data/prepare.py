"""DOTA scenes -> RSICap-format crops, captions (with aspect segments) and RSIEval-format QA.

Layout written to OUT_DIR:
    images/P0000_0000.png ...   512x512 crops, named {scene}_{crop index:04d} like RSICap
    captions.json               RSICap format + our fields (scene, window, split, objects, segments)
    qa.json                     RSIEval format + split
    splits.json                 {"train": [scene ids], "val": [...], "test": [...]}
    stats.json                  counts per split, caption sources, objects per class

Splits are made by source scene, so crops of one scene never straddle train and test. A human
caption (real RSICap) or human QA (real RSIEval) joined by filename wins over a generated one.
The output is built in a sibling `.partial` folder and swapped in at the end, so a killed run
never leaves a half-written dataset behind and rerunning starts clean.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from rsmoe.data.aspects import split_caption
from rsmoe.data.describe import color_name, describe, land_cover, make_qa, scene_type
from rsmoe.data.dota import LabelFormatError, parse_row, read_label_rows
from rsmoe.data.images import ImageReadError, list_images, load_rgb, save_png
from rsmoe.data.loaders import CaptionRecord, EvalRecord, load_rsicap, load_rsieval
from rsmoe.data.records import CropObject, DotaObject
from rsmoe.data.tiling import Window, clip_objects, crop_pixels, windows
from rsmoe.files import swapped_folder, write_json
from rsmoe.data.report import ValidationReport
from rsmoe.params import PrepareParams

log = logging.getLogger(__name__)

# RSICap's own instructions; generated captions get one of them, chosen by filename.
INSTRUCTIONS = (
    "Describe this image in detail.",
    "Take a look at this image and describe what you notice.",
    "Please provide a detailed description of the picture.",
    "Could you describe the contents of this image for me?",
)
CROP_NAME = re.compile(r"^P\d{4,}_\d{4}$")  # an image that already is an RSICap crop


def stable_index(key: str, n: int) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def _split_counts(n: int, fractions: dict[str, float], names: list[str]) -> dict[str, int]:
    """Largest-remainder counts of n scenes; every split gets >= 1 when n allows."""
    exact = {s: fractions[s] * n for s in names}
    counts = {s: int(exact[s]) for s in names}
    for s in sorted(names, key=lambda s: exact[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    if n >= len(names):
        for s in names:
            while counts[s] == 0:
                donor = max(names, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] += 1
    return counts


def assign_splits(scene_ids: list[str], fractions: dict[str, float], seed: int,
                  strata: dict[str, str] | None = None) -> dict[str, str]:
    """Scene id -> split, by scene (no crop of a scene leaks into another split).

    Within each stratum (all scenes, or the scenes of one `strata` value, e.g. the scene type),
    largest-remainder counts, every split with a share getting >= 1 scene when the stratum has
    enough; the order is a seeded permutation of the sorted ids. Stratified, val and test hold
    every type that has at least as many scenes as there are splits."""
    names = [s for s in ("train", "val", "test") if fractions.get(s, 0) > 0]
    groups: dict[str, list[str]] = {}
    for sid in sorted(scene_ids):
        groups.setdefault(strata.get(sid, "") if strata else "", []).append(sid)
    out: dict[str, str] = {}
    orders: dict[str, list[str]] = {}
    for k, (key, ids) in enumerate(sorted(groups.items())):
        counts = _split_counts(len(ids), fractions, names)
        order = orders[key] = [ids[i] for i in np.random.default_rng([seed, k] if strata else seed).permutation(len(ids))]
        pos = 0
        for s in names:
            for sid in order[pos:pos + counts[s]]:
                out[sid] = s
            pos += counts[s]
    if strata:
        _top_up(out, orders, fractions, names)
    return out


def _top_up(out: dict[str, str], orders: dict[str, list[str]], fractions: dict[str, float], names: list[str]) -> None:
    """Strata too small to share out (one scene of each type) leave val / test short: each split
    gets at least floor(share * n) scenes, and >= 1 when there are enough scenes, moved from the
    split furthest above its own share (keeping one), out of the stratum it holds most of."""
    n, keep = len(out), int(len(out) >= len(names))
    target = {s: max(int(fractions[s] * n), keep) for s in names}
    for s in names:
        while (count := Counter(out.values()))[s] < target[s]:
            spare = {d: count[d] - target[d] for d in names if d != s and count[d] > keep}
            if not spare:
                break
            donor = max(spare, key=lambda d: (spare[d], -names.index(d)))
            key = max(orders, key=lambda k: (sum(out[i] == donor for i in orders[k]), k))
            out[[i for i in orders[key] if out[i] == donor][-1]] = s


def object_colour(crop: np.ndarray, obj: CropObject) -> str | None:
    """Colour name of the object's own pixels inside its clipped polygon.

    A box also covers background (the ground between a plane's wings, the grass inside a
    running track), so pixels close to the colour of a ring just outside the box are left out
    when enough others remain; what is left is summarised by its median.
    """
    h, w = crop.shape[:2]
    inner, outer = Image.new("L", (w, h), 0), Image.new("L", (w, h), 0)
    pts = [tuple(p) for p in obj.polygon]
    ImageDraw.Draw(inner).polygon(pts, fill=1)
    ImageDraw.Draw(outer).polygon(pts, fill=1, outline=1, width=7)
    m, ring = np.asarray(inner, dtype=bool), np.asarray(outer, dtype=bool)
    if not m.any():
        x, y = int(min(max(obj.center[0], 0), w - 1)), int(min(max(obj.center[1], 0), h - 1))
        return color_name(tuple(float(v) for v in crop[y, x]))
    pixels = crop[m].astype(np.float32)  # (P, 3)
    ring &= ~m
    if ring.any():
        background = crop[ring].astype(np.float32).mean(axis=0)
        own = pixels[np.linalg.norm(pixels - background, axis=1) > 40.0]
        if len(own) >= max(4, 0.15 * len(pixels)):
            pixels = own
    return color_name(tuple(float(v) for v in np.median(pixels, axis=0)))


def scene_objects(label_path: Path, skip_lines: set[int]) -> list[DotaObject]:
    """Objects of a labelTxt file, skipping quarantined lines (and, without a report, bad ones)."""
    if not label_path.is_file():
        return []
    _, rows = read_label_rows(label_path)
    objects = []
    for row in rows:
        if row.line in skip_lines:
            continue
        try:
            objects.append(parse_row(row, label_path))
        except LabelFormatError as err:
            log.warning("skipping %s", err)
    return objects


def _crop_records(out: Path, cfg: PrepareParams, name: str, scene: str, split: str, win: Window, crop: np.ndarray,
                  objects: list[CropObject], human: CaptionRecord | None,
                  hq: EvalRecord | None) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Save one crop and return its captions.json record and qa.json record (None: no QA);
    None when the crop is skipped. A generated record's image_id is filled in by the caller."""
    filename = f"{name}.png"
    if cfg.skip_empty and not objects and human is None:
        return None
    save_png(out / "images" / filename, crop)
    cover = land_cover(crop)
    if human is not None:
        instruction, text, segments, source = human.instruction, human.caption, split_caption(human.caption), "human"
    else:
        gen = describe(objects, cover, cfg.crop_size, key=filename)
        segments = {k: v for k, v in gen.items() if k != "text"}
        instruction, text, source = INSTRUCTIONS[stable_index(filename, len(INSTRUCTIONS))], gen["text"], "generated"
    record = {
        "image_id": None if human is None else human.image_id,
        "filename": filename, "text_input": instruction, "text_output": text,
        "scene": scene, "split": split, "window": [win.left, win.top, win.size], "caption_source": source,
        "segments": segments, "scene_type": scene_type(objects, cover),
        "land_cover": {k: round(v, 4) for k, v in cover.items()},
        "objects": [asdict(o) for o in objects],
    }
    if hq is not None:
        pairs = [{"question": p.question, "answer": p.answer, "type": p.type} for p in hq.qa]
        caption = hq.caption or text
    else:
        pairs, caption = make_qa(objects, cover, cfg.crop_size, key=filename), text
    qa = ({"filename": filename, "caption": caption, "split": split,
           "qa_source": "human" if hq is not None else "generated", "qa_pairs": pairs} if pairs else None)
    return record, qa


def _prepare_scene(job: tuple) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter[str]] | None:
    """Tile one scene: (caption records, QA records, objects per class); None when unreadable.
    A process-pool job: everything it needs comes in `job`, and it writes only its own crops."""
    out, cfg, path, scene, split, objects, bands, human_caps, human_qa = job
    try:
        rgb = load_rgb(path, bands)
    except ImageReadError as err:  # validate quarantines these; without a report we skip them too
        log.warning("skipping %s", err)
        return None
    captions, qa, per_class = [], [], Counter()
    is_crop = CROP_NAME.match(scene) is not None
    for win in windows(rgb.shape[1], rgb.shape[0], cfg.crop_size, cfg.overlap)[: 1 if is_crop else None]:
        crop = crop_pixels(rgb, win)
        kept = [replace(o, color=object_colour(crop, o))
                for o in clip_objects(objects, win, cfg.keep_threshold, cfg.truncated_below)]
        per_class.update(o.category for o in kept)
        name = scene if is_crop else f"{scene}_{win.index:04d}"
        got = _crop_records(out, cfg, name, scene, split, win, crop, kept, human_caps.get(f"{name}.png"),
                            human_qa.get(f"{name}.png"))
        if got is not None:
            captions.append(got[0])
            qa += [got[1]] if got[1] is not None else []
    return captions, qa, per_class


def _of_scene(filename: str, scene: str) -> bool:
    return filename == f"{scene}.png" or filename.startswith(f"{scene}_")


def _map(fn, jobs: list, workers: int | None, progress: bool):
    """fn over jobs in order, in up to `workers` processes (default: one per core, at most 4)."""
    workers = min(workers or os.cpu_count() or 1, 4, max(1, len(jobs)))
    with tqdm(total=len(jobs), desc="prepare", unit="scene", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                yield fn(job)
                bar.update(1)
            return
        # spawn, not fork: the caller may hold threads (torch) that a forked child would inherit mid-lock
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for result in pool.map(fn, jobs):
                yield result
                bar.update(1)


def prepare(raw_dir: str | Path, out_dir: str | Path, cfg: PrepareParams, *, captions: Path | None = None,
            qa: Path | None = None, report: ValidationReport | None = None, bands: tuple[int, int, int] = (0, 1, 2),
            progress: bool = True, workers: int | None = None) -> dict[str, Any]:
    """Tile, clip, caption and split a raw DOTA-format folder; returns the stats written to stats.json."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    image_dir = raw_dir / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: no images folder; expected RAW_DIR/images and RAW_DIR/labelTxt "
                                f"(run `rsmoe synth --out {raw_dir}` for the embedded corpus)")
    bad_images = report.quarantined_images() if report else set()
    bad_lines = report.quarantined_label_lines() if report else {}
    human_caps = {r.filename: r for r in load_rsicap(
        captions, skip=report.quarantined_caption_indices() if report else ())} if captions else {}
    human_qa = {r.filename: r for r in load_rsieval(
        qa, skip=report.quarantined_qa_annotation_indices() if report else (),
        skip_pairs=report.quarantined_qa_indices() if report else ())} if qa else {}

    paths = [p for p in list_images(image_dir) if p.stem not in bad_images]
    # stratified by each scene's type (read from its labels the way a crop's is), so that val and
    # test see every kind of scene that has enough of them, not one scene's luck
    objects_of = {p.stem: scene_objects(raw_dir / "labelTxt" / f"{p.stem}.txt", bad_lines.get(p.stem, set()))
                  for p in paths}
    strata = {sid: scene_type(objs, {}) for sid, objs in objects_of.items()} if cfg.stratify else None
    split_of = assign_splits([p.stem for p in paths], dict(cfg.splits), cfg.split_seed, strata)
    with swapped_folder(out_dir) as tmp:  # a killed run leaves the previous prepared folder
        (tmp / "images").mkdir()
        jobs = [(tmp, cfg, path, path.stem, split_of[path.stem], objects_of[path.stem], bands,
                 {k: v for k, v in human_caps.items() if _of_scene(k, path.stem)},
                 {k: v for k, v in human_qa.items() if _of_scene(k, path.stem)}) for path in paths]
        records: list[dict[str, Any]] = []
        qa_records: list[dict[str, Any]] = []
        objects_per_class: Counter[str] = Counter()
        for result in _map(_prepare_scene, jobs, workers, progress):
            if result is not None:
                records += result[0]
                qa_records += result[1]
                objects_per_class.update(result[2])
        for i, record in enumerate(records):  # generated records are numbered in output order
            if record["image_id"] is None:
                record["image_id"] = str(i)

        stats = {
            "scenes": len(paths),
            "crops": {s: sum(c["split"] == s for c in records) for s in ("train", "val", "test")},
            "caption_sources": dict(Counter(c["caption_source"] for c in records)),
            "qa_pairs": dict(Counter(p["type"] for a in qa_records for p in a["qa_pairs"])),
            "objects_per_class": dict(sorted(objects_per_class.items())),
            "unjoined_human_captions": sorted(set(human_caps) - {c["filename"] for c in records}),
        }
        write_json(tmp / "captions.json", {"annotations": records})
        write_json(tmp / "qa.json", {"annotations": qa_records})
        write_json(tmp / "splits.json",
                    {s: sorted(k for k, v in split_of.items() if v == s) for s in ("train", "val", "test")})
        write_json(tmp / "stats.json", stats)
    if stats["unjoined_human_captions"]:
        log.warning("%d human captions matched no crop (first: %s); check crop_size/overlap and file names",
                    len(stats["unjoined_human_captions"]), stats["unjoined_human_captions"][0])
    return stats
