"""Fine-tuning: freezing strategies, learning-rate groups, BatchNorm freezing, the auto freeze point, the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.evaluation.finetuning.auto_freeze import choose_freeze_point
from ssl_pretrain.evaluation.finetuning.freezing import FreezePlan, make_finetune_optimizer
from ssl_pretrain.evaluation.shared.classifier import ImageClassifier, load_classifier

from ...helpers import folder_overrides

STAGES = ["stem", "layer1", "layer2", "layer3"]


def _model(head_grid=1):
    torch.manual_seed(0)
    encoder = build_encoder("small_resnet", {"widths": [4, 8, 8]}, 1, 16, [0.5], [0.25])
    return ImageClassifier(encoder, 3, head_grid, 16)


def _one_step(model, plan, lr=0.1, mult=0.1, optimizer="adamw"):
    groups = plan.param_groups(lr, mult, weight_decay=0.0)
    opt = make_finetune_optimizer(groups, optimizer, momentum=0.0)
    plan.train()
    x, y = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return opt


def _stage_of(key: str) -> str:
    # encoder.trunk.stem.0.weight -> stem; head.weight -> head
    parts = key.split(".")
    return parts[0] if parts[0] == "head" else parts[2]


@pytest.mark.parametrize(
    "freeze_until,frozen",
    [(None, []), ("stem", ["stem"]), ("layer2", ["stem", "layer1", "layer2"]), ("all", STAGES)],
)
def test_each_strategy_changes_exactly_the_unfrozen_parameters(freeze_until, frozen):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = FreezePlan(model, freeze_until, freeze_bn=False)
    assert plan.stages == frozen
    _one_step(model, plan)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        stage = _stage_of(key)
        unchanged = torch.equal(before[key], value)
        assert unchanged == (stage in frozen), f"{key} (stage {stage}) {'un' if unchanged else ''}changed"


def test_the_encoder_learns_at_the_multiplier_times_the_heads_rate():
    model = _model()
    plan = FreezePlan(model, None, freeze_bn=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = _one_step(model, plan, lr=0.5, mult=0.1, optimizer="sgd")  # plain SGD: step = lr * grad
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"head": 0.5, "encoder": pytest.approx(0.05)}
    for name, p in model.named_parameters():
        expected_lr = 0.5 if name.startswith("head") else 0.05
        torch.testing.assert_close(before[name] - p.detach(), expected_lr * p.grad, rtol=1e-5, atol=1e-7)


def test_freeze_bn_keeps_running_statistics_of_trained_stages():
    for freeze_bn in (False, True):
        model = _model()
        key = "encoder.trunk.layer3.0.bn1.running_mean"
        before = model.state_dict()[key].clone()
        plan = FreezePlan(model, "stem", freeze_bn=freeze_bn)
        _one_step(model, plan)
        assert torch.equal(before, model.state_dict()[key]) == freeze_bn
        assert model.encoder.trunk.layer3[0].conv1.weight.requires_grad  # still trained


def test_flatten_head_reads_the_whole_last_stage():
    model = _model(head_grid=None)
    assert model.head.in_features == 8 * 4 * 4  # 8 channels at 16 px / 4
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize(
    "per_class,top1,expected",
    [
        (20, {"stem": 70, "layer1": 75, "layer2": 80, "pooled": 79.5}, "all"),  # small, similar
        (20, {"stem": 70, "layer1": 85, "layer2": 80, "pooled": 78}, "layer1"),  # small, different
        (500, {"stem": 70, "layer1": 75, "layer2": 80, "pooled": 79.5}, None),  # large, similar
        (500, {"stem": 70, "layer1": 85, "layer2": 80, "pooled": 78}, None),  # large, different
    ],
)
def test_auto_freeze_point_covers_the_four_situations(per_class, top1, expected):
    freeze_until, reason = choose_freeze_point(top1, ["stem", "layer1", "layer2"], per_class, small_per_class=100)
    assert freeze_until == expected
    assert ("small" if per_class < 100 else "large") in reason
    assert ("similar" if top1["pooled"] >= 79 else "different") in reason


def test_finetune_command_writes_checkpoints_report_and_tensorboard(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = [
        "finetune",
        f"evaluation.encoder={run}",
        "finetune.epochs=2",
        "finetune.freeze_until=layer1",
        "finetune.batch_size=8",
        "trainer.progress=false",
        "trainer.log_every=1",
    ]
    assert main(args) == 0
    out_dir = run / "finetune" / "layer1-labels1-pretrained"
    report = json.loads((out_dir / "finetune.json").read_text())
    protocol = report["protocol"]
    assert protocol["strategy"] == "partial" and protocol["frozen_stages"] == ["stem", "layer1"]
    assert protocol["lr_encoder"] == pytest.approx(protocol["lr_head"] * 0.1)
    assert len(report["val_top1_per_epoch"]) == 2 and 0 <= report["test_top1"] <= 100
    assert report["val_top1"] == max(report["val_top1_per_epoch"])
    # 29 labeled training images (9 + 10 + 10), 10% of each class held out for validation.
    assert protocol["train_split"].endswith("26 images") and protocol["val_split"].endswith("3 images")
    model, info = load_classifier(out_dir / "checkpoints" / "best.pt")
    assert info["kind"] == "fine-tuned" and info["epoch"] == report["best_epoch"]
    events = EventAccumulator(str(out_dir / "tb")).Reload()
    assert [e.step for e in events.Scalars("val/top1")] == [1, 2]
    assert "finetune/loss" in events.Tags()["scalars"]
    # The same name again is refused and leaves the first run as it was.
    before = (out_dir / "finetune.json").read_bytes()
    assert main(args) == 2
    assert "finetune.name" in capsys.readouterr().err
    assert (out_dir / "finetune.json").read_bytes() == before


def test_keeping_the_last_epoch_scores_every_candidate_at_its_last_epoch(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = ["finetune", f"evaluation.encoder={run}", "finetune.epochs=3", "finetune.batch_size=8"]
    args += ["finetune.lr=[0.05,0.001]", "finetune.keep=last", "finetune.name=last", "trainer.progress=false"]
    assert main(args) == 0
    out_dir = run / "finetune" / "last"
    report = json.loads((out_dir / "finetune.json").read_text())
    assert report["protocol"]["keep"] == "last" and report["best_epoch"] == 3
    assert report["val_top1"] == report["val_top1_per_epoch"][-1]
    assert "test_top1_last_epoch" not in report["diagnostics"], "best.pt is the last epoch: no second test pass"
    assert "scored at its last epoch" in report["selected"]["validation"]
    # Each candidate's score is its last epoch's validation top-1 (saved in its last.pt), and its kept
    # weights (best.pt) are the last epoch's.
    for candidate in report["selected"]["candidates"]:
        folder = out_dir / "candidates" / f"lr{candidate['lr']:g}"
        last = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
        kept = torch.load(folder / "checkpoints" / "best.pt", weights_only=True)
        assert candidate["epoch"] == 3 and candidate["val_top1"] == last["val_top1"] == kept["val_top1"]
        for key, value in last["classifier"]["encoder"].items():
            assert torch.equal(value, kept["classifier"]["encoder"][key])
    assert "at the last epoch 3" in capsys.readouterr().out
    # one candidate and the last epoch kept: nothing is chosen, so no label is held out (unless asked)
    one = [*args[:4], "finetune.lr=0.05", "finetune.keep=last", "trainer.progress=false"]
    assert main([*one, "finetune.name=one"]) == 0
    every = json.loads((run / "finetune" / "one" / "finetune.json").read_text())
    assert every["val_top1"] is None and every["protocol"]["val_split"] == "none: every label trains"
    assert every["selected"]["validation"].startswith("none: one candidate and the last epoch kept")
    assert "(no validation: nothing to choose)" in capsys.readouterr().out
    assert main([*one, "finetune.validation=always", "finetune.name=always"]) == 0
    held = json.loads((run / "finetune" / "always" / "finetune.json").read_text())
    trained = [int(r["protocol"]["train_split"].rsplit(", ", 1)[1].split()[0]) for r in (every, held)]
    assert held["val_top1"] is not None and trained[0] > trained[1], trained


def test_unknown_freeze_stage_is_bad_input(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    assert main(["finetune", f"evaluation.encoder={tmp_path / 'run'}", "finetune.freeze_until=layer9"]) == 2
    err = capsys.readouterr().err
    assert "finetune.freeze_until" in err and "layer1" in err
    assert not (tmp_path / "run" / "finetune").exists()


SCRATCH_MODELS = (
    "finetune.model=[{backbone: small_resnet, widths: [8, 16], blocks: [1, 1]},"
    " {backbone: vgg11_bn, small_input: true}]"
)


def test_training_from_scratch_chooses_its_architecture_and_budget_on_validation(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = ["finetune", f"evaluation.encoder={run}", "finetune.init=random", SCRATCH_MODELS, "finetune.steps=[3,6]"]
    assert main([*args, "finetune.batch_size=8", "finetune.name=scratch", "trainer.progress=false"]) == 0
    out_dir = run / "finetune" / "scratch"
    report = json.loads((out_dir / "finetune.json").read_text())
    labels = ["small_resnet-blocks=1x1-widths=8x16", "vgg11_bn-small_input=true"]
    candidates = report["selected"]["candidates"]
    assert [(c["steps"], c["model"]) for c in candidates] == [(s, m) for s in (3, 6) for m in labels]
    scores = [c["val_top1"] for c in candidates]
    chosen = candidates[scores.index(max(scores))]  # the first of the best, as everywhere
    assert report["selected"]["chosen"] == {key: value for key, value in chosen.items() if key != "val_top1"}
    # Every candidate trained its own architecture for its own budget (26 images at batch 8: 3 steps an epoch).
    for candidate in candidates:
        folder = out_dir / "candidates" / f"steps-{candidate['steps']}-model-{candidate['model']}"
        model, info = load_classifier(folder / "checkpoints" / "last.pt")
        assert model.encoder.spec.backbone == candidate["model"].split("-")[0]
        assert info["protocol"]["steps"] == candidate["steps"] and info["epoch"] == candidate["steps"] // 3
        assert info["protocol"]["init"] == "random"
    model, _ = load_classifier(out_dir / "checkpoints" / "best.pt")
    assert model.encoder.spec.backbone == chosen["model"].split("-")[0]
    assert report["protocol"]["steps"] == chosen["steps"]
    small = load_classifier(out_dir / "candidates" / f"steps-3-model-{labels[0]}" / "checkpoints" / "last.pt")[0]
    assert small.encoder.spec.options == {"widths": [8, 16], "blocks": [1, 1]}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("finetune.model=[]", "finetune.model"),
        ("finetune.model={small_input: true}", "finetune.model.backbone"),
        ("finetune.model={backbone: resnet9}", "finetune.model.backbone"),
        ("finetune.model={backbone: vgg11_bn, depth: 3}", "finetune.model.depth"),
        ("finetune.model=[{backbone: vgg11_bn}, {backbone: vgg11_bn}]", "finetune.model"),
        ("finetune.steps=[3,0]", "finetune.steps"),
    ],
)
def test_bad_scratch_architectures_and_budgets_are_config_errors(override, key):
    from ssl_pretrain.config import load_config
    from ssl_pretrain.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(None, ["finetune.init=random", override])
    assert err.value.key == key
    with pytest.raises(ConfigError, match="finetune.model: .*needs finetune.init=random"):
        load_config(None, ["finetune.model={backbone: vgg11_bn}"])  # a pretrained encoder keeps its own


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("finetune.model={backbone: small_resnet, widths: [0]}", "finetune.model.widths"),  # the factory's own check
        ("finetune.model={backbone: vgg11_bn}", "finetune.model.backbone"),  # its five max-pools: not 16 px
    ],
)
def test_a_scratch_architecture_the_images_do_not_fit_stops_before_writing(
    image_folder, tmp_path, capsys, override, key
):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    args = ["finetune", f"evaluation.encoder={tmp_path / 'run'}", "finetune.init=random", override]
    assert main([*args, "trainer.progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ssl-pretrain: error: {key}:"), err
    assert not (tmp_path / "run" / "finetune").exists()


def test_a_step_budget_sets_the_epochs_for_any_label_count(image_folder, tmp_path):
    from ssl_pretrain.evaluation.finetuning.loop import finetune_epochs

    assert finetune_epochs(10, None, 4) == 10
    assert finetune_epochs(10, 30, 4) == 8  # 8 epochs of 4 steps hold the 30 asked for
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = [
        "finetune",
        f"evaluation.encoder={run}",
        "finetune.steps=9",
        "finetune.batch_size=8",
        "trainer.progress=false",
    ]
    assert main(args) == 0
    report = json.loads((run / "finetune" / "full-labels1-pretrained" / "finetune.json").read_text())
    # 26 training images at batch 8: 3 full batches an epoch (the rest dropped), so 3 epochs for 9 steps.
    assert report["protocol"]["steps"] == 9 and len(report["val_top1_per_epoch"]) == 3


def test_the_head_can_start_from_a_linear_probe(image_folder, tmp_path):
    from ssl_pretrain.config import load_config
    from ssl_pretrain.evaluation.features.features import extract_features
    from ssl_pretrain.evaluation.features.logistic import fit_logistic_regression
    from ssl_pretrain.evaluation.finetuning.head_init import HeadInputs, init_head_from_probe
    from ssl_pretrain.evaluation.shared.predict import classifier_info, predict_logits
    from ssl_pretrain.evaluation.shared.splits import labeled_splits

    config = load_config(None, folder_overrides(image_folder, tmp_path) + ["model.widths=[4,8,8]"])
    train, _ = labeled_splits(config.data, 0)
    torch.manual_seed(0)
    encoder = build_encoder("small_resnet", {"widths": [4, 8, 8]}, 3, 16, [0.5] * 3, [0.25] * 3)
    model = ImageClassifier(encoder, 3, 1, 16)
    model.train()
    before = torch.random.get_rng_state()
    init_head_from_probe(model, train, torch.device("cpu"), l2=1e-3, max_iter=50)
    assert torch.equal(torch.random.get_rng_state(), before) and model.training, "no draws, modes restored"
    features, labels = extract_features(HeadInputs(model), train, classifier_info(model), torch.device("cpu"), 64)
    probe = fit_logistic_regression(features["head"], labels, 3, 1e-3, 50)
    logits, _ = predict_logits(model, train, torch.device("cpu"))
    assert torch.equal(logits.argmax(1), probe.predict(features["head"])), "the head is the probe, folded"


def test_fine_tuning_and_feature_extraction_run_in_the_runs_precision(image_folder, tmp_path, monkeypatch):
    """trainer.precision reaches evaluation: the fine-tuning step and frozen-feature extraction run under
    its autocast (bf16 here; on CUDA, auto picks bf16 or fp16), features come back as float32."""
    from ssl_pretrain.config import load_config
    from ssl_pretrain.evaluation.features.feature_view import FeatureView
    from ssl_pretrain.evaluation.features.features import extract_features
    from ssl_pretrain.evaluation.shared.predict import classifier_info
    from ssl_pretrain.evaluation.shared.splits import labeled_splits
    from ssl_pretrain.utils.precision import resolve_precision

    seen = []
    forward = ImageClassifier.forward

    def recording_forward(self, x):
        if self.training:
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return forward(self, x)

    monkeypatch.setattr(ImageClassifier, "forward", recording_forward)
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    args = [
        "finetune",
        f"evaluation.encoder={run}",
        "finetune.steps=3",
        "finetune.batch_size=8",
        "trainer.progress=false",
    ]
    assert main([*args, "trainer.precision=bf16"]) == 0
    report = json.loads((run / "finetune" / "full-labels1-pretrained" / "finetune.json").read_text())
    assert report["protocol"]["precision"] == "bf16" and seen and set(seen) == {torch.bfloat16}

    config = load_config(None, folder_overrides(image_folder, tmp_path))
    train, _ = labeled_splits(config.data, 0)
    encoder = build_encoder("small_resnet", {"widths": [4, 8, 8]}, 3, 16, [0.5] * 3, [0.25] * 3)
    view, info, cpu = FeatureView(encoder), classifier_info(ImageClassifier(encoder, 3, 1, 16)), torch.device("cpu")
    dtypes = []
    conv = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    features, _ = extract_features(view, train, info, cpu, 64, precision=resolve_precision("bf16", cpu))
    assert set(dtypes) == {torch.bfloat16} and all(f.dtype == torch.float32 for f in features.values())


def test_the_test_set_is_scored_once_unless_the_last_epoch_is_asked_for(image_folder, tmp_path, monkeypatch):
    from ssl_pretrain.evaluation.finetuning import run as finetune_run

    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    scored = []  # the checkpoint of every test pass
    real = finetune_run._test_top1
    monkeypatch.setattr(finetune_run, "_test_top1", lambda path, *a: scored.append(path.name) or real(path, *a))
    args = ["finetune", f"evaluation.encoder={tmp_path / 'run'}", "finetune.epochs=2", "finetune.batch_size=8"]
    args += ["trainer.progress=false"]
    assert main([*args, "finetune.name=once"]) == 0
    assert scored == ["best.pt"]
    report = json.loads((tmp_path / "run" / "finetune" / "once" / "finetune.json").read_text())
    assert "test_top1_last_epoch" not in report["diagnostics"]
    scored.clear()
    assert main([*args, "finetune.name=twice", "finetune.test_last_epoch=true"]) == 0
    assert scored == ["best.pt", "last.pt"]
    report = json.loads((tmp_path / "run" / "finetune" / "twice" / "finetune.json").read_text())
    assert 0 <= report["diagnostics"]["test_top1_last_epoch"] <= 100
