"""Grad-CAM: map size, a planted discriminative region, the command's PNG and TensorBoard output."""

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_pretrain.cli import main
from ssl_pretrain.encoders import build_encoder
from ssl_pretrain.evaluation.extras.gradcam import grad_cam
from ssl_pretrain.evaluation.shared.classifier import ImageClassifier

from ...helpers import folder_overrides


def _planted(n: int, generator: torch.Generator):
    """Noise images; class 1 has a bright 5x5 square at a random place, class 0 has none."""
    images = torch.rand(n, 1, 24, 24, generator=generator) * 0.5
    labels = torch.arange(n) % 2
    masks = torch.zeros(n, 24, 24, dtype=torch.bool)
    for i in range(n):
        if labels[i] == 1:
            y, x = torch.randint(0, 19, (2,), generator=generator).tolist()
            images[i, 0, y : y + 5, x : x + 5] = 1.0
            masks[i, y : y + 5, x : x + 5] = True
    return images, labels, masks


def test_grad_cam_has_the_input_size_and_finds_the_planted_square():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    encoder = build_encoder("small_resnet", {"widths": [8, 16], "blocks": [1, 1]}, 1, 24, [0.25], [0.3])
    model = ImageClassifier(encoder, 2, 1, 24)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        images, labels, _ = _planted(32, generator)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images, labels, masks = _planted(40, generator)
    assert (model(images).argmax(1) == labels).float().mean() > 0.9
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps, classes = grad_cam(model, images, "layer2", torch.ones(40, dtype=torch.long))
    assert maps.shape == (40, 24, 24) and maps.min() >= 0 and maps.max() <= 1
    assert classes.tolist() == [1] * 40
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    positives = labels == 1
    inside = torch.stack([maps[i][masks[i]].mean() for i in range(40) if positives[i]])
    outside = torch.stack([maps[i][~masks[i]].mean() for i in range(40) if positives[i]])
    assert (inside > 2 * outside).float().mean() >= 0.9
    peaks = [divmod(int(maps[i].argmax()), 24) for i in range(40) if positives[i]]
    hits = [
        masks[i][max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].any()
        for i, (y, x) in zip(positives.nonzero().flatten().tolist(), peaks, strict=True)
    ]
    assert sum(hits) >= 0.9 * len(hits)


def test_gradcam_command_writes_png_and_tensorboard(image_folder, tmp_path):
    assert main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]) == 0
    run = tmp_path / "run"
    ft = ["finetune", f"evaluation.encoder={run}", "finetune.epochs=1", "finetune.batch_size=8", "finetune.name=ft"]
    assert main([*ft, "trainer.progress=false"]) == 0
    model_dir = run / "finetune" / "ft"
    assert main(["gradcam", f"gradcam.model={model_dir}", "gradcam.num_images=4", "gradcam.layer=layer1"]) == 0
    png = model_dir / "gradcam" / "gradcam-layer1-predicted.png"
    width, height = Image.open(png).size
    assert width > 4 * 16 and height > 16  # 4 (image, overlay) pairs of 16 px in one row of 8
    events = EventAccumulator(str(model_dir / "gradcam" / "tb")).Reload()
    assert events.Tags()["images"] == ["gradcam/layer1/predicted"]
    assert main(["gradcam", f"gradcam.model={model_dir}", "gradcam.layer=layer7"]) == 2
    assert main(["gradcam", f"gradcam.model={model_dir}", "gradcam.target_class=9"]) == 2
    assert Path(png).is_file()


def test_missing_models_are_bad_input_naming_their_key(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    args = ["-c", "configs/fashion_mnist/dae.yaml"]
    assert main(["gradcam", *args, f"gradcam.model={missing}"]) == 2
    assert capsys.readouterr().err.startswith("ssl-pretrain: error: gradcam.model:")
    assert main(["ensemble", *args, f"ensemble.members=[{missing},{missing}]"]) == 2
    assert capsys.readouterr().err.startswith("ssl-pretrain: error: ensemble.members:")
