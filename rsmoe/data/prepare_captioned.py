"""A captioned set (`rsmoe.data.captioned`: rsicap | karpathy | folder) -> the prepared layout.

The same layout as the DOTA path (`rsmoe.data.prepare`): images/, captions.json, qa.json (empty:
these sets have no QA), splits.json, stats.json; one captions.json record per image with every
reference in `references` (`text_output` is the first). Training takes one example per reference
(`rsmoe.training.data.load_examples`) and evaluation scores each image against all of them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from rsmoe.data.captioned import CaptionedImage, inside, normalise_split, prepared_name, read_captioned, scene_of
from rsmoe.data.images import ImageReadError, load_rgb, save_png
from rsmoe.data.loaders import SPLITS, AnnotationError
from rsmoe.data.prepare import INSTRUCTIONS, assign_splits, stable_index
from rsmoe.data.report import ValidationReport
from rsmoe.files import swapped_folder, write_json
from rsmoe.params import PrepareParams

log = logging.getLogger(__name__)


def prepare_captioned(fmt: str, annotations: str | Path, images: str | Path, out_dir: str | Path,
                      cfg: PrepareParams, *, report: ValidationReport | None = None,
                      bands: tuple[int, int, int] = (0, 1, 2), progress: bool = True) -> dict[str, Any]:
    """Write a captioned set (RSICap / Karpathy / folder) in the prepared layout; returns stats.

    Records the validate stage quarantined are left out (without a report, records that cannot
    be used are skipped with a warning). Images keep their content; one whose longer side exceeds
    `prepare.crop_size` is scaled down to it (the encoders take 224-448 px). The set's own split is
    kept; without one, images are split by scene (RSICap crops) or image with `prepare.splits`.
    """
    annotations, images, out_dir = Path(annotations), Path(images), Path(out_dir)
    items = read_captioned(fmt, annotations)
    bad = report.quarantined_captioned() if report else set()
    bad_sentences = report.quarantined_sentences() if report else set()
    kept: list[tuple[CaptionedImage, list[str]]] = []
    for item in items:
        if item.index in bad:
            continue
        refs = [s for j, s in enumerate(item.sentences) if (item.index, j) not in bad_sentences and s]
        refs = list(dict.fromkeys(refs))
        if item.filename is None or not refs or not inside(images, item.filename) or (
                item.split is not None and normalise_split(item.split) is None):
            log.warning("skipping %s of %s: run `rsmoe stage validate` to see why", item.record, annotations)
            continue
        kept.append((item, refs))
    if not kept:
        raise AnnotationError(annotations, "file", "no usable image with a caption",
                              "fix the records the validate stage quarantined (see its report.json)")
    given = [normalise_split(i.split) for i, _ in kept if i.split is not None]
    if given and len(given) < len(kept):
        raise AnnotationError(annotations, "file", f"{len(kept) - len(given)} images have no split while "
                              f"{len(given)} have one", "give every record a split, or none (then prepare.splits "
                              "splits the set by image)")
    split_of = ({i.index: normalise_split(i.split) for i, _ in kept} if given else
                _by_scene(kept, cfg))
    records, taken, skipped = [], set(), []
    with swapped_folder(out_dir) as tmp:
        (tmp / "images").mkdir()
        for n, (item, refs) in enumerate(tqdm(kept, desc="prepare", unit="img", disable=not progress)):
            try:
                rgb = load_rgb(images / item.filename, bands)
            except ImageReadError as err:  # validate quarantines these; without a report we skip them
                log.warning("skipping %s", err)
                skipped.append(item.filename)
                continue
            name = prepared_name(item.filename, taken)
            save_png(tmp / "images" / name, _fit(rgb, cfg.crop_size))
            records.append({
                "image_id": item.image_id or str(n), "filename": name,
                "text_input": item.instruction or INSTRUCTIONS[stable_index(name, len(INSTRUCTIONS))],
                "text_output": refs[0], "references": refs, "split": split_of[item.index],
                "scene": scene_of(item.filename), "source_file": item.filename, "caption_source": "human",
                "dataset": fmt,
            })
        stats = {
            "format": fmt, "annotations": annotations.name, "images": len(records),
            "crops": {s: sum(r["split"] == s for r in records) for s in SPLITS},
            "references": {s: sum(len(r["references"]) for r in records if r["split"] == s) for s in SPLITS},
            "caption_sources": {"human": len(records)}, "skipped_unreadable": skipped,
            "quarantined_or_unusable": len(items) - len(kept),
            "words_per_reference": _median_words(records),
        }
        write_json(tmp / "captions.json", {"annotations": records})
        write_json(tmp / "qa.json", {"annotations": []})
        write_json(tmp / "splits.json", {s: sorted({r["scene"] for r in records if r["split"] == s}) for s in SPLITS})
        write_json(tmp / "stats.json", stats)
    missing = [s for s in SPLITS if not stats["crops"][s]]
    if missing:
        log.warning("prepared %s has no %s images: training needs train, evaluate its split (val for the "
                    "benchmarks)", out_dir, " / ".join(missing))
    return stats


def _by_scene(kept: list[tuple[CaptionedImage, list[str]]], cfg: PrepareParams) -> dict[int, str]:
    scenes = {i.index: scene_of(i.filename) for i, _ in kept}
    of_scene = assign_splits(sorted(set(scenes.values())), dict(cfg.splits), cfg.split_seed)
    return {k: of_scene[s] for k, s in scenes.items()}


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _median_words(records: list[dict]) -> float | None:
    words = [len(r.split()) for rec in records for r in rec["references"]]
    return float(np.median(words)) if words else None
