"""`rsmoe` command line: pipeline stages and the direct folder commands.

    rsmoe stage NAME [--params FILE]          run one pipeline stage with params.yaml
    rsmoe synth --out DIR --scenes N --seed S  write the embedded DOTA-format corpus
    rsmoe validate RAW_DIR --report FILE      Great Expectations checks of a raw folder
    rsmoe prepare RAW_DIR OUT_DIR             DOTA -> RSICap crops, captions, QA, splits
    rsmoe params [--params FILE]              check params.yaml and print it resolved
    rsmoe model --preset NAME [--experts N]   build a model preset, print its parameter table
    rsmoe caption --model DIR [--encoder onnx|torch] IMAGE...   caption images (aspect segments)
    rsmoe vqa --model DIR IMAGE QUESTION      answer one question with the expert of its type
    rsmoe encode --onnx GRAPH IMAGE... --out FILE   features of images from an exported graph
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from rsmoe.params import DEFAULT_PARAMS, load_params

# Nothing in rsmoe may reach a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

log = logging.getLogger("rsmoe")


def _params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: %(default)s)")


def cmd_stage(args: argparse.Namespace) -> int:
    from rsmoe import stages

    params = load_params(args.params)
    if args.name in ("stage1", "stage2") and params.train.processes > 1 and not os.environ.get("RSMOE_LAUNCHED"):
        return _launch(args, params.train.processes)
    result = stages.load(args.name).run(params)
    log.info("stage %s done: %s", args.name, json.dumps(result, default=str)[:500])
    return 0


def _launch(args: argparse.Namespace, processes: int) -> int:
    """Re-run this stage in `processes` processes (torch's launcher; accelerate reads its
    environment): one per GPU, or gloo processes on a CPU-only machine."""
    import subprocess

    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun) if torchrun.exists() else "torchrun", "--standalone", "--nproc_per_node", str(processes),
           "-m", "rsmoe", "stage", args.name, "--params", str(args.params)]
    log.info("stage %s: %d processes: %s", args.name, processes, " ".join(cmd))
    return subprocess.call(cmd, env={**os.environ, "RSMOE_LAUNCHED": "1"})


def cmd_synth(args: argparse.Namespace) -> int:
    from rsmoe.data.synth import synthesize

    # Unset options come from params.yaml's `synth` section (or its defaults without a file).
    cfg = load_params(args.params).synth if args.params.is_file() else _default("synth")
    opts = {k: getattr(cfg, k) if getattr(args, k) is None else getattr(args, k)
            for k in ("scenes", "seed", "min_size", "max_size")}
    ids = synthesize(args.out, opts["scenes"], opts["seed"], min_size=opts["min_size"],
                     max_size=opts["max_size"], progress=True)
    print(f"wrote {len(ids)} scenes to {args.out} (images/ and labelTxt/)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from rsmoe.data.validation import validate

    params = load_params(args.params) if args.params.is_file() else None
    cfg = params.validate_ if params else None
    raw = Path(args.raw_dir)
    if args.format != "dota":
        from rsmoe.data.validation import validate_captioned

        images, annotations = _captioned_inputs(args)
        report = validate_captioned(args.format, annotations, images, cfg or _default("validate_"),
                                    bands=params.data.bands if params else (0, 1, 2), progress=True)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        report.to_json(args.report)
        print(report.summary())
        print(f"report: {args.report}")
        return 0 if report.ok else 1
    captions = args.captions or _found(raw / "captions.json")
    qa = args.qa or _found(raw / "annotations.json")
    kwargs = {"captions": captions, "qa": qa, "progress": True}
    if params:
        kwargs["bands"] = params.data.bands
    report = validate(raw, cfg or _default("validate_"), **kwargs)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    report.to_json(args.report)
    print(report.summary())
    print(f"report: {args.report}")
    return 0 if report.ok else 1


def cmd_prepare(args: argparse.Namespace) -> int:
    from rsmoe.data.prepare import prepare
    from rsmoe.data.report import ValidationReport

    params = load_params(args.params) if args.params.is_file() else None
    raw = Path(args.raw_dir)
    report = ValidationReport.from_json(args.report) if args.report else None
    if args.format != "dota":
        from rsmoe.data.prepare_captioned import prepare_captioned

        images, annotations = _captioned_inputs(args)
        stats = prepare_captioned(args.format, annotations, images, args.out_dir,
                                  params.prepare if params else _default("prepare"), report=report,
                                  bands=params.data.bands if params else (0, 1, 2))
        print(json.dumps({k: stats[k] for k in ("images", "crops", "references")}))
        return 0
    stats = prepare(raw, args.out_dir, params.prepare if params else _default("prepare"),
                    captions=args.captions or _found(raw / "captions.json"),
                    qa=args.qa or _found(raw / "annotations.json"), report=report,
                    bands=params.data.bands if params else (0, 1, 2))
    print(json.dumps({k: stats[k] for k in ("scenes", "crops", "caption_sources")}))
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    print(json.dumps(params.model_dump(mode="json", by_alias=True), indent=2))
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    import torch

    from rsmoe.model import RSMoE, get_preset

    overrides = {"experts": args.experts} if args.experts else {}
    preset = get_preset(args.preset, **overrides)
    if args.meta:  # shapes only: the paper presets' real sizes without their weights
        with torch.device("meta"):
            model = RSMoE(preset, load_weights=False)
    else:
        model = RSMoE(preset)
    for mode in ("stage1", "stage2", "one-stage"):
        model.set_stage(mode)
        print(model.summary(), end="\n\n")
    return 0


def _load_model(folder: Path, params_file: Path):
    from rsmoe.model import RSMoE

    params = load_params(params_file) if Path(params_file).is_file() else None
    cache = params.paths.cache if params else None
    return RSMoE.from_pretrained(folder, cache=cache)


def cmd_caption(args: argparse.Namespace) -> int:
    from rsmoe.inference import caption_files

    model = _load_model(args.model, args.params)
    results, failures = caption_files(model, args.images, encoder=args.encoder, onnx_dir=args.onnx,
                                      batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    for f in failures:
        log.error("skipped %s: %s", f.path, f.reason)
    if args.json:
        print(json.dumps([{"image": str(p), "caption": c.text, "segments": c.segments} for p, c in results]
                         + [{"image": f.path, "error": f.reason} for f in failures], indent=2))
    else:
        for path, cap in results:
            print(f"{path}\n  {cap.text}")
            for name, seg in cap.segments.items():
                print(f"    [{name}] {seg}")
    return 1 if failures else 0


def cmd_vqa(args: argparse.Namespace) -> int:
    from rsmoe.inference import answer_file

    model = _load_model(args.model, args.params)
    result = answer_file(model, args.image, args.question, args.type, max_new_tokens=args.max_new_tokens)
    print(json.dumps(result, indent=2) if args.json else f"[{result['type']} -> {result['expert']}] {result['answer']}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    from rsmoe.export import encode_images, save_features

    features, failures = encode_images(args.onnx, args.images, batch_size=args.batch_size)
    for f in failures:
        log.error("skipped %s (%s): %s", f.path, f.kind, f.reason)
    if features:
        save_features(args.out, features)
        log.info("wrote %d feature tensors to %s", len(features), args.out)
    return 1 if failures else 0


def cmd_scores(args: argparse.Namespace) -> int:
    from rsmoe.errors import InputError
    from rsmoe.evaluation.scoring import scores_markdown

    if not args.metrics.is_file():
        raise InputError(args.metrics, "not found", "run `rsmoe stage evaluate` (or `make run`) first")
    print(scores_markdown(json.loads(args.metrics.read_text(encoding="utf-8"))))
    return 0


def _captioned_inputs(args: argparse.Namespace) -> tuple[Path, Path]:
    """(image folder, annotation file) of `rsmoe validate|prepare --format F ANNOTATIONS [--images DIR]`:
    the positional argument is the annotation file (or the folder holding it and images/)."""
    from rsmoe.data.captioned import find_annotations

    given = Path(args.raw_dir)
    if given.is_dir():
        images = args.images or given / "images"
        return images, find_annotations(args.format, None, images)
    return args.images or given.parent / "images", given


def _found(path: Path) -> Path | None:
    return path if path.is_file() else None


def _default(section: str):
    from rsmoe.params import Params

    return getattr(Params(), section)


def build_parser() -> argparse.ArgumentParser:
    from rsmoe.stages import STAGES

    parser = argparse.ArgumentParser(prog="rsmoe", description="RS-MoE remote sensing captioning pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = add("stage", cmd_stage, "run one pipeline stage with the settings of params.yaml")
    p.add_argument("name", choices=STAGES, help="stage name")
    _params_arg(p)

    p = add("synth", cmd_synth, "write the embedded DOTA-format corpus (deterministic)")
    p.add_argument("--out", type=Path, required=True, help="output folder (gets images/ and labelTxt/)")
    p.add_argument("--scenes", type=int, help="number of scenes (default: params.yaml synth.scenes)")
    p.add_argument("--seed", type=int, help="random seed (default: synth.seed)")
    p.add_argument("--min-size", type=int, help="smallest scene side in px (default: synth.min_size)")
    p.add_argument("--max-size", type=int, help="largest scene side in px (default: synth.max_size)")
    _params_arg(p)

    for name, fn, help_ in (("validate", cmd_validate, "check a raw DOTA-format folder with Great Expectations"),
                            ("prepare", cmd_prepare, "DOTA scenes -> RSICap crops, captions and QA; or a captioned "
                                                     "set (--format) -> the same layout")):
        p = add(name, fn, help_)
        p.add_argument("raw_dir", type=Path, help="folder with images/ and labelTxt/ (--format dota), or the "
                       "annotation file of a captioned set (or the folder holding it beside images/)")
        p.add_argument("--format", choices=["dota", "rsicap", "karpathy", "folder"], default="dota",
                       help="dota: scenes + labelTxt (default); rsicap: captions.json; karpathy: dataset_*.json "
                            "(RSICD, UCM-, Sydney-, NWPU-Captions); folder: captions.csv / captions.jsonl")
        p.add_argument("--images", type=Path, help="image folder of a captioned set (default: images/ beside "
                       "the annotation file)")
        if name == "prepare":
            p.add_argument("out_dir", type=Path, help="output folder")
            p.add_argument("--report", type=Path, help="validation report.json whose quarantined records to skip")
        else:
            p.add_argument("--report", type=Path, required=True, help="where to write report.json")
        p.add_argument("--captions", type=Path, help="RSICap captions.json (default: RAW_DIR/captions.json if present)")
        p.add_argument("--qa", type=Path, help="RSIEval annotations.json (default: RAW_DIR/annotations.json if present)")
        _params_arg(p)

    p = add("params", cmd_params, "check params.yaml and print it with defaults filled in")
    _params_arg(p)

    from rsmoe.model.presets import PRESETS

    p = add("model", cmd_model, "build a model preset and print its trainable / frozen parameters per stage")
    p.add_argument("--preset", choices=list(PRESETS), default="small", help="model preset (default: %(default)s)")
    p.add_argument("--experts", type=int, choices=[1, 2, 3, 4], help="number of experts N (default: the preset's)")
    p.add_argument("--meta", action="store_true", help="build on the meta device: sizes only, no weights needed")

    p = add("caption", cmd_caption, "caption image files with a trained model folder (exit 1 if an image was skipped)")
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, GeoTIFF)")
    p.add_argument("--model", type=Path, required=True, help="model folder, e.g. models/stage2")
    p.add_argument("--encoder", choices=["torch", "onnx"], default="torch",
                   help="frozen encoders in PyTorch or the exported ONNX graphs (default: %(default)s)")
    p.add_argument("--onnx", type=Path, default=Path("models/onnx"), help="export folder for --encoder onnx")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int,
                   help="per caption aspect: an expert may take it x the aspects it writes (default: the preset's)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _params_arg(p)

    p = add("vqa", cmd_vqa, "answer a question about an image with the expert of its question type")
    p.add_argument("image", type=Path)
    p.add_argument("question")
    p.add_argument("--model", type=Path, required=True, help="model folder, e.g. models/stage2")
    from rsmoe.evaluation.vqa import QTYPE_ASPECT
    p.add_argument("--type", choices=list(QTYPE_ASPECT), help="RSIEval question type (default: guessed from the question)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--json", action="store_true")
    _params_arg(p)

    p = add("scores", cmd_scores, "print the evaluation scores beside their baselines as markdown tables")
    p.add_argument("metrics", type=Path, nargs="?", default=Path("metrics/evaluate.json"),
                   help="metrics file of the evaluate stage (default: %(default)s)")

    p = add("encode", cmd_encode, "encode image files with an exported ONNX graph into a safetensors file")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--onnx", type=Path, required=True, help="models/onnx/image_encoder.onnx or vlm_encoder.onnx")
    p.add_argument("--out", type=Path, required=True, help="features.safetensors (one tensor per image path)")
    p.add_argument("--batch-size", type=int, default=8)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that explain a user's mistake (bad input, missing file, wrong params): the
    CLI prints them as one message and exits 2; anything else is a bug and keeps its traceback.
    Imported here, at the top of the package, so that `rsmoe.errors` imports nothing of it."""
    from rsmoe.errors import InputError
    from rsmoe.model.weights import WeightsError
    from rsmoe.params import ParamsError
    from rsmoe.stages import StageError

    return (InputError, ParamsError, StageError, WeightsError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.fn(args)
    except _user_errors() as err:  # expected, explained failures: no traceback, just the message
        print(f"rsmoe {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
