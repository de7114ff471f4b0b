"""The host-sync counter on its own: what it counts at the Python level and inside torch functions."""

import pytest
import torch
from torch import nn

from ssl_pretrain.utils.host_syncs import HostSyncCounter, HostSyncError, optimizer_step_counters
from ssl_pretrain.utils.precision import resolve_precision

CPU = torch.device("cpu")


def counted(action) -> dict:
    with HostSyncCounter() as counter:
        action()
    return dict(counter.counts)


@pytest.mark.parametrize(
    "action, kind",
    [
        (lambda x: x.sum().item(), "item"),
        (lambda x: float(x.sum()), "__float__"),
        (lambda x: print(x[:1]), "__repr__"),
        (lambda x: torch.tensor([1.0, 2.0], device=x.device), "torch.tensor(host data, device=...)"),
        (lambda x: torch.as_tensor((0, 1), device=x.device), "torch.as_tensor(host data, device=...)"),
        (lambda x: x[:, [0, 2]], "list index __getitem__"),
        (lambda x: x[x > 0.5], "boolean mask __getitem__"),
        (lambda x: torch.where(x > 0.5), "where(condition)"),
        (
            lambda x: x.flatten().repeat_interleave(torch.ones(12, dtype=torch.long)),
            "repeat_interleave(tensor repeats)",
        ),
        (lambda x: torch.bincount((x.flatten() * 3).long()), "bincount"),
        (lambda x: x.to("meta"), "to(meta): a blocking move"),
        # Judged by intent: on this CPU these copy nothing, on a GPU each crosses between host and device.
        (lambda x: x.sum().to("cpu"), "to(cpu): a move to host memory"),
        (lambda x: x.sum().to(torch.device("cpu")), "to(cpu): a move to host memory"),
        (lambda x: x.sum().to(device=torch.device("cpu")), "to(cpu): a move to host memory"),
        (lambda x: torch.zeros(4).to(x.device), "to(cpu): a move to host memory"),
        (lambda x: torch.zeros(4).to(x), "to(cpu): a move to host memory"),
        (lambda x: torch.empty(3, 4, device="meta").copy_(x), "copy_ between devices"),
    ],
)
def test_python_level_calls_that_wait_are_counted_once(action, kind):
    x = torch.rand(3, 4)
    assert counted(lambda: action(x)) == {kind: 1}


def test_a_non_blocking_copy_is_not_a_wait_at_the_python_level():
    x = torch.rand(3, 4)
    assert counted(lambda: torch.zeros(4).to(x.device, non_blocking=True)) == {}
    assert counted(lambda: x.to("cpu", torch.float16, True)) == {}
    assert counted(lambda: x.to(torch.float16)) == {}, "a dtype change moves nothing"


class _Tensor:
    """Stands for a tensor where a copy really crosses (a GPU): its device, and whether it is pinned."""

    def __init__(self, device: str, pinned: bool = False):
        self.device, self.pinned = torch.device(device), pinned

    def is_pinned(self) -> bool:
        return self.pinned


class _Op:
    def __init__(self, name: str):
        self._schema = type("Schema", (), {"name": f"aten::{name}"})()


@pytest.mark.parametrize(
    "source, target, non_blocking, kind",
    [
        (_Tensor("cpu", pinned=True), "cuda", True, None),  # the loader's pinned batch, copied ahead of use
        (_Tensor("cpu", pinned=False), "cuda", True, "aten _to_copy between devices from pageable memory"),
        (_Tensor("cpu", pinned=True), "cuda", False, "aten _to_copy between devices"),
        (_Tensor("cuda"), "cpu", False, "aten _to_copy between devices"),
        (_Tensor("cuda"), "cpu", True, None),  # into pinned memory the copy allocates; nothing waits
        (_Tensor("cuda"), "cuda", False, None),
    ],
)
def test_aten_copies_that_cross_count_unless_non_blocking_from_pinned_memory(source, target, non_blocking, kind):
    from ssl_pretrain.utils.host_syncs import _aten_kind

    found = _aten_kind(_Op("_to_copy"), (source,), {"device": torch.device(target), "non_blocking": non_blocking})
    assert (None if found is None else f"aten {found}") == kind
    copied = _aten_kind(_Op("copy_"), (_Tensor(target), source, non_blocking), {})
    assert (None if copied is None else f"aten {copied}") == (kind and kind.replace("_to_copy", "copy_"))


