"""bench/ablations.py's verdicts decide what the README says about the paper's orderings: a
configuration is compared only with the default run on the same kernels (fp32, bf16 on AMX, bf16
on AVX512-BF16 alone), paired by seed, and an ordering is called only when every seed agrees."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def ablations():
    sys.path.insert(0, str(BENCH))  # bench/ is not a package: ablations imports quality by name
    try:
        spec = importlib.util.spec_from_file_location("bench_ablations", BENCH / "ablations.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def run(config, seed, cider, precision="bf16", kernels="avx512_bf16", **more):
    return {"config": config, "seed": seed, "precision": precision, "kernels": kernels, "CIDEr": cider, **more}


def test_runs_on_other_kernels_are_other_groups(ablations):
    runs = [run("default", 0, 60.0, kernels="amx"), run("default", 1, 70.0, kernels="amx"),
            run("default", 0, 50.0), run("default", 0, 40.0, precision="no", kernels="fp32"),
            {"config": "default", "seed": 2, "precision": "bf16", "CIDEr": 65.0}]  # written before kernels
    summary = ablations.summarise(runs)
    assert list(summary) == ["default [bf16/amx]", "default [bf16/avx512_bf16]", "default [fp32]", "default [bf16]"]
    assert summary["default [bf16/amx]"]["CIDEr"] == {"mean": 65.0, "std": 7.07}
    assert summary["default [bf16/avx512_bf16]"]["CIDEr"] == {"mean": 50.0, "std": None}


def test_an_ordering_holds_only_when_every_seed_of_the_same_kernels_agrees(ablations):
    runs = [run("default", 0, 60.0), run("default", 1, 70.0), run("default", 2, 65.0),
            run("experts-2", 0, 50.0, **{"BLEU-4": 30.0}), run("experts-2", 1, 72.0, **{"BLEU-4": 30.0}),
            run("experts-2", 2, 55.0, **{"BLEU-4": 30.0}),
            # an AMX experts-4 run has no AMX default to pair with: no verdict, not a comparison
            # with the AVX512-BF16 default of the same seed
            run("experts-4", 0, 10.0, kernels="amx")]
    for r, bleu in zip(runs[:3], (33.0, 34.0, 31.0)):
        r["BLEU-4"] = bleu
    o = ablations.orderings(runs)
    assert list(o) == ["default (N = 3, two-stage) vs experts-2 [bf16/avx512_bf16]"]
    v = o["default (N = 3, two-stage) vs experts-2 [bf16/avx512_bf16]"]
    assert v["seeds"] == [0, 1, 2] and not v["one_seed_only"]
    assert v["per_key"] == {"CIDEr": "seeds disagree", "BLEU-4": "default better on every seed"}


def test_runs_on_another_default_are_another_cohort(ablations):
    """When params.yaml's default changes (here: QA dialogues in Stage II), a configuration is a
    change to the default it ran on: runs without `base` (written before) stay zero-shot, and an
    ordering never pairs a run with the default of another base."""
    zero = {"stage1": {"qa_per_image": None}, "stage2": {"qa_per_image": None}, "train": {"qa_per_image": 0}}
    assert ablations.base_of(zero) == "zero-shot"
    dialogue = {**zero, "stage2": {"qa_per_image": 12}, "train": {"qa_per_image": 0, "qa_format": "dialogue"}}
    assert ablations.base_of(dialogue) == "qa-dialogue"
    some = {**dialogue, "train": {**dialogue["train"], "qa_types": ["presence", "scene"]}}
    assert ablations.base_of(some) == "qa-dialogue[presence,scene]"
    runs = [run("default", 0, 60.0), run("default", 1, 70.0), run("experts-2", 0, 50.0),
            run("default", 0, 80.0, base="qa-dialogue"), run("experts-2", 1, 90.0, base="qa-dialogue")]
    assert list(ablations.summarise(runs)) == [
        "default [bf16/avx512_bf16]", "experts-2 [bf16/avx512_bf16]", "default [bf16/avx512_bf16, base qa-dialogue]",
        "experts-2 [bf16/avx512_bf16, base qa-dialogue]"]
    o = ablations.orderings(runs)  # experts-2 on the new default has no seed-1 default there: no verdict
    assert list(o) == ["default (N = 3, two-stage) vs experts-2 [bf16/avx512_bf16]"]
    assert o["default (N = 3, two-stage) vs experts-2 [bf16/avx512_bf16]"]["per_key"]["CIDEr"] == "default better on every seed"


def test_a_run_records_each_aspects_scores(ablations):
    """A caption score that moves is traced to the expert that moved it (the QA-dialogue default
    kept the objects segment and lost the relations one on test): every run row carries each
    aspect's BLEU-4 / METEOR / CIDEr, rounded, and None for sets without aspects."""
    quality = sys.modules["quality"]
    ev = {"aspects": {"theme": {"BLEU-4": 30.812, "METEOR": 36.4, "CIDEr": 181.33, "ROUGE-L": 50.0},
                      "relations": {"BLEU-4": 28.3, "METEOR": None, "CIDEr": 28.456}}}
    assert quality.aspect_scores(ev) == {"theme": {"BLEU-4": 30.81, "METEOR": 36.4, "CIDEr": 181.33},
                                         "relations": {"BLEU-4": 28.3, "CIDEr": 28.46}}
    assert quality.aspect_scores({"aspects": {}}) is None and quality.aspect_scores({}) is None
