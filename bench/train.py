"""Benchmark: the training step of the small preset on this machine.

Run from the repo root after `make run` (it reads the prepared crops):

    python bench/train.py            ->  bench/results/train.json

tokens_per_s = caption (target) tokens per second of Stage I optimiser steps, i.e. the loop's
  own `tokens_per_s` summed over --steps steps after one warm-up step.
peak_fraction = achieved FLOP/s of those steps / this machine's matmul peak in the precision the
  steps ran in (`train.mixed_precision`, resolved as training resolves it), both measured in this run. The FLOPs of each step are counted by torch's FlopCounterMode on the same batch
  (forward + backward, what autograd actually computes: activation gradients through the frozen
  LLM, weight gradients only for LoRA), in a separate pass that is not timed. The peak is the
  best of several square matmuls (torch.mm, all threads), the most a training step can reach.
bf16_step_speedup = median fp32 Stage I step time / median bf16-autocast step time, same batches,
  measured in this run (on a CPU without native bf16 it is below 1, and "auto" picks fp32 there).
warm_over_cold_epoch = time of one Stage II epoch over --epoch-examples training examples with
  the feature cache already filled / the same epoch starting from an empty cache (which runs the
  image encoder and the VLM encoder for every image first). Stage II is where the cache holds
  both frozen encoders; same model, same examples, same seed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_peak(n: int = 2048, repeats: int = 8, dtype: str = "float32") -> float:
    """Best FLOP/s of an n x n matmul on all threads."""
    import torch
    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def step_flops(model, forward, batch) -> int:
    """FLOPs of forward + backward of one batch (gradients discarded afterwards)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        forward(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_stage1(params, examples, steps: int, work: Path, precision: str) -> dict:
    from rsmoe.model import RSMoE
    from rsmoe.params import StageTrainParams
    from rsmoe.training.features import FrozenFeatures
    from rsmoe.training.loop import step_examples, plan, run_training
    from rsmoe.training.stage import preset_from

    model = RSMoE(preset_from(params), cache=params.paths.cache)
    model.set_stage("stage1")
    features = FrozenFeatures(model, work / "features")
    features.warm([e.image for e in examples], progress=False)

    def forward(batch):
        return model.forward_stage1([e.caption for e in batch], image_tokens=features.image_tokens([e.image for e in batch]),
                                    instructions=[e.instruction for e in batch])

    stage = StageTrainParams(epochs=1, max_steps=steps + 1)
    train = params.train.model_copy(update={"mixed_precision": precision})
    out = run_training(model, examples, forward, train=train, stage=stage,
                       checkpoint_dir=work / f"ckpt1-{precision}", run_key="bench", name="bench stage1", progress=False)
    timed = out["history"][1:]  # step 1 warms up allocators and caches
    p = plan(len(examples), params.train, stage)
    model.train()
    flops = [step_flops(model, forward, step_examples(examples, r["step"] - 1, p, params.train.seed)) for r in timed]
    seconds = sum(r["step_s"] for r in timed)
    return {"steps": len(timed), "tokens": sum(r["tokens"] for r in timed), "seconds": round(seconds, 3),
            "tokens_per_s": round(sum(r["tokens"] for r in timed) / seconds, 1),
            "flops_per_step": round(statistics.mean(flops)), "achieved_flops": sum(flops) / seconds,
            "step_s_median": statistics.median(r["step_s"] for r in timed)}


def bench_cache(params, examples, work: Path) -> dict:
    from rsmoe.model import RSMoE
    from rsmoe.params import StageTrainParams
    from rsmoe.training.features import FrozenFeatures
    from rsmoe.training.loop import run_training
    from rsmoe.training.stage import preset_from

    model = RSMoE(preset_from(params), cache=params.paths.cache)
    model.set_stage("stage2")
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    stage = StageTrainParams(epochs=1)

    def epoch(label: str) -> tuple[float, int]:
        with __import__("torch").no_grad():  # the same starting weights for both epochs
            for n, p in model.named_parameters():
                if n in snapshot:
                    p.copy_(snapshot[n])
        features = FrozenFeatures(model, work / "features2")  # a new object: nothing in memory
        features.freeze_vlm()
        t0 = time.perf_counter()
        features.warm([e.image for e in examples], [e.instruction for e in examples], progress=False)

        def forward(batch):
            ins = [e.instruction for e in batch]
            return model.forward_experts([e.segments for e in batch], instructions=ins,
                                         vlm_features=features.vlm_features([e.image for e in batch], ins))

        run_training(model, examples, forward, train=params.train, stage=stage,
                     checkpoint_dir=work / f"ckpt-{label}", run_key=label, name=f"bench {label}", progress=False)
        return time.perf_counter() - t0, features.encoded_images

    cold, cold_encoded = epoch("cold")
    warm, warm_encoded = epoch("warm")
    return {"examples": len(examples), "cold_epoch_s": round(cold, 3), "warm_epoch_s": round(warm, 3),
            "cold_encoded_images": cold_encoded, "warm_encoded_images": warm_encoded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--steps", type=int, default=6, help="timed Stage I steps (after one warm-up step)")
    ap.add_argument("--epoch-examples", type=int, default=16, help="training examples in the cache-epoch comparison")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train.json"))
    args = ap.parse_args()

    import torch
    from rsmoe.params import load_params
    from rsmoe.training.data import load_examples
    from rsmoe.training.loop import cpu_has_native_bf16, resolve_precision

    params = load_params(Path(args.params))
    examples = load_examples(params.paths.prepared, "train", params.model.experts)
    default = resolve_precision(params.train.mixed_precision, torch.cuda.is_available())
    dtypes = {"no": "float32", "bf16": "bfloat16"}
    peaks = {k: matmul_peak(dtype=d) for k, d in dtypes.items()}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {k: bench_stage1(params, examples, args.steps, Path(tmp), k) for k in dtypes}
        cache = bench_cache(params, examples[: args.epoch_examples], Path(tmp))
    peaks = {k: max(v, matmul_peak(dtype=dtypes[k])) for k, v in peaks.items()}
    achieved = {k: r.pop("achieved_flops") for k, r in runs.items()}
    s1 = runs[default]
    result = {
        "tokens_per_s": s1["tokens_per_s"],
        "peak_fraction": round(achieved[default] / peaks[default], 4),
        "warm_over_cold_epoch": round(cache["warm_epoch_s"] / cache["cold_epoch_s"], 4),
        "bf16_step_speedup": round(runs["no"]["step_s_median"] / runs["bf16"]["step_s_median"], 3),
        "precision": default, "cpu_native_bf16": cpu_has_native_bf16(),
        "stage1": {**s1, "achieved_gflops": round(achieved[default] / 1e9, 2)},
        "stage1_other_precision": {**runs["bf16" if default == "no" else "no"],
                                   "achieved_gflops": round(achieved["bf16" if default == "no" else "no"] / 1e9, 2)},
        "matmul_peak_gflops": {"fp32": round(peaks["no"] / 1e9, 2), "bf16": round(peaks["bf16"] / 1e9, 2)},
        "cache_epoch": cache,
        "preset": params.model.preset, "experts": params.model.experts, "batch_size": params.train.batch_size,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
