"""VICReg (Bardes, Ponce & LeCun 2022, "Variance-Invariance-Covariance Regularization"): redundancy reduction
with neither negatives nor a teacher. The embeddings of an image's views are pulled together (invariance) while
every embedding dimension keeps a standard deviation of at least 1 over the batch (variance) and the dimensions
are decorrelated (covariance), which is what prevents collapse.

The batch statistics span every process's batch under ``torchrun`` (``needs_whole_batch``).
"""

from __future__ import annotations

import torch

from ..encoders import Encoder
from ..errors import check_option
from .parts.heads import mlp_head
from .parts.joint_embedding import GLOBAL_VIEWS, JointEmbeddingTask
from .parts.losses import vicreg_terms


class VICReg(JointEmbeddingTask):
    """Variance-invariance-covariance regularisation of an expander's embeddings.

    Args:
        projection_dim: the expander's width (its hidden layers and its output; the paper's 8192 for
            ResNet-50, smaller for small encoders).
        expander_depth: linear layers in the expander (the paper: 3).
        invariance_weight, variance_weight, covariance_weight: the paper's lambda, mu, nu (25, 25, 1).
        crop_scale, flip, translate, scale, rotation, brightness, contrast, saturation, hue, erase,
        local_crops, local_size, local_scale: the views, as for BYOL.
    """

    needs_whole_batch = True
    min_batch = 2  # a standard deviation and a covariance over the batch

    def __init__(
        self,
        encoder: Encoder,
        *,
        projection_dim: int = 1024,
        expander_depth: int = 3,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        **views,
    ):
        self.check_widths(projection_dim=projection_dim, expander_depth=expander_depth)
        weights = {"invariance": invariance_weight, "variance": variance_weight, "covariance": covariance_weight}
        for name, weight in weights.items():
            check_option(weight >= 0, f"{name}_weight", f"must be >= 0, got {weight}")
        check_option(sum(weights.values()) > 0, "invariance_weight", "the three weights cannot all be 0")
        views = self.make_views(encoder, views)
        super().__init__(encoder, views)
        self.weights = weights
        self.expander = mlp_head(encoder.num_features, projection_dim, projection_dim, depth=expander_depth)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(B, V, d)`` embeddings of every view, the global views first."""
        features = self.features_per_sample(inputs)
        return self.expander(features.flatten(0, 1)).unflatten(0, features.shape[:2])

    def loss(self, outputs, targets):
        terms = vicreg_terms(outputs, GLOBAL_VIEWS)
        loss = sum(self.weights[name] * value for name, value in terms.items())
        return loss, {name: value.detach() for name, value in terms.items()}
