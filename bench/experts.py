"""Benchmark: N experts as LoRA adapters on ONE shared base LLM vs N separate LLM copies.

Run from the repo root:  python bench/experts.py   ->  bench/results/experts.json

memory_ratio = resident bytes of the shared-base LLM holding every adapter RSMoE holds (the
  "stage1" adapter plus the N expert adapters) / resident bytes of N independent base LLMs, each
  holding only its expert's adapter. Each variant is built in its own fresh subprocess and
  measured as the growth of process RSS (after gc.collect()) from just before to just after the
  LLM part is built; everything else in RSMoE (image encoder, Q-Former, router) is the same in
  both modes, so it is left out. The checkpoint loads lazily through mmap, and N copies of one
  file would then share page-cache pages, which N separately fine-tuned experts could not do;
  so in BOTH variants every base weight is copied once into private memory before measuring.
  Parameter bytes (unique storages of parameters and buffers) are reported as an exact
  cross-check.

generate_speedup = time of per-expert sequential decoding on the shared base (one `generate`
  per expert, the realistic alternative) / time of ONE batched mixed-adapter `generate`.
  Same model, same images, same rows; min_new_tokens == max_new_tokens, so every row decodes
  exactly the same number of tokens in both. The variants alternate within one process, after
  one warm-up each, and the median of --repeats runs is taken (a noisy machine slows both).
  Sequential decoding on N separate full copies (RSMoE.use_separate_copies) is timed as an
  extra when memory allows. equal_tokens: the batched and sequential texts are identical.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "artifacts" / "prepared" / "images"


def rss_bytes() -> int:
    gc.collect()
    import psutil
    return psutil.Process().memory_info().rss


def unique_bytes(*models) -> int:
    """Bytes of the distinct storages behind the models' parameters and buffers."""
    seen: dict[int, int] = {}
    for m in models:
        for t in (*m.parameters(), *m.buffers()):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def measure_memory(mode: str, preset_name: str, experts: int) -> dict:
    """Child process: build the LLM part in `mode` ("shared" / "separate"), report RSS growth."""
    import torch
    from peft import LoraConfig, get_peft_model
    from rsmoe.model import STAGE1, get_preset
    from rsmoe.model.llm import build_llm
    from rsmoe.model.presets import LLM_LORA_TARGETS

    preset = get_preset(preset_name, experts=experts)
    lora = preset.llm_lora
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=list(LLM_LORA_TARGETS), task_type="CAUSAL_LM")

    def base():
        llm, _ = build_llm(preset.llm)
        llm.requires_grad_(False)
        with torch.no_grad():  # private memory, not mmap'd checkpoint pages (see the docstring)
            for t in (*llm.parameters(), *llm.buffers()):
                t.data = t.data.clone()
        return llm

    before, start = rss_bytes(), time.perf_counter()
    if mode == "shared":  # as RSMoE.__init__: one base, adapter "stage1" plus one per expert
        llm = get_peft_model(base(), cfg, adapter_name=STAGE1)
        for name in preset.expert_names:
            llm.add_adapter(name, cfg)
        models = [llm]
    else:  # as RSMoE.use_separate_copies: one full base per expert, holding only its adapter
        models = [get_peft_model(base(), cfg, adapter_name=name) for name in preset.expert_names]
    seconds, after = time.perf_counter() - start, rss_bytes()
    return dict(rss_before_bytes=before, rss_after_bytes=after, rss_delta_bytes=after - before,
                param_bytes=unique_bytes(*models), build_seconds=round(seconds, 3),
                adapters=[list(m.peft_config) for m in models])


def memory_in_subprocess(mode: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_measure", mode,
           "--preset", args.preset, "--experts", str(args.experts)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"memory measurement ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pixel_values(model, n: int):
    """The first n prepared images when they exist, else fixed random pixels (seed 0)."""
    import torch
    paths = sorted(IMAGES.glob("*.png"))[:n]
    if len(paths) == n:
        from PIL import Image
        return model.pixel_values([Image.open(p).convert("RGB") for p in paths]), [p.name for p in paths]
    size = model.preset.image_encoder.image_size
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)), "random, seed 0"


