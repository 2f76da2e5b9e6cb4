"""Recipes: YAML -> typed config, --set overrides, and the errors a user sees."""

from pathlib import Path

import pytest

from dlcli.config import apply_overrides, find_recipe, list_recipes, read_yaml, render_yaml, validate
from dlcli.errors import DlError
from dlcli.tasks import classify, get_task

CONFIGS = Path(__file__).parents[1] / "configs"


def resolve(raw, *overrides):
    return validate(apply_overrides(raw, list(overrides)), classify.Config)


def test_defaults_fill_every_key():
    cfg = resolve({"task": "classify"})
    assert cfg.model.arch == "resnet18"
    assert cfg.train.grad_accum == 1 and cfg.optim.name == "sgd" and cfg.schedule.name == "cosine"


def test_set_parses_values_as_yaml_and_nests():
    cfg = resolve(
        {"task": "classify"}, "optim.lr=0.05", "train.epochs=3", "optim.betas=[0.8, 0.9]", "data.root=some/dir"
    )
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 3
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.data.root == "some/dir"


def test_later_set_wins():
    assert resolve({"task": "classify", "optim": {"lr": 1.0}}, "optim.lr=0.2", "optim.lr=0.3").optim.lr == 0.3


def test_unknown_key_names_the_path_and_the_closest_key():
    with pytest.raises(DlError) as err:
        resolve({"task": "classify"}, "optim.lrr=0.1")
    assert "optim.lrr" in str(err.value) and "optim.lr" in str(err.value) and "Did you mean" in str(err.value)


def test_wrong_type_names_the_key_and_what_was_expected():
    with pytest.raises(DlError) as err:
        resolve({"task": "classify"}, "train.epochs=abc")
    message = str(err.value)
    assert "train.epochs" in message and "int" in message and "abc" in message


@pytest.mark.parametrize("override", ["optim.lr=-1", "optim.lr=.nan", "data.batch_size=0", "train.precision=fp8"])
def test_bad_values_are_refused(override):
    with pytest.raises(DlError) as err:
        resolve({"task": "classify"}, override)
    assert override.split("=")[0] in str(err.value)


def test_set_needs_key_and_value():
    with pytest.raises(DlError):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(DlError):
        apply_overrides({"optim": 3}, ["optim.lr=1"])


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: classify\nmodel: {arch: resnet18\n")
    with pytest.raises(DlError) as err:
        read_yaml(path)
    assert "line" in str(err.value) and str(path) in str(err.value)


def test_yaml_tags_that_construct_objects_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("task: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(DlError):
        read_yaml(path)


def test_unknown_task_lists_the_tasks():
    with pytest.raises(DlError) as err:
        get_task("clasify")
    assert "classify" in str(err.value)


def test_bundled_recipes_resolve_by_name_and_all_validate():
    names = {p.stem for p in list_recipes()}
    twelve = {
        "resnet",
        "alexnet",
        "squeezenet",
        "vgg16",
        "densenet",
        "inception",
        "googlenet",
        "shufflenet",
        "mobilenet",
        "resnext",
        "wide_resnet",
        "mnasnet",
    }
    assert twelve <= names
    assert find_recipe("resnet").name == "resnet.yaml"
    for path in list_recipes():
        raw = read_yaml(path)
        cfg = validate(raw, get_task(raw["task"]).Config)
        assert cfg.name.endswith("-shapes") or path.stem not in twelve


def test_bundled_recipes_are_the_repository_configs():
    assert {p.name for p in list_recipes()} == {p.name for p in CONFIGS.glob("*.yaml")}


def test_unknown_recipe_name_suggests_one():
    with pytest.raises(DlError) as err:
        find_recipe("resnett")
    assert "resnet" in str(err.value)


def test_render_yaml_has_descriptions_and_round_trips():
    import yaml

    cfg = resolve({"task": "classify"}, "optim.lr=0.01")
    text = render_yaml(cfg)
    assert "# peak learning rate" in text
    again = validate(yaml.safe_load(text), classify.Config)
    assert again == cfg


def test_configs_and_config_show_commands():
    import json

    from typer.testing import CliRunner

    from dlcli.cli import app

    listed = CliRunner().invoke(app, ["configs", "--json"])
    assert listed.exit_code == 0
    rows = {row["recipe"]: row for row in json.loads(listed.stdout)}
    assert rows["vgg16"]["model"] == "vgg16" and rows["vgg16"]["task"] == "classify"
    shown = CliRunner().invoke(app, ["config", "show", str(CONFIGS / "vgg16.yaml"), "--set", "optim.lr=0.01"])
    assert shown.exit_code == 0
    assert "lr: 0.01  # peak learning rate" in shown.stdout
    bad = CliRunner().invoke(app, ["config", "show", "vgg16", "--set", "optim.lrr=1"])
    assert bad.exit_code == 2 and "optim.lr" in bad.stderr
    assert CliRunner().invoke(app, ["--version"]).stdout.startswith("dl ")


def first_column(table: str) -> list[str]:
    """The first cell of each row of a table as rich prints it."""
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


def test_configs_keeps_recipe_names_whole_when_piped(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # the CliRunner's stdout is not a terminal: as `dl configs | grep`
    listed = cli("configs")
    assert listed.exit_code == 0, listed.output
    assert first_column(listed.stdout) == [path.stem for path in list_recipes()]
    assert "char-lstm-shakespeare" in listed.stdout  # the other columns are not cut either


def test_configs_keeps_recipe_names_whole_at_80_columns(cli, terminal_80):
    assert cli("configs").exit_code == 0
    screen = terminal_80.getvalue()
    assert first_column(screen) == [path.stem for path in list_recipes()]
    assert max(len(line) for line in screen.splitlines()) <= 80


def test_every_data_section_declares_the_batch_the_runner_reads():
    """runner.global_batch and the out-of-memory hint read data.BATCH: its key must be a recipe key."""
    from dlcli.config import DataSection
    from dlcli.tasks import TASKS, get_config

    for task in TASKS:
        data = get_config(task).model_fields["data"].annotation
        assert issubclass(data, DataSection), task
        assert data.BATCH.key is None or data.BATCH.key in data.model_fields, task
        assert data.BATCH.unit in {"images", "sentences", "sequences", "streams", "pairs", "tokens", "words"}, task
