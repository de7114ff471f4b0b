"""BYOL, VICReg and multi-crop: the shared losses against hand-written references, the momentum teacher, views
made on the device at two resolutions with the encoder run once per resolution, and option checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.errors import OptionError
from ssl_pretrain.tasks import BYOL, Exemplar, VICReg
from ssl_pretrain.tasks.parts.losses import byol_loss, covariance_term, variance_term, vicreg_terms
from ssl_pretrain.tasks.parts.momentum import MomentumTeacher, cosine_momentum

SIZE = 28


def _encoder():
    torch.manual_seed(0)
    return build_encoder("small_resnet", {"widths": [8, 16], "blocks": [1, 1]}, 1, SIZE, [0.5], [0.25])


def test_byol_loss_pairs_every_view_with_every_other_global_view():
    p, z = torch.randn(5, 4, 8), torch.randn(5, 2, 8)  # 2 global + 2 local predictions; 2 teacher targets
    pairs = [(v, g) for v in range(4) for g in range(2) if v != g]
    expected = sum(2 - 2 * F.cosine_similarity(p[:, v], z[:, g], dim=-1) for v, g in pairs).mean() / len(pairs)
    torch.testing.assert_close(byol_loss(p, z), expected)
    aligned = torch.randn(5, 2, 8)
    assert byol_loss(aligned.flip(1) * 3, aligned).abs().item() < 1e-6, "the other view, any scale: loss 0"


def test_vicreg_terms_match_the_paper_s_formulas():
    z = torch.randn(64, 2, 16)
    terms = vicreg_terms(z, global_views=2)
    torch.testing.assert_close(terms["invariance"], F.mse_loss(z[:, 0], z[:, 1]))
    std = (z.var(dim=0) + 1e-4).sqrt()
    torch.testing.assert_close(terms["variance"], F.relu(1 - std).mean(dim=1).sum())
    for view in range(2):
        cov = torch.cov(z[:, view].T)
        off = cov - torch.diag(cov.diagonal())
        torch.testing.assert_close(covariance_term(z[:, view]), off.pow(2).sum() / 16)
    assert variance_term(torch.ones(64, 16)).item() == pytest.approx(1 - 1e-2, abs=1e-3), "collapse is penalised"


def test_cosine_momentum_runs_from_start_to_end():
    assert cosine_momentum(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_momentum(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_momentum(100, 100, 0.99, 1.0) == pytest.approx(1.0)


def test_the_teacher_moves_towards_the_student_by_one_minus_momentum():
    student = torch.nn.Linear(3, 2)
    teacher = MomentumTeacher({"head": student}, start=0.9, end=0.9)
    assert not any(p.requires_grad for p in teacher.parameters())
    before = teacher.copies["head"].weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    momentum = teacher.update({"head": student}, step=1, total_steps=10)
    assert momentum == pytest.approx(0.9)
    torch.testing.assert_close(teacher.copies["head"].weight, 0.9 * before + 0.1 * student.weight)
    frozen = MomentumTeacher({"head": student}, start=1.0, end=1.0)
    kept = frozen.copies["head"].weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    frozen.update({"head": student}, step=1, total_steps=10)
    assert torch.equal(frozen.copies["head"].weight, kept)


def test_byol_trains_the_student_and_moves_only_the_teacher_by_ema():
    task = BYOL(_encoder(), hidden_dim=32, projection_dim=16)
    optimizer = torch.optim.SGD([p for p in task.parameters() if p.requires_grad], lr=0.1)
    inputs, targets = task.make_batch(torch.rand(8, 1, SIZE, SIZE), torch.arange(8))
    loss, metrics = task.loss(task(inputs), targets)
    loss.backward()
    assert all(p.grad is None for p in task.teacher.parameters()), "stop-gradient: the teacher gets none"
    teacher_before = [p.clone() for p in task.teacher.copies["encoder"].parameters()]
    optimizer.step()
    logged = task.after_step(1, 10)
    m = cosine_momentum(1, 10, 0.99, 1.0)
    assert logged == {"teacher_momentum": pytest.approx(m)}
    teacher_after = task.teacher.copies["encoder"].parameters()
    for old, new, student in zip(teacher_before, teacher_after, task.encoder.parameters(), strict=True):
        torch.testing.assert_close(new, m * old + (1 - m) * student)
    assert any(key.startswith("teacher.copies.encoder.") for key in task.state_dict()), "checkpoints keep the teacher"


@pytest.mark.parametrize("task_class", [BYOL, VICReg])
def test_multi_crop_makes_two_global_and_k_local_views_and_runs_the_encoder_once_per_resolution(task_class):
    task = task_class(_encoder(), local_crops=3, local_size=12)
    inputs, _ = task.make_batch(torch.rand(4, 1, SIZE, SIZE), torch.arange(4))
    assert inputs["global"].shape == (8, 1, SIZE, SIZE) and inputs["local"].shape == (12, 1, 12, 12)
    calls, forward_features = [], task.encoder.forward_features

    def counted(x):
        calls.append(x.shape)
        return forward_features(x)

    task.encoder.forward_features = counted  # the student's encoder (BYOL's teacher has its own copy)
    outputs = task(inputs)
    assert calls == [(8, 1, SIZE, SIZE), (12, 1, 12, 12)]
    per_sample = outputs["prediction"] if task_class is BYOL else outputs
    assert per_sample.shape[:2] == (4, 5), "each sample: 2 global + 3 local views"
    assert torch.isfinite(task.loss(outputs, None)[0])


def test_exemplar_local_crops_are_positives_of_their_seed():
    task = Exemplar(_encoder(), num_seeds=None, loss="contrastive", copies=2, local_crops=2)
    inputs, targets = task.make_batch(torch.rand(4, 1, SIZE, SIZE), torch.tensor([7, 8, 9, 10]))
    assert inputs["global"].shape == (8, 1, SIZE, SIZE) and inputs["local"].shape[-1] == round(SIZE * 4 / 7)
    assert targets["local"].tolist() == [7, 7, 8, 8, 9, 9, 10, 10]
    loss, metrics = task.loss(task(inputs), targets)
    assert torch.isfinite(loss) and 0 <= metrics["accuracy"] <= 1
    assert task.previews(inputs, targets, task(inputs))["exemplar/seed_then_copies"].shape[:2] == (4, 3)


@pytest.mark.parametrize(
    "task_class, options, option",
    [
        (BYOL, {"momentum": 1.5}, "momentum"),
        (BYOL, {"momentum": -0.1}, "momentum"),
        (BYOL, {"momentum": 0.99, "momentum_end": 0.9}, "momentum_end"),
        (BYOL, {"projection_dim": 0}, "projection_dim"),
        (VICReg, {"projection_dim": 0}, "projection_dim"),
        (VICReg, {"variance_weight": -1.0}, "variance_weight"),
        (VICReg, {"local_size": 12}, "local_size"),
        (BYOL, {"local_crops": 2, "local_size": SIZE}, "local_size"),
        (Exemplar, {"local_crops": -1}, "local_crops"),
        (BYOL, {"local_crops": 2, "local_scale": [0.5, 0.2]}, "local_scale"),
        (BYOL, {"rotation": -10.0}, "rotation"),
        (VICReg, {"rotation": 200.0}, "rotation"),
        (Exemplar, {"rotation": -1.0}, "rotation"),
    ],
)
def test_bad_view_task_options_name_the_option(task_class, options, option):
    with pytest.raises(OptionError) as err:
        task_class(_encoder(), **options)
    assert err.value.option == option


def test_the_previews_show_each_image_with_its_global_and_local_views():
    task = VICReg(_encoder(), local_crops=2, projection_dim=32)
    inputs, targets = task.make_batch(torch.rand(6, 1, SIZE, SIZE), torch.arange(6))
    grid = task.previews(inputs, targets, task(inputs))["vicreg/image_then_views"]
    assert grid.shape == (4, 5, 1, SIZE, SIZE) and not math.isnan(grid.sum().item())


@pytest.mark.parametrize("task_class", [VICReg, Exemplar, BYOL])
def test_the_loss_statistics_are_fp32_under_bf16_autocast(task_class):
    """VICReg's covariance, NT-Xent's logits at T = 0.1 and BYOL's cosines: computed from the same bf16 outputs,
    ``loss_in_fp32`` under autocast equals the fp32 loss; the plain loss under autocast does not (bf16 products)."""
    options = {"num_seeds": None, "loss": "contrastive"} if task_class is Exemplar else {"projection_dim": 32}
    task = task_class(_encoder(), **options)
    torch.manual_seed(1)
    inputs, targets = task.make_batch(torch.rand(16, 1, SIZE, SIZE), torch.arange(16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = task(inputs)
        in_bf16, _ = task.loss(outputs, targets)
        in_fp32, _ = task.loss_in_fp32(outputs, targets)
    reference, _ = task.loss(_upcast(outputs), targets)
    assert in_fp32.dtype == torch.float32
    torch.testing.assert_close(in_fp32, reference, rtol=1e-6, atol=1e-6)
    assert (in_bf16.float() - reference).abs() > 1e-6 * reference.abs(), "bf16 statistics would differ"


def _upcast(tree):
    if isinstance(tree, dict):
        return {k: _upcast(v) for k, v in tree.items()}
    return tree.float() if tree.is_floating_point() else tree


def test_vicreg_refuses_a_batch_of_one_before_the_run_starts(image_folder, tmp_path, capsys):
    from ssl_pretrain.cli import main

    from ..helpers import folder_overrides

    args = ["pretrain", "-c", "configs/fashion_mnist/vicreg.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "trainer.batch_size=1", "gauges.every=null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.batch_size" in err[0] and "at least 2" in err[0]
    assert not (tmp_path / "run").exists(), "nothing written"


def test_pretraining_in_bf16_computes_the_loss_outside_autocast_in_fp32(image_folder, tmp_path, monkeypatch):
    from ssl_pretrain.cli import main

    from ..helpers import folder_overrides

    seen = []
    loss = VICReg.loss

    def watched(self, outputs, targets):
        seen.append((torch.is_autocast_enabled("cpu"), outputs.dtype))
        return loss(self, outputs, targets)

    monkeypatch.setattr(VICReg, "loss", watched)
    args = ["pretrain", "-c", "configs/fashion_mnist/vicreg.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, "trainer.precision=bf16", "trainer.max_steps=2", "gauges.every=null"]) == 0
    assert seen and all(state == (False, torch.float32) for state in seen), seen
