"""Grad-CAM (Selvaraju et al. 2017) for a trained classifier: which pixels drove a class score.

For a stage's activations ``A (B, C, h, w)`` and the score ``y_c`` of class ``c``, the map is
``ReLU(sum_k mean_ij(d y_c / d A_kij) * A_k)``, upsampled bilinearly to the input size and scaled to
[0, 1] per image. ``ssl-pretrain gradcam`` writes the input/overlay pairs as a PNG grid and to TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

from ...config import Config
from ...data import to_device_float
from ...errors import BadInput, ConfigError
from ..shared.classifier import ImageClassifier, classifier_file, load_classifier
from ..shared.predict import classifier_info
from ..shared.reports import GradcamReport
from ..shared.splits import labeled_splits


def grad_cam(model: ImageClassifier, images: torch.Tensor, layer: str, target: torch.Tensor | None = None):
    """``(maps (B, H, W) in [0, 1], classes (B,))`` for ``images (B, C, H, W)``; ``target`` classes or the
    predicted ones. The model's parameters are left untouched (gradients go to the activations only)."""
    encoder = model.encoder
    if layer not in encoder.stage_names:
        stages = ", ".join(encoder.stage_names)
        raise ConfigError("gradcam.layer", f"unknown stage {layer!r}; this encoder has {stages}")
    last_module = encoder.stage_modules(layer)[-1]
    captured = {}
    hook = last_module.register_forward_hook(lambda m, i, out: captured.__setitem__("a", out))
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)  # so activations carry a graph even if weights are frozen
            logits = model(x)
            classes = logits.argmax(dim=1) if target is None else target
            score = logits.gather(1, classes.view(-1, 1)).sum()
            activations = captured["a"]
            (grads,) = torch.autograd.grad(score, activations)
    finally:
        hook.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak, classes


def heat_colours(maps: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` in [0, 1] -> RGB ``(B, 3, H, W)``: blue (0) through green and yellow to red (1)."""
    r = (1.5 - (4 * maps - 3).abs()).clamp(0, 1)
    g = (1.5 - (4 * maps - 2).abs()).clamp(0, 1)
    b = (1.5 - (4 * maps - 1).abs()).clamp(0, 1)
    return torch.stack([r, g, b], dim=1)


def overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Heatmaps blended over the images (grey images shown as RGB), ``(B, 3, H, W)`` in [0, 1]."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return (1 - alpha) * rgb + alpha * heat_colours(maps)


def run_gradcam(config: Config, device: torch.device) -> GradcamReport:
    """Heatmaps for ``gradcam.num_images`` images of ``gradcam.split``; returns the PNG's path (``png``), the
    layer and the class explained for each image."""
    cfg = config.gradcam
    if cfg.model is None:
        raise ConfigError("gradcam.model", "is required: a fine-tuning run, its best.pt, or probe_classifier.pt")
    path = classifier_file(cfg.model, "gradcam.model")
    model, _ = load_classifier(path, "gradcam.model")
    model.to(device)
    layer = cfg.layer or model.encoder.stage_names[-1]
    if cfg.target_class is not None and cfg.target_class >= model.num_classes:
        raise ConfigError("gradcam.target_class", f"must be < {model.num_classes} (the model's classes)")
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    dataset = test if cfg.split == "test" else train
    count = min(cfg.num_images, len(dataset))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.seed))[:count].tolist()
    batch = dataset.__getitems__(order)
    if len(batch.images) == 0:
        raise BadInput(f"data.root: none of the {count} chosen {cfg.split} images could be read")
    images = to_device_float(batch.images, classifier_info(model), device)
    target = None if cfg.target_class is None else torch.full((len(images),), cfg.target_class, device=device)
    maps, classes = grad_cam(model.eval(), images, layer, target)
    pairs = torch.stack([overlay(images, torch.zeros_like(maps), alpha=0.0), overlay(images, maps)], dim=1)
    grid = make_grid(pairs.flatten(0, 1).cpu(), nrow=8, pad_value=1.0)
    out_dir = Path(cfg.output) if cfg.output else _default_output(path)
    out_dir.mkdir(parents=True, exist_ok=True)
    which = "predicted" if cfg.target_class is None else f"class{cfg.target_class}"
    png = out_dir / f"gradcam-{layer}-{which}.png"
    save_image(grid, png)
    with SummaryWriter(str(out_dir / "tb")) as writer:
        writer.add_image(f"gradcam/{layer}/{which}", grid, 0)
    return GradcamReport(str(png), layer, which, cfg.split, classes.tolist(), batch.labels.tolist())


def format_gradcam(result: GradcamReport) -> str:
    """Where the heatmaps are and which class each explains."""
    explained = ", ".join(f"{c}(true {t})" for c, t in zip(result.classes, result.labels, strict=True))
    return (
        f"Grad-CAM of {result.layer} for {result.which} classes on {len(result.classes)} "
        f"{result.split} images: {result.png}\npairs (image, overlay) left to right; classes explained: " + explained
    )


def _default_output(model_file: Path) -> Path:
    """``<fine-tuning run>/gradcam`` for ``checkpoints/best.pt``; ``<folder>/gradcam`` otherwise."""
    home = model_file.parent.parent if model_file.parent.name == "checkpoints" else model_file.parent
    return home / "gradcam"
