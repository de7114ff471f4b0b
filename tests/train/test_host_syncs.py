"""A training step makes the host wait for the device at no point: counted on CPU, for every task."""

import pytest

from ssl_pretrain.cli import main
from ssl_pretrain.tasks import RotationPrediction
from ssl_pretrain.train import trainer
from ssl_pretrain.utils.host_syncs import HostSyncCounter, optimizer_step_counters

from ..helpers import TINY

TASK_OPTIONS = {
    "dae": [],
    "rotation": [],
    "exemplar": ["task.copies=2"],
    "relative_patch": ["task.downsample_prob=0.5"],
    "multi": ["task.tasks=[{name: rotation}, {name: exemplar, copies: 2, num_seeds: null, loss: contrastive}]"],
}


def count_step_syncs(monkeypatch, args: list[str]) -> HostSyncCounter:
    """Run ``ssl-pretrain pretrain args`` counting host synchronisations inside the training steps only
    (logging, checkpoints and the end of the run are allowed theirs)."""
    counter = HostSyncCounter()
    counter.active = False
    step = trainer._train_step

    def counted(run, batch):
        counter.ignored |= {id(t) for t in optimizer_step_counters(run.optimizer)}
        counter.active = True
        try:
            return step(run, batch)
        finally:
            counter.active = False

    monkeypatch.setattr(trainer, "_train_step", counted)
    with counter:
        assert main(["pretrain", *args]) == 0
    return counter


@pytest.mark.parametrize("task", sorted(TASK_OPTIONS))
def test_no_training_step_waits_for_the_device(task, fashion_mnist_root, tmp_path, monkeypatch):
    args = ["-c", f"configs/fashion_mnist/{task}.yaml", *TINY, f"data.root={fashion_mnist_root}"]
    args += ["data.download=false", f"output_dir={tmp_path}", "trainer.max_steps=4", "trainer.log_every=2"]
    counter = count_step_syncs(monkeypatch, args + TASK_OPTIONS[task])
    assert counter.total == 0, dict(counter.counts)


def test_the_count_catches_a_read_added_to_the_step(fashion_mnist_root, tmp_path, monkeypatch):
    loss = RotationPrediction.loss

    def reads_its_loss(self, outputs, targets):
        value, metrics = loss(self, outputs, targets)
        print(f"loss {value.item():.3f}")  # the kind of line that stalls a GPU every step
        return value, metrics

    monkeypatch.setattr(RotationPrediction, "loss", reads_its_loss)
    args = ["-c", "configs/fashion_mnist/rotation.yaml", *TINY, f"data.root={fashion_mnist_root}"]
    args += ["data.download=false", f"output_dir={tmp_path}", "trainer.max_steps=3"]
    counter = count_step_syncs(monkeypatch, args)
    assert counter.counts["item"] == 3
