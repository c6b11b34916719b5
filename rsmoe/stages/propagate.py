"""Stage `propagate` (paper III-E): copy the Stage I LLM adapter into each of the N expert
adapters; the router starts from its seeded initialisation (its prompts start input-independent).

Reads `paths.models/stage1`; writes `paths.models/propagated` and `metrics/propagate.json`.
With `train.strategy: one-stage` the experts keep their fresh initialisation (= the base LLM).
"""
from __future__ import annotations

from rsmoe.model import STAGE1
from rsmoe.params import Params
from rsmoe.stages import StageError, require
from rsmoe.training.stage import load_model, write_metrics


def run(params: Params) -> dict:
    src = params.paths.models / "stage1"
    require(src / "config.json", "stage1")
    model = load_model(params, src)
    propagated = params.train.strategy == "two-stage"
    if propagated:
        model.propagate_stage1()
    # self-check: the largest difference between any expert adapter weight and the Stage I one
    named = dict(model.llm.named_parameters())
    diff = max((named[n.replace(f".{STAGE1}.", f".{e}.")] - p).abs().max().item()
               for n, p in named.items() if f".{STAGE1}." in n for e in model.experts)
    if propagated and diff != 0.0:
        raise StageError(f"propagation failed: an expert adapter differs from Stage I by {diff}")
    model.save_pretrained(params.paths.models / "propagated")
    print(f"experts {', '.join(model.experts)} initialised from "
          f"{'the Stage I adapter' if propagated else 'scratch (one-stage)'}")
    return write_metrics(params, "propagate", {"experts": list(model.experts), "from_stage1": propagated,
                                               "max_abs_diff_to_stage1": diff})
