"""Random parameters of the Kornia pipelines drawn where the images are (kornia issue 4426).

No GPU here, so the device is checked through the dtype: Kornia takes a draw's device and dtype from the
same tensors, so a pipeline whose every parameter comes out in the images' float64 (Kornia alone leaves
most in float32, on the CPU) draws them on the images' device too.
"""

import pytest
import torch

from ssl_pretrain.evaluation.finetuning.augment import finetune_augmentation, strong_augmentation
from ssl_pretrain.tasks.parts.views import view_augmentation
from ssl_pretrain.utils.draws import augment_on_device


def _exemplar():
    return view_augmentation(
        3, 0.1, [0.9, 1.1], 10, 0.2, 0.2, 0.2, 0.05, crop_scale=[0.5, 1.0], flip=True, erase=0.5, size=16
    )


PIPELINES = {
    "exemplar": _exemplar,
    "finetune crop_flip": lambda: finetune_augmentation("crop_flip", 16),
    "fixmatch strong": strong_augmentation,
}


def _drawn(pipeline) -> dict[str, torch.dtype]:
    """``{op.key: dtype}`` of every floating-point parameter the last call drew (a Kornia op keeps its draw
    as a dict in ``_params``; an ``AugmentationSequential`` as a list of ``(name, dict)`` items)."""
    draws = {}
    for op in pipeline.modules():
        params = getattr(op, "_params", None) or {}
        items = [(f"{type(op).__name__}", params)] if isinstance(params, dict) else [(p.name, p.data) for p in params]
        for name, data in items:
            for key, value in (data or {}).items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    draws[f"{name}.{key}"] = value.dtype
    return draws


@pytest.mark.parametrize("name", PIPELINES)
def test_every_parameter_is_drawn_in_the_images_dtype_and_device(name):
    pipeline = PIPELINES[name]()
    images = torch.rand(6, 3, 16, 16, dtype=torch.float64)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what a float64 device default would be to Kornia
    try:
        out = augment_on_device(pipeline, images)
    finally:
        torch.set_default_dtype(default)
    drawn = _drawn(pipeline)
    assert out.shape == images.shape and len(drawn) >= 3
    assert {key for key, dtype in drawn.items() if dtype != torch.float64} == set()


@pytest.mark.parametrize("name", PIPELINES)
def test_on_the_cpu_the_draws_and_results_are_kornias_own(name):
    images = torch.rand(6, 3, 16, 16)
    torch.manual_seed(3)
    plain = PIPELINES[name]()(images)
    torch.manual_seed(3)
    placed = augment_on_device(PIPELINES[name](), images)
    assert torch.equal(plain, placed)


def test_draws_follow_the_images_not_the_default_device():
    """Kornia puts the draws of ops whose ranges are plain numbers on the default device; with another
    default (here ``meta``, standing in for the CPU while the images are on a GPU) they still land on the
    images' device, and give what they give under the images' own default."""
    images = torch.rand(6, 3, 16, 16)
    torch.manual_seed(5)
    expected = augment_on_device(_exemplar(), images)
    pipeline = _exemplar()
    torch.manual_seed(5)
    torch.set_default_device("meta")
    try:
        out = augment_on_device(pipeline, images)
    finally:
        torch.set_default_device(None)
    assert out.device == images.device and torch.equal(out, expected)


def test_ranges_placed_before_the_step_are_not_asked_to_move_again():
    """The trainer places every pipeline's ranges before its first step; a step then requests no ``.to()`` (the
    counter judges a ``.to(device)`` by intent: on a GPU each would be a copy from the host)."""
    from ssl_pretrain.utils.draws import place_draws
    from ssl_pretrain.utils.host_syncs import HostSyncCounter

    pipeline = _exemplar()
    place_draws(pipeline, torch.device("cpu"), torch.float64)
    images = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    with HostSyncCounter() as counter:
        augment_on_device(pipeline, images)
    assert counter.counts == {}
    unplaced = _exemplar()
    with HostSyncCounter() as counter:
        augment_on_device(unplaced, images)
    assert counter.counts.get("to(cpu): a move to host memory", 0) > 0, "placing inside the step asks for moves"
