"""BYOL (Grill et al. 2020, "Bootstrap your own latent"): the student's prediction of each view regresses the
momentum teacher's projection of the other global views; no negatives.

student: encoder -> projector -> predictor; teacher: an exponential moving average of the student's encoder
and projector (:class:`~ssl_pretrain.tasks.parts.momentum.MomentumTeacher`), updated after every optimizer step,
its momentum on a cosine schedule from ``momentum`` to ``momentum_end``. The teacher sees the global views
only; with multi-crop (``local_crops > 0``) the student also predicts them from small local crops.
"""

from __future__ import annotations

import torch

from ..encoders import Encoder
from ..errors import check_option
from .parts.heads import mlp_head
from .parts.joint_embedding import JointEmbeddingTask
from .parts.losses import byol_loss
from .parts.momentum import MomentumTeacher
from .parts.views import per_sample


class BYOL(JointEmbeddingTask):
    """Self-distillation with a momentum teacher.

    Args:
        projection_dim, hidden_dim: the projector's output and hidden widths (the predictor maps
            ``projection_dim`` to itself through ``hidden_dim``).
        momentum, momentum_end: the teacher's momentum at the first and the last step (cosine in between);
            both in [0, 1], ``momentum <= momentum_end``.
        crop_scale: the share of the area a global view's random resized crop keeps.
        flip, translate, scale, rotation, brightness, contrast, saturation, hue, erase: the views' jitter, as
            for Exemplar (saturation and hue on colour images only).
        local_crops, local_size, local_scale: multi-crop: this many extra local views per image, each a crop
            of ``local_scale`` of the area resized to ``local_size`` px (null: 4/7 of the image's side).
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        momentum: float = 0.99,
        momentum_end: float = 1.0,
        **views,
    ):
        self.check_widths(projection_dim=projection_dim, hidden_dim=hidden_dim)
        check_option(0 <= momentum <= 1, "momentum", f"must be in [0, 1], got {momentum}")
        check_option(momentum <= momentum_end <= 1, "momentum_end", f"must be in [momentum, 1], got {momentum_end}")
        views = self.make_views(encoder, views)
        super().__init__(encoder, views)
        self.projector = mlp_head(encoder.num_features, hidden_dim, projection_dim)
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim)
        self.teacher = MomentumTeacher({"encoder": encoder, "projector": self.projector}, momentum, momentum_end)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"prediction": (B, V, d)`` of every view, ``"target": (B, 2, d)}`` the teacher's projections of the
        global views."""
        features = self.features_per_sample(inputs)
        prediction = self.predictor(self.projector(features.flatten(0, 1))).unflatten(0, features.shape[:2])
        with torch.no_grad():
            teacher = self.teacher.copies
            target = teacher["projector"](teacher["encoder"].forward_features(inputs["global"]))
        return {"prediction": prediction, "target": per_sample(target, len(features))}

    def loss(self, outputs, targets):
        loss = byol_loss(outputs["prediction"], outputs["target"].detach())
        return loss, {"cosine": (1 - loss / 2).detach()}

    def after_step(self, step: int, total_steps: int) -> dict[str, float]:
        momentum = self.teacher.update({"encoder": self.encoder, "projector": self.projector}, step, total_steps)
        return {"teacher_momentum": momentum}
