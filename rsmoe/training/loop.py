"""One training loop for every stage, on accelerate.

- AdamW + warm-up + cosine decay from params.yaml (`train`, `stage1` / `stage2`: a stage's own
  lr when set, the VLM encoder at `train.image_path_lr` when set), gradient accumulation,
  gradient clipping; bf16 autocast on GPUs and on CPUs with native bf16 matmul (AVX512-BF16 or
  AMX: small-preset steps 1.8-2.7x faster here, `python bench/train.py`); seeded and deterministic on CPU.
- The data order of epoch e is a permutation drawn from (seed, e), so the position in the data
  is just the optimiser step: resuming needs no sampler state.
- Every `checkpoint_every` steps the trainable weights, the optimiser (safetensors), the
  scheduler, the RNG and the step (JSON) are written to a temporary folder that then replaces
  the previous checkpoint, so a run killed at any moment resumes from its last checkpoint and
  ends with the same weights as a run that was never interrupted.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from rsmoe.files import swapped_folder
from rsmoe.params import StageTrainParams, TrainParams

log = logging.getLogger("rsmoe")

IMAGE_PATH_PREFIX = "vlm."  # RSMoE's VLM encoder: `train.image_path_lr` applies to its parameters


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    examples_per_step: int


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles). Elsewhere torch
    emulates bf16 and autocast would make a step slower, not faster."""
    return bf16_kernels() != "emulated"


def bf16_kernels() -> str:
    """Which bf16 matmul kernels this CPU runs ("amx", "avx512_bf16" or "emulated"). oneDNN picks
    AMX tiles where they exist, and their sums round differently from AVX512-BF16's, so the same
    seed follows another trajectory on each: benchmarks record this beside the precision."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "amx"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "avx512_bf16"
    return "emulated"


def resolve_precision(setting: str, gpu: bool) -> str:
    """`train.mixed_precision` as accelerate takes it: "auto" is bf16 on a GPU and on a CPU with
    native bf16, fp32 ("no") elsewhere; "no" and "bf16" are kept as written."""
    if setting != "auto":
        return setting
    return "bf16" if gpu or cpu_has_native_bf16() else "no"


def plan(n_examples: int, train: TrainParams, stage: StageTrainParams) -> Plan:
    per_step = train.batch_size * train.grad_accum
    steps_per_epoch = max(1, math.ceil(n_examples / per_step))
    total = max(1, math.ceil(stage.epochs * steps_per_epoch))
    if stage.max_steps:
        total = min(total, stage.max_steps)
    warmup = min(round(train.warmup_epochs * steps_per_epoch), total - 1)
    return Plan(steps_per_epoch, total, warmup, per_step)


def step_examples(examples: Sequence, step: int, p: Plan, seed: int) -> list:
    """The examples of optimiser step `step`: a slice of epoch (step // steps_per_epoch)'s permutation."""
    epoch, j = divmod(step, p.steps_per_epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    return [examples[i] for i in order[j * p.examples_per_step:(j + 1) * p.examples_per_step].tolist()]


def run_training(model: torch.nn.Module, examples: Sequence, forward: Callable, *, train: TrainParams,
                 stage: StageTrainParams, checkpoint_dir: Path, run_key: str, name: str,
                 progress: bool = True) -> dict:
    """Train the parameters of `model` that require grad; `forward(batch) -> ModelOutput`.

    Returns the step history and a summary; resumes from `checkpoint_dir` when it holds a
    checkpoint of the same `run_key` (a hash of everything that defines the run).
    """
    gpu = torch.cuda.is_available()
    precision = resolve_precision(train.mixed_precision, gpu)
    run_key = f"{run_key}-{precision}"  # a checkpoint resumes only in the precision it was trained in
    # the scheduler steps once per optimiser step, however many processes (accelerate would
    # otherwise step it once per process)
    # autocast is ours (below), not accelerate's: its mixed_precision is process-wide state that
    # refuses to change, and one process may train runs of both precisions (tests, notebooks)
    accelerator = Accelerator(cpu=not gpu, step_scheduler_with_optimizer=False)
    rank, world = accelerator.process_index, accelerator.num_processes
    if train.batch_size < world:
        raise ValueError(f"train.batch_size ({train.batch_size}) must be at least the number of processes ({world})")
    progress = progress and accelerator.is_main_process
    model.to(accelerator.device)
    # one AdamW group per learning rate; `names` lists the parameters in the optimiser's order
    # (its state is saved and restored by that index)
    base_lr = stage.lr or train.lr
    groups: dict[float, list[tuple[str, torch.nn.Parameter]]] = {base_lr: []}
    for n, param in model.named_parameters():
        if param.requires_grad:
            lr = train.image_path_lr if train.image_path_lr and n.startswith(IMAGE_PATH_PREFIX) else base_lr
            groups.setdefault(lr, []).append((n, param))
    groups = {lr: g for lr, g in groups.items() if g}
    names = [n for g in groups.values() for n, _ in g]
    trainable = [param for g in groups.values() for _, param in g]
    if not trainable:
        raise RuntimeError(f"{name}: nothing to train (no parameter requires grad)")
    p = plan(len(examples), train, stage)
    optimizer = torch.optim.AdamW([{"params": [param for _, param in g], "lr": lr} for lr, g in groups.items()],
                                  lr=base_lr, betas=train.betas, weight_decay=train.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, p.warmup_steps, p.total_steps)
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)
    torch.manual_seed(train.seed)
    history: list[dict] = []
    start = _restore(checkpoint_dir, run_key, model, names, optimizer, scheduler, history)
    if start:
        log.info("%s: resuming from the checkpoint at step %d of %d", name, start, p.total_steps)
    log.info("%s: %d examples, %d steps (%d per epoch, %d warm-up), %d trainable parameters, %s", name,
             len(examples), p.total_steps, p.steps_per_epoch, p.warmup_steps, sum(x.numel() for x in trainable),
             "bf16 autocast" if precision == "bf16" else "fp32")
    model.train()
    bar = tqdm(total=p.total_steps, initial=start, desc=name, unit="step", disable=not progress)
    for step in range(start, p.total_steps):
        t0 = time.perf_counter()
        batch = step_examples(examples, step, p, train.seed)
        micro = [batch[i:i + train.batch_size] for i in range(0, len(batch), train.batch_size)]
        loss_sum, tokens, parts = 0.0, 0, {}
        for mb in micro:
            # several processes: each takes its share of the micro-batch; gradients are averaged
            # below, so N processes on batch B equal one process accumulating N micro-batches of B/N
            with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = forward(mb[rank::world])
            accelerator.backward(out.loss / len(micro))
            loss_sum += out.loss.item() / len(micro)
            tokens += sum(out.tokens.values())
            for k, v in out.losses.items():
                parts.setdefault(k, []).append(v.item())
        if world > 1:
            for param in trainable:
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                param.grad = accelerator.reduce(grad, reduction="mean")
            loss_sum = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), reduction="mean").item()
            tokens = int(accelerator.reduce(torch.tensor(tokens, device=accelerator.device), reduction="sum").item())
        if train.max_grad_norm:
            accelerator.clip_grad_norm_(trainable, train.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # the stage's lr group (the first)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        row = {"step": step + 1, "epoch": round((step + 1) / p.steps_per_epoch, 4), "loss": round(loss_sum, 6),
               "lr": lr, "tokens": tokens, "step_s": round(dt, 4), "tokens_per_s": round(tokens / dt, 1)}
        row.update({f"loss_{k}": round(sum(v) / len(v), 6) for k, v in parts.items() if len(parts) > 1})
        history.append(row)
        bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens / dt:.0f}")
        bar.update(1)
        if (step + 1) % train.checkpoint_every == 0 and step + 1 < p.total_steps:
            if accelerator.is_main_process:  # every process holds the same weights
                _save(checkpoint_dir, run_key, step + 1, model, names, optimizer, scheduler, history)
            accelerator.wait_for_everyone()
    bar.close()
    model.eval()
    first, last = history[0]["loss"] if history else None, history[-1]["loss"] if history else None
    return {"steps": p.total_steps, "epochs": round(p.total_steps / p.steps_per_epoch, 4),
            "examples": len(examples), "precision": precision, "first_loss": first, "final_loss": last,
            "mean_loss_last_epoch": _mean_last(history, p.steps_per_epoch), "history": history}