def test_syncs_inside_torch_functions_are_seen_at_the_aten_level():
    # torch.linalg.inv checks its result for singular matrices on the host (_linalg_check_errors): a wait
    # no Python-level name shows; F.cross_entropy and Kornia-style arithmetic wait for nothing.
    m = torch.eye(3).expand(2, 3, 3) * 2
    assert counted(lambda: torch.linalg.inv(m)) == {"aten _linalg_check_errors": 1}
    assert counted(lambda: torch.inverse(m)) == {"aten _linalg_check_errors": 1}
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert counted(lambda: nn.functional.cross_entropy(logits, labels)) == {}
    assert counted(lambda: torch.nn.functional.interpolate(torch.rand(1, 1, 4, 4), scale_factor=2)) == {}


def test_host_constructions_and_device_side_work_are_not_counted():
    x = torch.rand(3, 4)
    assert counted(lambda: torch.tensor([1.0, 2.0])) == {}  # host data kept on the host
    assert counted(lambda: x[:, torch.tensor([0, 2])]) == {}  # a tensor index: no list to copy
    assert counted(lambda: torch.where(x > 0.5, x, 0.0)) == {}
    assert counted(lambda: x.repeat_interleave(2, dim=0)) == {}
    assert counted(lambda: x.to(torch.float16)) == {}


def test_an_optimizers_host_step_counters_are_not_counted():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())

    def step():
        model(torch.rand(3, 4)).sum().backward()
        optimizer.step()

    assert counted(step) == {}, "the first step creates the host counters"
    with HostSyncCounter(ignore=optimizer_step_counters(optimizer)) as counter:
        step()
    assert counter.total == 0


@pytest.mark.parametrize("fused, expected", [(False, {"item": 1}), (True, {})])
def test_fp16_scaler_waits_unless_the_optimizer_is_fused(fused, expected):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), fused=fused)
    precision = resolve_precision("fp16", CPU, warn=False)

    def step():
        with precision.autocast():
            loss = model(torch.rand(3, 4)).float().square().mean()
        precision.backward_and_step(loss, optimizer)

    step()  # the first: state created
    with HostSyncCounter(ignore=optimizer_step_counters(optimizer)) as counter:
        step()
    assert dict(counter.counts) == expected


def test_fp16_skipped_steps_are_counted_on_the_device_and_leave_the_weights():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    precision = resolve_precision("fp16", CPU, warn=False)
    before = model.weight.detach().clone()
    with precision.autocast():
        loss = (model(torch.ones(1, 2)).float() * 1e38).sum()  # scaled by 65536: inf gradients
    precision.backward_and_step(loss, optimizer)
    assert torch.equal(model.weight, before) and int(precision.skipped) == 1
    optimizer.zero_grad()
    with precision.autocast():
        loss = model(torch.ones(1, 2)).float().sum()
    precision.backward_and_step(loss, optimizer)
    assert not torch.equal(model.weight, before) and int(precision.skipped) == 1


def test_raise_at_first_names_the_call():
    with pytest.raises(HostSyncError, match="waits for the device: item"), HostSyncCounter(raise_at_first=True):
        torch.ones(2).sum().item()


def test_fused_sgd_starts_from_zero_momentum_so_a_skipped_first_step_leaves_nothing_unwritten():
    from ssl_pretrain.utils.optim import nesterov_sgd

    finals = []
    for fused in (False, True):
        a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
        sgd = nesterov_sgd([{"params": [a, b], "weight_decay": 0.01}], 0.1, 0.9, fused=fused)
        scaler = torch.amp.GradScaler("cpu")
        for step in range(5):
            big = 1e38 if step in (0, 1, 3) else 1.0  # overflowing steps, the first two among them
            sgd.zero_grad(set_to_none=True)
            scaler.scale((a * big).sum() + (b * b).sum()).backward()
            scaler.step(sgd)
            scaler.update()
        finals.append(torch.cat([a.detach(), b.detach()]))
    torch.testing.assert_close(finals[1], finals[0])
