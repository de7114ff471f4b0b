import json

import torch

from ssl_pretrain.cli import main
from ssl_pretrain.config import load_config
from ssl_pretrain.data import DataInfo
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.evaluation.features.feature_view import FeatureView
from ssl_pretrain.evaluation.features.logistic import LogisticProbe, fit_logistic_regression, top1
from ssl_pretrain.evaluation.features.method import evaluate_encoder
from ssl_pretrain.evaluation.shared.splits import labeled_splits, stratified_split

from ...helpers import folder_overrides


def test_logistic_regression_separates_separable_classes():
    torch.manual_seed(0)
    centers = torch.randn(4, 16) * 4
    labels = torch.arange(400) % 4
    features = centers[labels] + torch.randn(400, 16)
    classifier = fit_logistic_regression(features, labels, 4, l2=1e-3, max_iter=100)
    assert top1(classifier, features, labels) > 98
    assert classifier.weight.shape == (4, 16)


def test_l2_shrinks_the_weights():
    torch.manual_seed(0)
    features, labels = torch.randn(200, 8), torch.randint(0, 3, (200,))
    weak = fit_logistic_regression(features, labels, 3, l2=1e-4)
    strong = fit_logistic_regression(features, labels, 3, l2=1.0)
    assert strong.weight.norm() < 0.5 * weak.weight.norm()


def test_stratified_split_holds_out_the_fraction_of_every_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = stratified_split(labels, 0.2, seed=1)
    assert sorted(torch.cat([keep, held]).tolist()) == list(range(100))
    assert torch.bincount(labels[held]).tolist() == [10, 6, 4]
    assert torch.equal(held, stratified_split(labels, 0.2, seed=1)[1])


def test_probe_leaves_the_encoder_bit_identical(image_folder, tmp_path):
    config = load_config(None, folder_overrides(image_folder, tmp_path))
    encoder = build_encoder("small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, 3, 16, [0.5] * 3, [0.25] * 3)
    encoder.train()
    # Non-trivial BatchNorm buffers, so an accidental train-mode pass would change them.
    with torch.no_grad():
        encoder(torch.rand(8, 3, 16, 16))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    info = DataInfo(3, 16, [0.5] * 3, [0.25] * 3)
    cpu = torch.device("cpu")
    modes = []
    for module in encoder.trunk.modules():
        module.register_forward_hook(lambda module, *_: modes.append((module.training, torch.is_grad_enabled())))
    view, probe = FeatureView(encoder), LogisticProbe([1e-4])
    (row,), selection, _ = evaluate_encoder("pretrained", view, train, test, info, cpu, probe)
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not encoder.training
    # Every extraction pass ran in eval mode without gradients.
    assert modes and set(modes) == {(False, False)}
    assert row["feature_dim"] == 8 and 0 <= row["top1"] <= 100
    assert row["chosen"] and selection is None  # one candidate: nothing chosen, no validation split


def test_probe_command_uses_the_runs_config_and_writes_probe_json(image_folder, tmp_path, capsys):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["probe", f"evaluation.encoder={run}", "evaluation.control=random_init"]) == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "random_init" in out
    report = json.loads((run / "probe.json").read_text())
    assert [r["encoder"] for r in report["results"]] == ["pretrained", "random_init"]
    protocol = report["protocol"]
    assert protocol["backbone"] == "small_resnet"
    # 12 images a class; the files whose path hashes below data.test_fraction=0.2 are the test split (3 + 2 + 2).
    assert protocol["train_split"].endswith("29 images") and protocol["test_split"].endswith("7 images")
    # The encoder's pretraining skipped those files, and the probe says so.
    assert protocol["encoder_saw_test_images"] is False
    assert protocol["image_size"] == 16
    assert all(0 <= r["top1"] <= 100 for r in report["results"])


def test_probe_without_encoder_or_config_is_bad_input(capsys):
    assert main(["probe"]) == 2
    assert "evaluation.encoder" in capsys.readouterr().err


def test_spatially_pooled_view_flattens_the_last_stage_pooled_to_a_grid():
    encoder = build_encoder("small_resnet", {"widths": [4, 8], "blocks": [1, 1]}, 3, 16, [0.5] * 3, [0.25] * 3).eval()
    x = torch.rand(2, 3, 16, 16)
    maps = encoder.forward_maps(x)  # (2, 8, 8, 8)
    view = FeatureView(encoder, pool=2)
    features = view.forward_features(x)
    assert features.shape == (2, 8 * 4) and view.layer == "last_stage_2x2"
    top_left = maps[:, :, :4, :4].mean(dim=(2, 3))
    assert torch.allclose(features.view(2, 8, 2, 2)[..., 0, 0], top_left, atol=1e-6)
    assert torch.allclose(FeatureView(encoder).forward_features(x), maps.mean(dim=(2, 3)), atol=1e-6)


