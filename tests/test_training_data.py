"""Training examples: captions with their expert targets, plus QA pairs as examples of their own."""
import json

import pytest

from rsmoe.data.aspects import UnknownQuestionType, expert_for
from rsmoe.errors import InputError
from rsmoe.training.data import load_examples
from train_fixtures import RSIEVAL, make_prepared


@pytest.fixture
def prepared(tmp_path):
    out = make_prepared(tmp_path, n=4)
    real = json.loads(RSIEVAL.read_text())["annotations"]
    qa = {"annotations": [{"filename": f"P{i:04d}_0000.png", "split": "train", "qa_pairs": a["qa_pairs"]}
                          for i, a in enumerate(real[:3])]}
    (out / "qa.json").write_text(json.dumps(qa))
    return out, qa


def test_without_qa_only_captions(prepared):
    out, _ = prepared
    examples = load_examples(out, "train", 3)
    assert len(examples) == 4 and all(e.prompt is None for e in examples)


@pytest.mark.parametrize("n", [1, 3])
def test_qa_pairs_become_examples_of_the_expert_of_their_type(prepared, n):
    out, qa = prepared
    examples = load_examples(out, "train", 3, qa_per_image=2)
    qa_ex = [e for e in examples if e.prompt is not None]
    assert len(qa_ex) == 2 * 3  # three images have QA pairs
    pairs = {(a["filename"], p["question"]): p for a in qa["annotations"] for p in a["qa_pairs"]}
    for e in qa_ex:
        pair = pairs[(e.image.name, e.prompt)]
        assert e.instruction == e.prompt and e.caption == pair["answer"]
        assert e.segments == {expert_for(pair["type"], 3): pair["answer"]}
    again = load_examples(out, "train", 3, qa_per_image=2)
    assert [e.prompt for e in again] == [e.prompt for e in examples]  # the same pairs every run
    assert len([e for e in load_examples(out, "train", n, qa_per_image=100) if e.prompt]) == sum(
        len(a["qa_pairs"]) for a in qa["annotations"])


def test_qa_dialogue_is_one_example_per_image_with_the_same_pairs(prepared):
    """`qa_format="dialogue"`: the pairs `pair` format would take, in the same order, as the
    turns of one example per image, each turn naming its expert."""
    out, qa = prepared
    pairs = [e for e in load_examples(out, "train", 3, qa_per_image=4) if e.prompt is not None]
    dialogues = [e for e in load_examples(out, "train", 3, qa_per_image=4, qa_format="dialogue")
                 if e.prompt is not None]
    assert len(dialogues) == 3 and all(not e.segments for e in dialogues)
    assert [(e.image.name, q, a, x) for e in dialogues for q, a, x in e.dialogue] == [
        (e.image.name, e.prompt, e.caption, *e.segments) for e in pairs]
    assert all((e.instruction, e.prompt, e.caption) == e.dialogue[0][:1] * 2 + e.dialogue[0][1:2] for e in dialogues)


def test_qa_types_keep_only_the_pairs_of_those_types(prepared):
    """`train.qa_types`: the pairs of the other types are not trained on (their expert stays
    zero-shot for them), in either format; a type no expert answers is named with the known ones."""
    out, qa = prepared
    types = {p["type"] for a in qa["annotations"] for p in a["qa_pairs"]}
    keep = sorted(types)[:1]
    for fmt in ("pair", "dialogue"):
        ex = [e for e in load_examples(out, "train", 3, qa_per_image=100, qa_format=fmt, qa_types=keep)
              if e.prompt is not None]
        asked = {(e.image.name, turn[0]) for e in ex for turn in (e.dialogue or [(e.prompt,)])}
        kept = {(a["filename"], p["question"]) for a in qa["annotations"] for p in a["qa_pairs"] if p["type"] in keep}
        assert asked and asked == kept
    assert len(types) > 1  # the fixture has types to leave out
    with pytest.raises(UnknownQuestionType, match="unknown question type 'positions'.*presence"):
        load_examples(out, "train", 3, qa_per_image=2, qa_types=["positions"])


def test_missing_qa_file_names_the_fix(prepared):
    out, _ = prepared
    (out / "qa.json").unlink()
    with pytest.raises(InputError, match="qa_per_image: 0"):
        load_examples(out, "train", 3, qa_per_image=1)


def test_one_sentence_references_with_several_experts_are_warned_about(prepared, caplog):
    import logging

    from rsmoe.training.data import Example, warn_if_experts_go_untrained

    out, _ = prepared
    rsicap = load_examples(out, "train", 3)  # real RSICap captions: several aspects each
    with caplog.at_level(logging.WARNING, logger="rsmoe"):
        assert warn_if_experts_go_untrained(rsicap, 3) >= 2
    assert not caplog.text
    short = [Example(e.image, e.instruction, "A plane is parked.", {"theme": "", "objects": "A plane is parked.",
                                                                     "relations": ""}) for e in rsicap]
    with caplog.at_level(logging.WARNING, logger="rsmoe"):
        assert warn_if_experts_go_untrained(short, 3) == 1
    assert "only 1 of the 3 experts" in caplog.text and "model.experts: 1" in caplog.text
    assert warn_if_experts_go_untrained(short, 1) is None


def test_a_stage_may_set_its_own_qa_pairs():
    from rsmoe.params import Params
    from rsmoe.training.data import qa_pairs

    p = Params.model_validate({"train": {"qa_per_image": 1}, "stage2": {"qa_per_image": 3}})
    assert qa_pairs(p, p.stage1) == 1  # null: train.qa_per_image
    assert qa_pairs(p, p.stage2) == 3
    assert qa_pairs(p, Params.model_validate({"stage2": {"qa_per_image": 0}, "train": {"qa_per_image": 2}}).stage2) == 0
