"""Denoising autoencoder (Vincent et al. 2008): reconstruct the clean image from a corrupted one.

Defaults follow the masking-noise setting of Vincent et al. (2010), where 25-50% of the inputs
are destroyed; the loss is the mean squared error in normalised pixel units.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ..encoders import Encoder
from ..errors import check_option
from ..utils.draws import augment_on_device
from .base import PretextTask
from .parts.corruption import make_corruption
from .parts.decoder import MirrorDecoder


class DenoisingAutoencoder(PretextTask):
    """Encoder + mirror decoder trained to undo a per-sample random corruption.

    Args:
        corruption: ``masking`` (fraction of pixels zeroed), ``gaussian`` (additive noise, std in
            ``[0, 1]`` pixel units) or ``salt_pepper`` (fraction of pixels set to 0 or 1).
        level: the fraction or std above.
        upsample: ``nearest``, ``bed_of_nails``, ``max_unpool`` (needs an encoder that downsamples
            only by max-pooling, e.g. ``small_resnet`` with ``downsample: maxpool``, or ``vgg11_bn``)
            or ``transposed``.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        corruption: Literal["masking", "gaussian", "salt_pepper"] = "masking",
        level: float = 0.4,
        upsample: Literal["nearest", "bed_of_nails", "max_unpool", "transposed"] = "nearest",
    ):
        super().__init__(encoder)
        if corruption == "gaussian":
            check_option(0 < level <= 2, "level", f"is the noise std for gaussian; must be in (0, 2], got {level}")
        else:
            check_option(0 < level < 1, "level", f"is the fraction of pixels corrupted; must be in (0, 1), got {level}")
        check_option(
            upsample != "max_unpool" or encoder.max_pool_only,
            "upsample",
            f"max_unpool needs an encoder that downsamples only by max-pooling; {encoder.spec.backbone} "
            "does not (use small_resnet with model.downsample=maxpool, or vgg11_bn)",
        )
        self.corruption_name = corruption
        self.level = level
        self.corrupt = make_corruption(corruption, level)
        self.decoder = MirrorDecoder(
            _dry_run_records(encoder), encoder.num_features, encoder.spec.in_channels, upsample
        )

    def make_batch(self, images: torch.Tensor, indices: torch.Tensor | None = None):
        """``(B, C, H, W)`` clean -> (corrupted, clean), both ``(B, C, H, W)`` in pixel units."""
        return augment_on_device(self.corrupt, images), images  # noise drawn where the images are

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Corrupted images -> reconstruction in normalised units, ``(B, C, H, W)``."""
        with self.encoder.record_downsampling() as records:
            maps = self.encoder.forward_maps(inputs)
        return self.decoder(maps, records)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = F.mse_loss(outputs, self.encoder.normalize(targets))
        return loss, {}

    def previews(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        recon = (outputs * self.encoder.std + self.encoder.mean).clamp(0, 1)
        n = min(8, len(inputs))
        return {"dae/corrupted_target_reconstruction": torch.stack([inputs[:n].clamp(0, 1), targets[:n], recon[:n]])}


def _dry_run_records(encoder: Encoder) -> list:
    """Downsampling records of one forward pass on a blank image of the encoder's input size."""
    size = encoder.spec.image_size
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), encoder.record_downsampling() as records:
            encoder.forward_maps(torch.zeros(1, encoder.spec.in_channels, size, size, device=encoder.mean.device))
    finally:
        encoder.train(was_training)
    return records
