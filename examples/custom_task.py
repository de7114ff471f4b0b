"""A pretext task defined outside ssl_pretrain, pretrained and probed through the Python API.

    python examples/custom_task.py                      # Fashion-MNIST, 300 steps (~1 min on 2 CPU cores)
    python examples/custom_task.py trainer.max_steps=50 data.root=/path/to/fashion-mnist

The task, *flip prediction*, asks which of four flips (none, horizontal, vertical, both) an image was given.
It is a class with the four methods every task has (``make_batch``, ``forward``, ``loss``, and optionally
``previews``); registering it makes ``task.name: flip`` valid in any config, on the command line too.
"""

from __future__ import annotations

import sys
import tempfile

import torch
import torch.nn.functional as F

import ssl_pretrain as ssl


class FlipPrediction(ssl.PretextTask):
    """4-way classification of the flip applied to each image, from the encoder's pooled features.

    Args:
        head_hidden: hidden width of the head (0: linear).
    """

    def __init__(self, encoder: ssl.Encoder, *, head_hidden: int = 0):
        super().__init__(encoder)
        d = encoder.num_features
        if head_hidden:
            self.head = torch.nn.Sequential(
                torch.nn.Linear(d, head_hidden), torch.nn.ReLU(), torch.nn.Linear(head_hidden, 4)
            )
        else:
            self.head = torch.nn.Linear(d, 4)

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor):
        """``(B, C, S, S)`` on the device -> flipped images and their flip ``(B,)`` in 0..3, all on the device."""
        labels = torch.randint(0, 4, (len(images),), device=images.device)
        horizontal = (labels % 2 == 1).view(-1, 1, 1, 1)
        vertical = (labels >= 2).view(-1, 1, 1, 1)
        flipped = torch.where(horizontal, images.flip(3), images)
        return torch.where(vertical, flipped.flip(2), flipped), labels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.forward_features(inputs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor):
        accuracy = (outputs.detach().argmax(1) == targets).float().mean()
        return F.cross_entropy(outputs, targets), {"accuracy": accuracy}


def main(overrides: list[str]) -> dict:
    ssl.register_task("flip", FlipPrediction)
    config = {
        "task": {"name": "flip", "head_hidden": 128},
        "model": {"backbone": "small_resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
        "trainer": {"max_steps": 300, "batch_size": 128, "lr": 0.002, "progress": False},
        "output_dir": tempfile.mkdtemp(prefix="custom_task_"),
        "run_name": "flip",
    }
    run = ssl.pretrain(config, overrides)
    print(f"pretrained {run.metrics['steps']} steps, flip accuracy {run.metrics['pretext_accuracy']:.2f}")
    report = ssl.probe(run, {"evaluation.control": "random_init"})
    for row in report.results:
        if row["chosen"]:
            print(f"linear probe, {row['encoder']} encoder: {row['top1']:.2f}% test top-1")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
