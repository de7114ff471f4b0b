import pytest
import yaml

from ssl_pretrain.build import make_encoder, make_task
from ssl_pretrain.cli import main
from ssl_pretrain.config import apply_overrides, build_config, load_config
from ssl_pretrain.data import DataInfo
from ssl_pretrain.errors import BadInput, ConfigError


def test_defaults_are_resolved_for_every_key():
    config = build_config({})
    resolved = config.to_dict()
    assert resolved["task"] == {"name": "dae", "corruption": "masking", "level": 0.4, "upsample": "nearest"}
    assert resolved["model"]["backbone"] == "small_resnet" and resolved["model"]["widths"] == [32, 64, 128]
    assert resolved["run_name"] == "fashion_mnist-dae"
    assert resolved["trainer"]["batch_size"] == 128


def test_overrides_are_yaml_typed_and_dotted():
    raw = apply_overrides({"trainer": {"lr": 0.1}}, ["trainer.max_steps=50", "model.widths=[8, 16]", "data.root=null"])
    assert raw == {"trainer": {"lr": 0.1, "max_steps": 50}, "model": {"widths": [8, 16]}, "data": {"root": None}}
    config = build_config(raw)
    assert config.trainer.max_steps == 50 and config.model.options["widths"] == [8, 16]


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.bogus=1", "trainer.bogus"),
        ("bogus=1", "bogus"),
        ("trainer.batch_size=abc", "trainer.batch_size"),
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.lr=-1", "trainer.lr"),
        ("trainer.optimizer=adam", "trainer.optimizer"),
        ("trainer.resume=1", "trainer.resume"),
        ("data.name=mnist", "data.name"),
        ("data.channels=2", "data.channels"),
        ("model.backbone=resnet999", "model.backbone"),
        ("model.widths=wide", "model.widths"),
        ("model.depth=3", "model.depth"),
        ("task.name=jigsaw", "task.name"),
        ("task.corruption=blur", "task.corruption"),
        ("task.noise=0.1", "task.noise"),
        ("device=gpu", "device"),
        ("trainer.nonfinite=ignore", "trainer.nonfinite"),
        ("trainer.precision=fp8", "trainer.precision"),
        ("trainer.sync_debug=maybe", "trainer.sync_debug"),
        ("trainer.channels_last=2", "trainer.channels_last"),
        ("trainer.compile=fast", "trainer.compile"),
        ("trainer.keep_last=-1", "trainer.keep_last"),
        ("model.norm=layer", "model.norm"),
        ("evaluation.val_folds=0", "evaluation.val_folds"),
        ("evaluation.val_folds=2.5", "evaluation.val_folds"),
        ("finetune.keep=middle", "finetune.keep"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


def test_int_is_accepted_for_float_but_bool_is_not_an_int():
    assert load_config(None, ["trainer.lr=1"]).trainer.lr == 1.0
    with pytest.raises(ConfigError):
        load_config(None, ["trainer.batch_size=true"])


def test_yaml_file_is_read_with_safe_load(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(BadInput, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("path", sorted(__import__("glob").glob("configs/*/*.yaml")))
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    assert config.data.name == path.split("/")[1]
    assert config.task.name == path.split("/")[2].removesuffix(".yaml")
    channels, size = {"fashion_mnist": (1, 28), "cifar10": (3, 32), "stl10": (3, 96)}[config.data.name]
    info = DataInfo(channels, size, [0.5] * channels, [0.25] * channels)
    task = make_task(config, make_encoder(config, info))  # every task option is accepted by its task
    assert task.encoder.spec.image_size == size


@pytest.mark.parametrize(
    "args",
    [
        ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", "trainer.nope=3"],
        ["pretrain", "-c", "missing.yaml"],
        ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", "task.level=1.5"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ssl-pretrain: error: ")
    assert "Traceback" not in err[0]


def test_cross_option_check_names_the_task_key(capsys):
    assert (
        main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", "task.upsample=max_unpool", "output_dir=/tmp/never"])
        == 2
    )
    assert "task.upsample: max_unpool needs" in capsys.readouterr().err


def test_resolved_config_round_trips_through_yaml():
    config = load_config("configs/fashion_mnist/dae.yaml", ["trainer.max_steps=7"])
    again = build_config(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again.to_dict() == config.to_dict()


def test_renamed_keys_are_read_as_their_new_names_with_one_notice(capsys):
    config = load_config(None, ["probe.batch_size=64", "probe.control=all", "probe.encoder=runs/x"])
    assert (config.evaluation.batch_size, config.evaluation.control, config.evaluation.encoder) == (64, "all", "runs/x")
    notices = capsys.readouterr().err.strip().splitlines()
    note = "ssl-pretrain: note: probe.{0} is deprecated, use evaluation.{0} (read as evaluation.{0}={1})"
    assert notices == [note.format("batch_size", 64), note.format("control", "all")], "probe.encoder: a quiet alias"
    moved = {"encoder", "control", "batch_size", "train_limit", "val_fraction"}
    assert moved <= set(config.to_dict()["evaluation"]) and not moved & set(config.to_dict()["probe"])


def test_an_older_runs_config_yaml_loads_quietly_and_a_new_one_takes_the_old_encoder_key(capsys):
    older = build_config({}).to_dict()
    older["probe"].update(encoder=None, control="none", batch_size=512, train_limit=None, val_fraction=0.1)
    del older["evaluation"]
    assert build_config(older).evaluation == build_config({}).evaluation
    assert capsys.readouterr().err == "", "defaults filled in by an older release say nothing"
    newer = build_config({}).to_dict()  # evaluation.encoder: null, as in a run's config.yaml
    assert load_config(None, ["probe.encoder=runs/y"], base=newer).evaluation.encoder == "runs/y"
    newer["evaluation"]["encoder"] = "runs/pretrained"  # as in a fine-tuning run's config.yaml
    assert load_config(None, ["probe.encoder=runs/z"], base=newer).evaluation.encoder == "runs/z", "overrides win"


def test_a_removed_key_in_an_older_runs_config_yaml_is_dropped(capsys):
    older = build_config({}).to_dict()
    older["select"]["ball_neighbours"] = 64  # a run's config.yaml from when ProbCover read balls among 64 rows
    assert build_config(older).select == build_config({}).select and capsys.readouterr().err == ""
    older["select"]["ball_neighbours"] = 32
    assert build_config(older).select == build_config({}).select
    assert capsys.readouterr().err.strip() == (
        "ssl-pretrain: note: select.ball_neighbours is no longer used (ProbCover's balls are exact now); ignored"
    )


def test_an_old_and_a_new_key_that_disagree_in_one_file_are_refused_naming_both():
    with pytest.raises(ConfigError, match="probe.control: probe.control='all' and evaluation.control='raw_pixels'"):
        build_config({"probe": {"control": "all"}, "evaluation": {"control": "raw_pixels"}})
    assert build_config({"probe": {"control": "all"}, "evaluation": {"control": "all"}}).evaluation.control == "all"
    # On the command line the later override wins, whichever name it uses.
    assert load_config(None, ["probe.control=all", "evaluation.control=raw_pixels"]).evaluation.control == "raw_pixels"


def test_older_runs_flat_semi_supervised_keys_read_as_the_nested_section(capsys):
    from ssl_pretrain.config import build_config

    old = {"finetune": {"unlabeled": "none", "unlabeled_ratio": 3.0, "threshold": 0.95, "unlabeled_weight": 1.0}}
    assert build_config(old).finetune.unlabeled.method == "none"  # an older run's config.yaml: silently dropped
    assert "deprecated" not in capsys.readouterr().err
    old = {"finetune": {"unlabeled": "fixmatch", "threshold": 0.9, "unlabeled_ratio": 3.0, "pretext": []}}
    unlabeled = build_config(old).finetune.unlabeled
    assert unlabeled.method == "fixmatch" and unlabeled.options == {"ratio": 3.0, "threshold": 0.9, "weight": 1.0}
    err = capsys.readouterr().err
    assert "finetune.threshold is deprecated" in err and "unlabeled_ratio" not in err, "defaults move silently"
    saved = build_config(old).to_dict()["finetune"]["unlabeled"]
    assert saved == {"method": "fixmatch", "ratio": 3.0, "threshold": 0.9, "weight": 1.0}
    assert build_config({"finetune": {"unlabeled": saved}}).finetune.unlabeled == unlabeled, "round trip"


def test_a_method_name_keeps_the_options_given_before_it():
    from ssl_pretrain.config import load_config

    config = load_config(None, ["finetune.unlabeled.threshold=[0.8,0.9]", "finetune.unlabeled=fixmatch"])
    assert config.finetune.unlabeled.options["threshold"] == [0.8, 0.9]
    with pytest.raises(ConfigError, match="finetune.unlabeled.threshold: unknown key"):
        load_config(None, ["finetune.unlabeled.threshold=0.9", "finetune.unlabeled=pretext"])
