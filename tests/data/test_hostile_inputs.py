"""Broken and hostile inputs: image files, checkpoints and encoder files made by the tests."""

import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_pretrain.cli import main
from ssl_pretrain.data.sources import decode_image

from ..helpers import folder_overrides


def _png_bomb(path, side: int = 10_000) -> None:
    """A valid 1-bit ``side`` x ``side`` PNG of zeros: a few KB on disk, ``side**2`` pixels decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + bytes((side + 7) // 8)) * side
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/ssl_pretrain_pwned_by_encoder",))


def test_a_decompression_bomb_is_skipped_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_bomb(bomb)
    assert bomb.stat().st_size < 50_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(bomb) as img:
        assert img.size == (10_000, 10_000)  # a real image: it would decode without the check
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skipped quietly: the epoch's skip count is the warning
        assert decode_image(bomb, 16, 3) is None


def test_a_folder_full_of_hostile_files_trains_and_counts_them(image_folder, tmp_path, capsys, monkeypatch):
    bad = image_folder / "class_0"
    good_jpeg = bad / "good.jpg"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(good_jpeg, quality=90)
    (bad / "truncated.jpg").write_bytes(good_jpeg.read_bytes()[:300])
    png = (image_folder / "class_1" / "img_0.png").read_bytes()
    (bad / "truncated.png").write_bytes(png[: len(png) // 3])
    (bad / "empty.png").write_bytes(b"")
    (bad / "notes.jpg").write_text("these are my notes, not a picture")
    (bad / "page.png").write_text("<html><body>404</body></html>")
    _png_bomb(bad / "bomb.png")
    locked = bad / "locked.png"
    locked.write_bytes(png)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads any file: refuse it the way the OS refuses other users
        original = Path.read_bytes

        def read_unless_locked(path):
            if str(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return original(path)

        monkeypatch.setattr(Path, "read_bytes", read_unless_locked)
    converted = image_folder / "class_2"
    Image.fromarray(np.full((20, 20), 50_000, np.uint16)).save(converted / "deep.png")
    Image.new("P", (24, 24), 3).save(converted / "palette.png")
    Image.new("RGBA", (24, 24), (10, 200, 30, 128)).save(converted / "alpha.png")
    Image.new("L", (24, 24), 99).save(converted / "grey.png")

    # One batch an epoch; every file is read (the held-out test split would otherwise hide some of them).
    extra = ["trainer.epochs=2", "trainer.max_steps=100", "trainer.batch_size=64", "data.pretrain_on_test=true"]
    args = ["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path), *extra]
    assert main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2 and all("skipped 7 unreadable image file(s)" in w for w in warnings), warnings
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 14 and metrics["images_seen"] == 2 * (36 + 1 + 4)


def test_the_count_of_unreadable_files_survives_a_resume_inside_an_epoch(image_folder, tmp_path, monkeypatch):
    from ssl_pretrain.utils.files import load_checkpoint

    from ..helpers import interrupt_after_checkpoint

    for i in range(12):
        (image_folder / "class_0" / f"broken_{i}.png").write_bytes(b"not a png")
    extra = ["trainer.epochs=1", "trainer.max_steps=100", "trainer.batch_size=8", "data.pretrain_on_test=true"]

    def pretrain(name: str, *more: str) -> int:
        args = folder_overrides(image_folder, tmp_path, name)
        return main(["pretrain", "-c", "configs/fashion_mnist/dae.yaml", *args, *extra, *more])

    assert pretrain("straight") == 0
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, step=2)
        assert pretrain("resumed") == 130  # stopped as by Ctrl-C right after the step-2 checkpoint
    saved = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert saved["step"] == 2 and saved["epoch_skipped_per_rank"][0], "broken files among the first two batches"
    assert pretrain("resumed", "--resume") == 0
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed["skipped_images"] == straight["skipped_images"] == 12


def test_a_malicious_encoder_file_is_refused_without_running_it(image_folder, tmp_path, capsys):
    import torch

    evil = tmp_path / "encoder.pt"
    torch.save({"encoder.weight": _Exploit()}, evil)
    args = ["probe", "-c", "configs/fashion_mnist/dae.yaml", *folder_overrides(image_folder, tmp_path)]
    assert main([*args, f"evaluation.encoder={evil}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was refused" in err[0] and str(evil) in err[0]
    assert not os.path.exists("/tmp/ssl_pretrain_pwned_by_encoder")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("pickle", "was refused"),
        ("truncate", "is truncated or not a PyTorch file"),
        ("task", "does not match the configured model (small_resnet + RotationPrediction)"),
    ],
)
def test_a_bad_checkpoint_on_resume_is_one_line_and_left_alone(image_folder, tmp_path, capsys, damage, message):
    import torch

    def pretrain(config: str, *extra: str) -> int:
        return main(
            [
                "pretrain",
                "-c",
                f"configs/fashion_mnist/{config}.yaml",
                *folder_overrides(image_folder, tmp_path),
                *extra,
            ]
        )

    assert pretrain("dae") == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    if damage == "pickle":
        torch.save({"model": _Exploit()}, ckpt)
    elif damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert pretrain("rotation" if damage == "task" else "dae", "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert ckpt.read_bytes() == before
    assert not os.path.exists("/tmp/ssl_pretrain_pwned_by_encoder")