def time_generation(args) -> dict:
    import psutil
    import torch
    from rsmoe.model import RSMoE, get_preset
    from rsmoe.model.presets import DEFAULT_INSTRUCTION, EXPERT_INSTRUCTIONS
    from rsmoe.model.rsmoe import Row

    model = RSMoE(get_preset(args.preset, experts=args.experts))
    pixels, source = pixel_values(model, args.images)
    with torch.no_grad():  # the encoders run once: only the LLM decoding is timed
        feats = model.vlm_features(model.image_tokens(pixels), [DEFAULT_INSTRUCTION] * len(pixels))
    rows = [Row(b, e, EXPERT_INSTRUCTIONS[e], DEFAULT_INSTRUCTION, router=True)
            for b in range(len(pixels)) for e in model.experts]
    n, variants, copies = args.new_tokens, ["batched", "sequential_shared"], None

    def run(variant: str) -> tuple[float, list[str]]:
        model.separate = copies if variant == "sequential_separate" else None
        start = time.perf_counter()
        texts = model.generate_rows(feats, rows, max_new_tokens=n, min_new_tokens=n,
                                    sequential=variant != "batched")
        return time.perf_counter() - start, texts

    need = 2 * args.experts * unique_bytes(model.llm)  # the copies plus headroom
    if psutil.virtual_memory().available > need:
        model.use_separate_copies()
        copies = model.separate
        variants.append("sequential_separate")
    texts = {v: run(v)[1] for v in variants}  # warm-up, and the texts compared below
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):  # alternate, so a slow spell of the machine hits every variant
        for v in variants:
            seconds[v].append(round(run(v)[0], 4))
    median = {v: statistics.median(s) for v, s in seconds.items()}
    out = dict(image_source=source, rows=len(rows), new_tokens_per_row=n, seconds=seconds,
               median_seconds=median,
               generate_speedup=round(median["sequential_shared"] / median["batched"], 3),
               equal_tokens=texts["sequential_shared"] == texts["batched"], texts_batched=texts["batched"])
    if copies is not None:
        out["generate_speedup_vs_separate"] = round(median["sequential_separate"] / median["batched"], 3)
        out["equal_tokens_separate"] = texts["sequential_separate"] == texts["batched"]
    else:
        out["sequential_separate_skipped"] = f"less than {need} bytes of memory available"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--experts", type=int, default=3)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "experts.json")
    p.add_argument("--_measure", choices=["shared", "separate"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._measure:  # child process of the memory measurement: one JSON line on stdout
        print(json.dumps(measure_memory(args._measure, args.preset, args.experts)))
        return

    import peft, torch, transformers  # noqa: E401
    memory = {mode: memory_in_subprocess(mode, args) for mode in ("shared", "separate")}
    speed = time_generation(args)
    result = dict(
        memory_ratio=round(memory["shared"]["rss_delta_bytes"] / memory["separate"]["rss_delta_bytes"], 4),
        param_bytes_ratio=round(memory["shared"]["param_bytes"] / memory["separate"]["param_bytes"], 4),
        generate_speedup=speed.pop("generate_speedup"),
        equal_tokens=speed.pop("equal_tokens"),
        memory=memory, generation=speed,
        settings=dict(preset=args.preset, experts=args.experts, images=args.images,
                      new_tokens=args.new_tokens, repeats=args.repeats, torch_threads=torch.get_num_threads()),
        versions=dict(python=platform.python_version(), torch=torch.__version__, peft=peft.__version__,
                      transformers=transformers.__version__),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count()),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")  # never leave a half-written result behind
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)

    mib = 2 ** 20
    s, g = memory["shared"], speed["median_seconds"]
    print(f"memory  shared {s['rss_delta_bytes'] / mib:.0f} MiB vs separate "
          f"{memory['separate']['rss_delta_bytes'] / mib:.0f} MiB RSS -> ratio {result['memory_ratio']} "
          f"(parameter bytes: {result['param_bytes_ratio']})")
    print(f"decode  {speed['rows']} rows x {args.new_tokens} tokens: batched {g['batched']:.2f} s, "
          f"sequential {g['sequential_shared']:.2f} s -> speedup {result['generate_speedup']}"
          + (f", separate copies {g['sequential_separate']:.2f} s" if "sequential_separate" in g else ""))
    print(f"equal_tokens {result['equal_tokens']}; wrote {args.out}")


if __name__ == "__main__":
    main()
