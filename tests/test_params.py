from pathlib import Path

import pytest

from rsmoe.params import Params, ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_file_loads_and_matches_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.prepare.crop_size == 512
    assert params.validate_.coord_tolerance == 8.0
    # The file states every default explicitly; keeping them equal avoids two sources of truth.
    # Exception: the training defaults are the paper's (5 epochs, 1 warm-up epoch, lr 1e-4); the
    # repo's file sets the CPU budget of `make run` on purpose (< 1 epoch, so a higher lr).
    cpu_budget = {"train", "stage1", "stage2"}
    for name in Params.model_fields:
        if name not in cpu_budget:
            assert getattr(params, name) == getattr(Params(), name), name
    assert Params().stage1.epochs == 5 and Params().train.warmup_epochs == 1 and Params().train.lr == 1e-4
    assert Params().train.image_path_lr is None and Params().stage1.lr is None
    # The class defaults keep the paper's zero-shot VQA (no QA pairs); the file trains on QA dialogues.
    assert Params().train.qa_per_image == 0 and Params().stage2.qa_per_image is None
    assert params.train.qa_format == "dialogue" and params.stage2.qa_per_image > 0
    budget = {"warmup_epochs", "checkpoint_every", "lr", "image_path_lr", "qa_format"}
    assert params.train.model_dump(exclude=budget) == Params().train.model_dump(exclude=budget)


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("prepare:\n  crop_sise: 256\n")
    with pytest.raises(ParamsError) as err:
        load_params(f)
    msg = str(err.value)
    assert str(f) in msg and "prepare.crop_sise" in msg and "did you mean 'crop_size'" in msg


def test_unknown_section_suggests_section(tmp_path):
    with pytest.raises(ParamsError, match="unknown key 'prepar'.*did you mean 'prepare'"):
        parse_params({"prepar": {}}, "p.yaml")


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ParamsError, match="valid keys here: .*min_side"):
        parse_params({"validate": {"zzz": 1}}, "p.yaml")


@pytest.mark.parametrize("data, fragment", [
    ({"prepare": {"overlap": 600}}, "overlap"),
    ({"prepare": {"splits": {"train": 0.5, "val": 0.1, "test": 0.1}}}, "sum to 1"),
    ({"synth": {"scenes": 0}}, "synth.scenes"),
    ({"prepare": {"crop_size": "big"}}, "prepare.crop_size"),
    ({"train": {"qa_types": ["presence", "positions"]}}, r"train.qa_types.*'positions'.*ab_position"),
    ({"train": {"qa_types": []}}, "train.qa_types.*qa_per_image: 0"),
])
def test_bad_values_are_explained(data, fragment):
    with pytest.raises(ParamsError, match=fragment):
        parse_params(data, "p.yaml")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("prepare: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_set_params_changes_one_key_keeps_comments_and_rejects_bad_values(tmp_path):
    from rsmoe.params import ParamsError, load_params, set_params

    path = tmp_path / "params.yaml"
    original = (REPO / "params.yaml").read_text()
    path.write_text(original)
    assert set_params(path, {"model.experts": 1}) == {"model.experts": (3, 1)}
    text = path.read_text()
    assert load_params(path).model.experts == 1
    assert text.replace("experts: 1 ", "experts: 3 ") == original  # only that value changed, comments kept
    assert set_params(path, {"model.experts": 1}) == {}  # no change, no write
    with pytest.raises(ParamsError, match="experts"):
        set_params(path, {"model.experts": 7})
    with pytest.raises(ParamsError, match="no section"):
        set_params(path, {"nosuch.key": 1})
    assert load_params(path).model.experts == 1  # a rejected value leaves the file as it was


def test_set_params_dry_run_checks_without_writing(tmp_path):
    """The flow checks a parameterised run's values this way before starting a DVC experiment."""
    from rsmoe.params import ParamsError, set_params

    path = tmp_path / "params.yaml"
    path.write_text((REPO / "params.yaml").read_text())
    before = path.read_bytes()
    assert set_params(path, {"model.experts": 1}, dry_run=True) == {"model.experts": (3, 1)}
    with pytest.raises(ParamsError, match="experts"):
        set_params(path, {"model.experts": 7}, dry_run=True)
    assert path.read_bytes() == before
