"""Model cards (`README.md`, Hugging Face style) for the folders the pipeline writes.

`stage1` and `stage2` write one into their model folder (what made the model: preset, experts,
strategy, data version, the params of the stages, the training summary); `export` writes one
into the ONNX folder with the evaluation scores beside their baselines, since it runs after
`evaluate` (a later stage cannot add a file to an earlier stage's DVC output).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import yaml

from rsmoe.params import Params

LIMITS = """\
- The default model is trained for minutes on 2 CPU cores, on a synthetic DOTA-format corpus
  (`rsmoe synth`): scenes drawn from shapes, not photographs. It has not seen real aerial imagery
  unless you trained it on yours; check its scores on your own val split before relying on it.
- Captions name the scene type more often than they count objects right: read the grounding line
  (exact-count accuracy, hallucinated and missed classes) before trusting a count or a class.
- VQA answers are short free text scored by rules per question type (`rsmoe.evaluation.vqa`).
- The image encoder (and, in Stage II, the Q-Former) are frozen: new object classes need
  training, not prompting."""


def data_version(raw: Path) -> str:
    """The DVC version of the raw data: the md5 in the `.dvc` file of `raw` or of the nearest
    folder above it (`data.dvc` for the default `data/raw`), or a note that there is none."""
    for folder in [Path(raw), *Path(raw).parents]:
        dvc_file = folder.with_name(folder.name + ".dvc") if folder.name else None
        if dvc_file is not None and dvc_file.is_file():
            outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
            return f"`{dvc_file}` md5 {outs[0].get('md5', '?')} ({outs[0].get('nfiles', '?')} files)"
    return f"{raw} is not tracked by DVC (no .dvc file for it or a folder above it)"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"


def model_card(params: Params, name: str, training: Mapping[str, Any] | None = None,
               scores: str | None = None) -> str:
    """The card of model folder `name` (stage1, stage2, onnx) as markdown with YAML front matter;
    `scores`: the evaluation's markdown (`rsmoe.evaluation.scoring.scores_markdown`), when known."""
    m = params.model
    # the sections its stage reads (dvc.yaml), so a card never shows a setting that did not make it
    sections = {"model": params.model, "train": params.train, "stage1": params.stage1}
    if name != "stage1":
        sections["stage2"] = params.stage2
    params_yaml = yaml.safe_dump({k: v.model_dump(mode="json") for k, v in sections.items()}, sort_keys=False)
    lines = [
        "---", "library_name: rsmoe", "tags: [remote-sensing, image-captioning, vqa, mixture-of-experts, lora]",
        f"base_model_preset: {m.preset}", "---", "",
        f"# rsmoe `{name}`: RS-MoE, preset `{m.preset}`, {m.experts} expert(s), {params.train.strategy}", "",
        "## What made it", "",
        f"- Data: {data_version(params.paths.raw)}; prepared captions sha256 "
        f"{_digest(Path(params.paths.prepared) / 'captions.json')}, QA {_digest(Path(params.paths.prepared) / 'qa.json')}.",
        f"- Preset `{m.preset}`" + (f", InstructBLIP from `{m.instructblip}`" if m.instructblip else "")
        + (f", LLM from `{m.llm}`" if m.llm else "") + ".",
        "- Params of the stages that made it (`params.yaml`):", "", "```yaml", params_yaml.rstrip(), "```", "",
    ]
    if training:
        keep = ("skipped", "steps", "epochs", "examples", "precision", "first_loss", "final_loss",
                "mean_loss_last_epoch", "mode", "content_warmup")
        lines += ["## Training", "", *(f"- {k}: {training[k]}" for k in keep if k in training), ""]
    lines += ["## Evaluation", ""]
    if scores:
        lines += [scores.replace("# rsmoe:", "Split and model:", 1), ""]
    else:
        lines += ["`evaluate` runs after this folder is written: its scores, beside the baselines, are in "
                  "`metrics/evaluate.json` (`rsmoe scores`), `reports/report.html` and the card of the "
                  "ONNX folder.", ""]
    lines += [
        "## Intended use", "",
        "Captions and short answers for aerial / satellite crops like the training data; a starting "
        "point to retrain on your own imagery (`make run`, `prefect deployment run rsmoe/full`). "
        "Load with `rsmoe caption --model FOLDER IMAGE` or `RSMoE.from_pretrained(FOLDER)`; safetensors "
        "and JSON only, no remote code.", "",
        "## Limits", "", LIMITS, "",
    ]
    return "\n".join(lines)


def write_card(folder: Path, text: str) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