def is_main_process() -> bool:
    """False in the other processes of a multi-process run (torchrun; they write nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def _mean_last(history: list[dict], n: int) -> float | None:
    tail = [h["loss"] for h in history[-n:]]
    return round(sum(tail) / len(tail), 6) if tail else None


def _save(folder: Path, run_key: str, step: int, model, names, optimizer, scheduler, history) -> None:
    """Write the checkpoint next to the old one, then swap: never a half-written checkpoint."""
    with swapped_folder(folder) as tmp:
        _write(tmp, run_key, step, model, names, optimizer, scheduler, history)


def _write(tmp: Path, run_key: str, step: int, model, names, optimizer, scheduler, history) -> None:
    named = dict(model.named_parameters())
    save_file({n: named[n].detach().cpu().contiguous() for n in names}, tmp / "trainable.safetensors")
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
               for i, st in opt["state"].items() for k, v in st.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, tmp / "optimizer.safetensors")
    state = {"run_key": run_key, "step": step, "param_groups": opt["param_groups"],
             "scheduler": scheduler.state_dict(), "history": history}
    (tmp / "state.json").write_text(json.dumps(state))


def _restore(folder: Path, run_key: str, model, names, optimizer, scheduler, history: list) -> int:
    folder = Path(folder)
    state_file = folder / "state.json"
    if not state_file.is_file():
        return 0
    state = json.loads(state_file.read_text())
    if state.get("run_key") != run_key:
        log.info("ignoring the checkpoint in %s: it belongs to another run (params or inputs changed)", folder)
        return 0
    weights = load_file(folder / "trainable.safetensors")
    named = dict(model.named_parameters())
    if sorted(weights) != sorted(names):
        raise RuntimeError(f"{folder}: checkpoint parameters do not match the model; delete the folder to restart")
    with torch.no_grad():
        for n in names:
            named[n].copy_(weights[n])
    tensors = load_file(folder / "optimizer.safetensors")
    opt_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        idx, k = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[k] = value.to(named[names[int(idx)]].device) if k != "step" else value
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    history.extend(state["history"])
    return int(state["step"])
