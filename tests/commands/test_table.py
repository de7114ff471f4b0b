"""The command table is the one shape of every command: the CLI's parser and the API's functions are built
from its rows, every command that takes an encoder takes it the same way, and the preamble is in one place."""

import ast
import inspect
import json
from pathlib import Path

import pytest

import ssl_pretrain as ssl
from ssl_pretrain.cli import _parsers, main
from ssl_pretrain.commands import COMMANDS
from ssl_pretrain.commands.command import split_items
from ssl_pretrain.commands.functions import signature_of
from ssl_pretrain.errors import BadInput

from ..helpers import folder_overrides

PACKAGE = Path(ssl.__file__).parent


def test_every_row_is_a_cli_command_and_an_api_function_of_the_same_shape():
    _, parsers = _parsers()
    assert set(parsers) == set(COMMANDS) >= {"pretrain", "probe", "knn", "finetune", "embed", "rank", "export", "demo"}
    for name, row in COMMANDS.items():
        function = getattr(ssl, name)
        assert inspect.signature(function) == signature_of(row), name
        params = list(inspect.signature(function).parameters)
        if row.paths and row.config != "none":  # ssl.x(source, overrides, *, config=None, ...)
            assert params[:3] == [row.paths[0].name, "overrides", "config"], name
        for flag in row.flags:
            assert flag.name in params and flag.option in parsers[name].format_help(), name
        row.function("run"), row.function("show")  # both import


def test_the_encoder_is_given_the_same_way_to_every_command_that_takes_one():
    takes_encoder = {name for name, row in COMMANDS.items() if any(p.key == "evaluation.encoder" for p in row.paths)}
    assert takes_encoder == {"probe", "knn", "finetune", "embed", "export"}
    for name in takes_encoder:
        first = COMMANDS[name].paths[0]
        assert first.key == "evaluation.encoder" and first.name == "encoder", name
        items = ["runs/a", "out", "x.y=1"] if name == "export" else ["runs/a", "x.y=1"]
        assert split_items(COMMANDS[name], items)[0]["encoder"] == "runs/a"


def test_paths_and_overrides_mix_in_any_order_and_a_key_fills_its_path():
    export = COMMANDS["export"]
    assert split_items(export, ["runs/a", "out", "export.format=onnx"]) == (
        {"encoder": "runs/a", "out": "out"},
        ["export.format=onnx"],
    )
    # the case: the encoder by its key, the output positionally
    assert split_items(export, ["evaluation.encoder=runs/a", "out"]) == ({"out": "out"}, ["evaluation.encoder=runs/a"])
    assert split_items(export, ["probe.encoder=runs/a", "out"])[0] == {"out": "out"}, "the contract's old key too"
    assert split_items(COMMANDS["rank"], ["a", "b", "seed=1"])[0] == {"sources": ["a", "b"]}


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["neighbours", "neighbours.k=8"],
            "neighbours: give EMBEDDINGS (the folder embed wrote); neighbours.k=8 is KEY=VALUE, not a path",
        ),
        (
            ["shard", "a=b", "shards/x-%06d.tar"],
            "shard: a=b is KEY=VALUE where a path is expected (SRC_FOLDER OUT_PATTERN)",
        ),
        (["export", "runs/nowhere"], "export: give OUT"),
        (["probe", "runs/a", "runs/b"], "probe: unexpected argument 'runs/b'"),
        (["probe", "runs/nowhere"], "evaluation.encoder: runs/nowhere does not exist"),
    ],
)
def test_a_missing_or_misplaced_path_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ssl-pretrain: error: ") and message in err, err
    assert not any(tmp_path.iterdir()), "nothing written"


def test_a_command_runs_the_same_given_its_encoder_positionally_or_by_key(image_folder, tmp_path, capsys):
    assert (
        main(["pretrain", "-c", "configs/fashion_mnist/rotation.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    )
    run = tmp_path / "run"
    assert main(["probe", str(run), "evaluation.train_limit=40"]) == 0
    positional = json.loads((run / "probe.json").read_text())["results"]
    assert main(["probe", "evaluation.train_limit=40", f"evaluation.encoder={run}"]) == 0
    assert json.loads((run / "probe.json").read_text())["results"][0]["top1"] == positional[0]["top1"]
    assert main(["export", f"evaluation.encoder={run}", str(tmp_path / "by_key")]) == 0
    assert main(["export", str(run), str(tmp_path / "positional")]) == 0
    assert (tmp_path / "by_key" / "encoder.pt").read_bytes() == (tmp_path / "positional" / "encoder.pt").read_bytes()
    assert ssl.export(run, out=tmp_path / "api").path == tmp_path / "api" / "encoder.pt"
    capsys.readouterr()
    with pytest.raises(BadInput, match="export: give OUT"):
        ssl.export(run)


def test_the_preamble_is_in_one_place():
    """Device preparation, seeding and the precision line: ``build.start`` for every command (the trainer sets up
    its own, per process); no evaluation or command module calls them itself."""
    callers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parts[-2] in ("train", "utils") or path.name == "build.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in (
                "prepare_device",
                "seed_everything",
                "announce_precision",
            ):
                callers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not callers, callers
