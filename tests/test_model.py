"""The RS-MoE model on the tiny preset: shapes, golden first losses, which parameters train,
save/load, and batched mixed-adapter decoding against per-expert sequential decoding."""
import json
import shutil

import pytest
import torch

from rsmoe.model import STAGE1, RSMoE, get_preset
from rsmoe.model.checkpoint import ModelFolderError
from model_counts import expected_trainable

CAPTIONS = [
    "This is an airport. There are two white planes on the apron. The planes are next to the terminal.",
    "The image shows a harbor. Three ships are docked. The ships are along the pier.",
]
SEGMENTS = [
    {"theme": "This is an airport.", "objects": "There are two white planes on the apron.",
     "relations": "The planes are next to the terminal."},
    {"theme": "The image shows a harbor.", "objects": "", "relations": "The ships are along the pier."},
]


@pytest.fixture(scope="module")
def tiny() -> RSMoE:
    return RSMoE(get_preset("tiny"))


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _randomise_adapters(model: RSMoE, seed: int = 1) -> None:
    """Fresh LoRA B matrices are zero (every adapter = the base); give each its own weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith("router.meta") and name.endswith("3.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_shapes(tiny, pixels):
    spec = tiny.preset
    tokens = tiny.image_tokens(pixels)
    assert tokens.shape == (2, 1 + (64 // 16) ** 2, spec.image_encoder.hidden_size)
    feats = tiny.vlm_features(tokens, ["Describe the image.", "Count the ships."])
    assert feats.shape == (2, spec.qformer.num_query_tokens, spec.llm.hidden_size)
    assert tiny.experts == ("theme", "objects", "relations")


def test_golden_first_losses(pixels):
    """Fixed seed, fixed inputs: the first losses of a fresh tiny model. A change here means the
    model, its initialisation or its inputs changed; update the numbers only on purpose."""
    model = RSMoE(get_preset("tiny"))  # built in eval mode: no dropout, so no RNG in the forward
    tokens = model.image_tokens(pixels)
    stage1 = model.forward_stage1(CAPTIONS, image_tokens=tokens)
    experts = model.forward_experts(SEGMENTS, image_tokens=tokens)
    assert stage1.loss.item() == pytest.approx(10.79382, abs=1e-4)
    assert experts.loss.item() == pytest.approx(10.81846, abs=1e-4)
    assert stage1.tokens == {STAGE1: 44}  # caption tokens + end-of-sequence
    assert experts.tokens == {"theme": 13, "objects": 11, "relations": 17}


def test_empty_segment_is_masked(tiny, pixels):
    tokens = tiny.image_tokens(pixels)
    out = tiny.forward_experts([SEGMENTS[1]], image_tokens=tokens[1:])
    assert set(out.losses) == {"theme", "relations"}  # "objects" is empty for this image
    with pytest.raises(ValueError, match="no expert"):
        tiny.forward_experts([{"theme": " ", "objects": "", "relations": ""}], image_tokens=tokens[:1])


def test_qa_rows_are_a_loss_group_of_their_own(tiny, pixels):
    """A QA answer is two or three tokens; in its expert's token mean beside caption segments it
    would weigh ~1/20 of them. Its rows form `<expert>_qa`, and the loss is the mean of the groups."""
    tokens = tiny.image_tokens(pixels)
    qa = {"objects": "Yes."}
    out = tiny.forward_experts([SEGMENTS[0], qa], image_tokens=tokens, prompts=[None, "Is there a plane?"])
    assert set(out.losses) == {"theme", "objects", "relations", "objects_qa"}
    assert out.loss.item() == pytest.approx(torch.stack(list(out.losses.values())).mean().item())
    alone = tiny.forward_experts([qa], image_tokens=tokens[1:], prompts=["Is there a plane?"])
    assert set(alone.losses) == {"objects_qa"}
    assert alone.losses["objects_qa"].item() == pytest.approx(out.losses["objects_qa"].item(), abs=1e-5)
    caption_only = tiny.forward_experts([SEGMENTS[0]], image_tokens=tokens[:1])
    assert out.losses["objects"].item() == pytest.approx(caption_only.losses["objects"].item(), abs=1e-5)


def test_a_dialogue_row_is_its_turns_with_the_loss_on_the_answers(pixels):
    """`train.qa_format: dialogue`: one row per expert holds that expert's turns of a crop after one
    image prefix. Causal attention makes its first turn exactly the single-pair row (what `answer`
    decodes); only answer tokens (+ end of turn) are targets; turns go to their own experts."""
    from rsmoe.model.rsmoe import IGNORE, Row

    tiny = RSMoE(get_preset("tiny"))
    _randomise_adapters(tiny, seed=3)
    tokens = tiny.image_tokens(pixels)
    feats = tiny.vlm_features(tokens[:1], ["Is there a plane?"])
    turns = (("Is there a plane?", "Yes."), ("How many planes are there?", "Two."))
    single = Row(0, "objects", turns[0][0], turns[0][0], router=True, target=turns[0][1], qa=True)
    dialogue = Row(0, "objects", turns[0][0], turns[0][0], router=True, qa=True, turns=turns)
    (l1, lab1), (l2, lab2) = (tiny.row_logits(feats, [r]) for r in (single, dialogue))
    n1 = lab1.shape[1]
    assert torch.equal(lab2[0, :n1], lab1[0]) and torch.allclose(l2[0, :n1], l1[0], atol=1e-5)
    answers = tiny.tokenizer(["Yes.", "Two."], add_special_tokens=False).input_ids
    eos = tiny.tokenizer.eos_token_id
    assert lab2[lab2 != IGNORE].tolist() == answers[0] + [eos] + answers[1] + [eos]

    d = (("Is there a plane?", "Yes.", "objects"), ("What is the theme of the image?", "Airport.", "theme"),
         ("How many planes are there?", "Two.", "objects"))
    out = tiny.forward_experts([SEGMENTS[0], {}], image_tokens=tokens, prompts=[None, d[0][0]], dialogues=[(), d])
    assert set(out.losses) == {"theme", "objects", "relations", "objects_qa", "theme_qa"}
    n_ans = lambda texts: sum(len(t) + 1 for t in tiny.tokenizer(texts, add_special_tokens=False).input_ids)
    assert out.tokens["objects_qa"] == n_ans(["Yes.", "Two."]) and out.tokens["theme_qa"] == n_ans(["Airport."])
    stage1 = tiny.forward_stage1([CAPTIONS[0], "Yes."], image_tokens=tokens, dialogues=[(), d])
    assert stage1.tokens["stage1_qa"] == n_ans(["Yes.", "Airport.", "Two."])  # Stage I: every turn in one row


@pytest.mark.parametrize("mode", ["stage1", "stage2", "one-stage"])
def test_gradients_reach_exactly_the_trainable_parts(tiny, pixels, mode):
    tiny.set_stage(mode)
    tiny.zero_grad(set_to_none=True)
    tokens = tiny.image_tokens(pixels)
    out = (tiny.forward_stage1(CAPTIONS, image_tokens=tokens) if mode == "stage1"
           else tiny.forward_experts(SEGMENTS, image_tokens=tokens))
    out.loss.backward()
    want = set(tiny.trainable_groups(mode))
    exp = expected_trainable(tiny)
    for group, params in tiny.parameter_groups().items():
        got = sum(p.numel() for p in params if p.grad is not None)
        if group in want:
            assert all(p.requires_grad for p in params), group
            size = exp["llm_lora"] if group.startswith("llm_lora") else exp[group]
            assert sum(p.numel() for p in params) == size, group
            assert got == size, f"{group}: {got} of {size} parameters got a gradient"
        else:
            assert got == 0 and not any(p.requires_grad for p in params), f"{group} is frozen in {mode}"
    tiny.set_stage("frozen")
    tiny.zero_grad(set_to_none=True)


def test_summary_lists_trainable_and_frozen(tiny):
    tiny.set_stage("stage2")
    text = tiny.summary()
    tiny.set_stage("frozen")
    router = expected_trainable(tiny)["router"]
    assert f"router{'':<18}{router:>14,}{0:>14,}" in text
    assert "llm_base" in text and "total" in text


def test_batched_mixed_adapter_decoding_equals_sequential(pixels):
    model = RSMoE(get_preset("tiny"))
    _randomise_adapters(model)
    batched = model.caption(pixels, max_new_tokens=6)
    sequential = model.caption(pixels, max_new_tokens=6, sequential=True)
    assert batched == sequential
    segs = batched[0].segments
    assert len(set(segs.values())) == 3, "experts with different adapters should write different segments"
    assert batched[0].text == " ".join(segs[e] for e in model.experts if segs[e])
    model.use_separate_copies()  # N full copies of the base, each with one adapter
    assert model.caption(pixels, max_new_tokens=6, sequential=True) == batched


def test_save_load_round_trip_gives_identical_logits(tmp_path, pixels):
    model = RSMoE(get_preset("tiny"))
    _randomise_adapters(model, seed=2)
    with torch.no_grad():
        model.vlm.query_tokens.add_(0.1)
    model.save_pretrained(tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files), files  # nothing pickled
    assert "adapters/objects/adapter_model.safetensors" in files
    loaded = RSMoE.from_pretrained(tmp_path / "m")
    tokens = model.image_tokens(pixels)
    a = model.forward_experts(SEGMENTS, image_tokens=tokens)
    b = loaded.forward_experts(SEGMENTS, image_tokens=tokens)
    assert torch.equal(torch.stack(list(a.losses.values())), torch.stack(list(b.losses.values())))
    assert model.caption(pixels, max_new_tokens=5) == loaded.caption(pixels, max_new_tokens=5)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "m"
    RSMoE(get_preset("tiny")).save_pretrained(folder)
    return folder


def _broken(saved, tmp_path, edit):
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    edit(folder)
    return folder


@pytest.mark.parametrize("edit, names", [
    (lambda f: (f / "router.safetensors").unlink(), "router.safetensors"),
    (lambda f: shutil.rmtree(f / "adapters" / "objects"), "objects"),
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "vlm.safetensors").write_bytes(b"not a safetensors file"), "vlm.safetensors"),
    (lambda f: (f / "adapters" / "theme" / "adapter_model.safetensors").write_bytes(b"\0" * 9), "theme"),
])
def test_missing_or_corrupt_part_is_named(saved, tmp_path, edit, names):
    folder = _broken(saved, tmp_path, edit)
    with pytest.raises(ModelFolderError, match=names):
        RSMoE.from_pretrained(folder)


def _edit_config(key, value):
    def edit(folder):
        cfg = json.loads((folder / "config.json").read_text())
        node = cfg
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
        (folder / "config.json").write_text(json.dumps(cfg))
    return edit


@pytest.mark.parametrize("key, value, message", [
    (("preset", "seed"), 7, "frozen image_encoder weights differ"),  # other random bases
    (("preset", "experts"), 4, "lists adapters"),  # another experts setting
    (("preset", "router_context"), 3, "router weights do not fit"),
    (("preset", "qformer", "num_query_tokens"), 5, "Q-Former LoRA / queries / projection / feature stats"),
])
def test_mismatched_part_is_named(saved, tmp_path, key, value, message):
    folder = _broken(saved, tmp_path, _edit_config(key, value))
    with pytest.raises(ModelFolderError, match=message):
        RSMoE.from_pretrained(folder)


def test_mismatched_adapter_rank_is_named(saved, tmp_path):
    def edit(folder):
        cfg_file = folder / "adapters" / "theme" / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["r"] = 16
        cfg_file.write_text(json.dumps(cfg))
    folder = _broken(saved, tmp_path, edit)
    with pytest.raises(ModelFolderError, match="adapter_config.json.*LoRA r=16"):
        RSMoE.from_pretrained(folder)


def test_token_budget_is_per_aspect_and_stage1_gets_all_of_them(tiny, pixels, monkeypatch):
    """An expert's segment may be `max_new_tokens` x the aspects it writes, and a Stage I caption
    holds all four (with one shared cap the small preset's Stage I captions were cut to a third,
    and N = 1's single caption would be cut where N = 3's three segments are not)."""
    from rsmoe.data.records import ASPECTS

    seen = []
    generate = tiny.generate_rows
    monkeypatch.setattr(tiny, "generate_rows", lambda feats, rows, **kw: seen.append(list(kw["max_new_tokens"]))
                        or generate(feats, rows, **kw))
    tiny.caption(pixels[:1], max_new_tokens=5)
    tiny.caption(pixels[:1], max_new_tokens=5, stage1=True)
    tiny.caption(pixels[:1], stage1=True)
    assert tiny.experts == ("theme", "objects", "relations")  # relations writes positions + relations
    assert seen == [[5, 5, 10], [5 * len(ASPECTS)], [tiny.preset.max_new_tokens * len(ASPECTS)]]
    for n, budgets in ((1, {"caption": 20}), (2, {"theme": 5, "details": 15}), (4, dict.fromkeys(ASPECTS, 5))):
        preset = get_preset("tiny", experts=n)
        assert {e: preset.token_budget(e, 5) for e in preset.expert_names} == budgets
        assert preset.token_budget(STAGE1, 5) == 20


@pytest.mark.filterwarnings("ignore:Unfeasible length constraints")  # the sequential call's 2-token row
def test_rows_of_one_generate_call_stop_at_their_own_limits(tiny, pixels, monkeypatch):
    from rsmoe.model.presets import DEFAULT_INSTRUCTION
    from rsmoe.model.rsmoe import Row

    feats = tiny.vlm_features(tiny.image_tokens(pixels[:1]), [DEFAULT_INSTRUCTION])
    rows = [Row(0, e, DEFAULT_INSTRUCTION, DEFAULT_INSTRUCTION, router=True) for e in ("theme", "objects")]
    outs = []
    generate = tiny.llm.generate
    monkeypatch.setattr(tiny.llm, "generate", lambda **kw: outs.append(generate(**kw)) or outs[-1])
    batched = tiny.generate_rows(feats, rows, max_new_tokens=[2, 6], min_new_tokens=6)  # no end-of-text before 6
    pad = tiny.tokenizer.pad_token_id
    assert outs[0].shape[1] == 6 and [(r != pad).sum().item() for r in outs[0]] == [2, 6]
    assert tiny.generate_rows(feats, rows, max_new_tokens=[2, 6], min_new_tokens=6, sequential=True) == batched
    with pytest.raises(ValueError, match="2 token limits for 1 rows"):
        tiny.generate_rows(feats, rows[:1], max_new_tokens=[2, 6])


@pytest.mark.parametrize("n, names", [(1, ("caption",)), (2, ("theme", "details")),
                                      (4, ("theme", "objects", "positions", "relations"))])
def test_expert_count_is_a_parameter(n, names, pixels):
    model = RSMoE(get_preset("tiny", experts=n))
    assert model.experts == names
    segments = {name: "There is a plane." for name in names}
    assert set(model.forward_experts([segments], image_tokens=model.image_tokens(pixels[:1])).losses) == set(names)
    assert list(model.caption(pixels[:1], max_new_tokens=2)[0].segments) == list(names)


@pytest.mark.parametrize("names", [
    ["stage1", "stage1", "stage1"],  # one adapter: one slice (Stage I)
    ["theme", "theme", "objects", "relations"],  # expert-major, contiguous (Stage II)
    ["theme", "objects", "theme", "__base__"],  # interleaved, and a row without adapter
])
def test_mixed_adapters_equal_peft_mixed_batch_forward(names):
    """Our per-row LoRA hook gives PEFT's own `adapter_names=` forward, logits for logits."""
    from rsmoe.model.experts import mixed_adapters

    model = RSMoE(get_preset("tiny"))
    _randomise_adapters(model)
    ids = torch.randint(0, 100, (len(names), 7), generator=torch.Generator().manual_seed(2))
    before = [list(m.active_adapters) for m in model.llm.modules() if hasattr(m, "lora_A") and m.lora_A]
    with torch.no_grad():
        expected = model.llm(input_ids=ids, adapter_names=names).logits
        with mixed_adapters(model.llm, names):
            got = model.llm(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    after = [list(m.active_adapters) for m in model.llm.modules() if hasattr(m, "lora_A") and m.lora_A]
    assert after == before  # restored after the block