def test_probe_pool_option_is_recorded_with_its_protocol(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["probe", f"evaluation.encoder={run}", "probe.pool=2", "evaluation.control=random_init"]) == 0
    report = json.loads((run / "probe.json").read_text())
    assert [(r["layer"], r["feature_dim"]) for r in report["results"]] == [("last_stage_2x2", 32)] * 2
    assert report["protocol"]["pooling"] == "average pooling to 2x2 of the last stage"


def test_label_fractions_are_stratified_reproducible_and_nested():
    from ssl_pretrain.evaluation.shared.splits import label_subset

    labels = torch.arange(1000) % 10
    ten = label_subset(labels, 0.1, seed=3)
    assert torch.bincount(labels[ten]).tolist() == [10] * 10
    assert torch.equal(ten, label_subset(labels, 0.1, seed=3))
    assert not torch.equal(ten, label_subset(labels, 0.1, seed=4))
    one = label_subset(labels, 0.01, seed=3)
    assert torch.bincount(labels[one]).tolist() == [1] * 10
    assert set(one.tolist()) <= set(ten.tolist())
    assert len(label_subset(labels, 1.0, seed=3)) == 1000


def test_probe_on_a_label_fraction_writes_its_own_report(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["probe", f"evaluation.encoder={run}", "data.label_fraction=0.5"]) == 0
    report = json.loads((run / "probe-labels0.5.json").read_text())
    # 29 training images (9 + 10 + 10) -> half of each class, rounded: 4 + 5 + 5.
    assert report["protocol"]["label_fraction"] == 0.5
    assert report["protocol"]["train_split"].endswith("14 images")
    assert not (run / "probe.json").exists()


def test_probe_classifier_file_reproduces_the_probe(image_folder, tmp_path):
    from ssl_pretrain.data import DataInfo as Info
    from ssl_pretrain.data import EpochBatchSampler, make_loader, to_device_float
    from ssl_pretrain.evaluation.shared.classifier import load_classifier

    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["probe", f"evaluation.encoder={run}", "probe.pool=2"]) == 0
    report = json.loads((run / "probe.json").read_text())
    model, info = load_classifier(run / report["classifier_file"])
    assert info["kind"] == "linear probe" and model.grid == 2
    _, test = labeled_splits(load_config(run / "config.yaml", [f"data.root={image_folder}"]).data, 0)
    spec = model.encoder.spec
    data = Info(spec.in_channels, model.image_size, spec.mean, spec.std)
    batch = next(iter(make_loader(test, EpochBatchSampler(len(test), 100, 0, shuffle=False), 0, False)))
    with torch.no_grad():
        predicted = model(to_device_float(batch.images, data, torch.device("cpu"))).argmax(1)
    accuracy = round(100.0 * (predicted == batch.labels).float().mean().item(), 2)
    assert accuracy == report["results"][0]["top1"]


def test_closed_form_gradients_match_autograd():
    import torch.nn.functional as F

    from ssl_pretrain.evaluation.features.logistic import loss_and_gradients

    torch.manual_seed(0)
    x, y = torch.randn(500, 20, dtype=torch.float64), torch.randint(0, 4, (500,))
    w = torch.randn(4, 20, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(x @ w.T + b, y) + 0.5 * 0.01 * w.square().sum()
    loss.backward()
    closed, grad_w, grad_b = loss_and_gradients(
        x.T.contiguous(), F.one_hot(y, 4).T.double(), w.detach(), b.detach(), 0.01
    )
    torch.testing.assert_close(closed, loss.detach())
    torch.testing.assert_close(grad_w, w.grad)
    torch.testing.assert_close(grad_b, b.grad)


def test_probe_holdout_scores_match_the_probes_own_hold_out_and_write_nothing(image_folder, tmp_path):
    """The hold-out a one-fold probe chooses on (and fine-tuning validates on), for one given setting, through
    the public API (``ssl.probe_validation``)."""
    import ssl_pretrain as ssl

    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    assert main(["probe", f"evaluation.encoder={run}", "probe.layers=all", "probe.l2=[1e-3,1e-1]"]) == 0
    rows = json.loads((run / "probe.json").read_text())["results"]
    written = sorted(p.name for p in run.iterdir())
    scores = ssl.probe_validation(run, {"probe.layers": "all", "probe.l2": 0.1})
    held_out = stratified_split(torch.tensor([0] * 9 + [1] * 10 + [2] * 10), 0.1, 0)[1]
    assert scores.keys() == {r["layer"] for r in rows} and "pooled" in scores
    for row in rows:
        if row["l2"] == 0.1:  # the same fit on the same images: equal up to one image of float jitter
            assert abs(scores[row["layer"]] - row["val_top1"]) <= 100 / len(held_out) + 1e-6
    assert sorted(p.name for p in run.iterdir()) == written, "nothing written"
