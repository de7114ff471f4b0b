"""Cached-feature linear probe vs scikit-learn's LogisticRegression on the same frozen features.

    python benchmarks/probe_speed.py --run RUN_DIR [--pool 2] [--smoke]

Features are extracted once by the framework (``probe.pool=2`` on a 128-channel encoder gives 512
values per image). Both fit the same objective on the same standardised features: mean cross-entropy +
``l2 / 2 ||W||^2`` (ours, L-BFGS in torch) = scikit-learn's lbfgs with ``C = 1 / (l2 N)``, up to scale.
scikit-learn is a benchmark-only dependency (``pip install scikit-learn``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from common import report, run_main  # noqa: E402

from ssl_pretrain.build import resolve_device  # noqa: E402
from ssl_pretrain.config import listed, load_config  # noqa: E402
from ssl_pretrain.data import DataInfo, EpochBatchSampler, make_loader, to_device_float  # noqa: E402
from ssl_pretrain.evaluation.features.feature_view import FeatureView  # noqa: E402
from ssl_pretrain.evaluation.features.logistic import fit_logistic_regression, top1  # noqa: E402
from ssl_pretrain.evaluation.features.method import frozen_features  # noqa: E402
from ssl_pretrain.evaluation.shared.encoder_source import load_encoder  # noqa: E402
from ssl_pretrain.evaluation.shared.metrics import percent_correct  # noqa: E402
from ssl_pretrain.evaluation.shared.splits import labeled_splits  # noqa: E402


def sklearn_probe(train_x, train_y, test_x, test_y, l2: float, max_iter: int) -> tuple[float, float, int]:
    """``(seconds, test top-1, iterations)`` of scikit-learn's lbfgs on the same standardised features."""
    from sklearn.linear_model import LogisticRegression

    x, t = train_x.double().numpy(), test_x.double().numpy()
    mean, std = x.mean(axis=0), np.clip(x.std(axis=0, ddof=1), 1e-6, None)
    x, t = (x - mean) / std, (t - mean) / std
    model = LogisticRegression(C=1.0 / (l2 * len(x)), solver="lbfgs", max_iter=max_iter)
    start = time.perf_counter()
    model.fit(x, train_y.numpy())
    seconds = time.perf_counter() - start
    return seconds, 100.0 * float((model.predict(t) == test_y.numpy()).mean()), int(model.n_iter_.max())


def reencoding_probe(view, train, info, device, test_x, test_y, epochs: int, classes: int) -> tuple[float, float]:
    """``(seconds, test top-1)`` of a linear head trained with Adam (lr 1e-3, batch 256) on features computed
    from the images again every epoch: what a probe without a feature cache costs."""
    torch.manual_seed(0)
    view.eval()
    head = torch.nn.Linear(test_x.shape[1], classes).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        for batch in make_loader(train, EpochBatchSampler(len(train), 256, seed=epoch), 0, False):
            with torch.no_grad():
                features = view.forward_layers(to_device_float(batch.images, info, device))[view.layer]
            loss = F.cross_entropy(head(features), batch.labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = head(test_x.to(device)).argmax(1).cpu()
    return seconds, percent_correct(predicted, test_y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--pool", type=int, default=2)
    parser.add_argument("--sklearn-max-iter", type=int, default=1000)
    parser.add_argument("--reencode-epochs", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    smoke = ["evaluation.train_limit=300"] if args.smoke else []
    config = load_config(args.run / "config.yaml", [f"evaluation.encoder={args.run}", *smoke, *args.overrides])
    device = resolve_device(config.device)
    encoder = load_encoder(args.run)
    info = DataInfo.from_spec(encoder.spec)
    train, test = labeled_splits(config.data, config.seed, config.evaluation.train_limit)
    view = FeatureView(encoder, args.pool)
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = frozen_features(view, train, test, info, device, config.evaluation.batch_size)
    extract = time.perf_counter() - start
    train_x, test_x = train_x[view.layer], test_x[view.layer]
    l2, iters = listed(config.probe.l2)[0], config.probe.max_iter

    start = time.perf_counter()
    classes = 10 if not args.smoke else int(train_y.max()) + 1
    ours = fit_logistic_regression(train_x, train_y, classes, l2, iters)
    ours_seconds = time.perf_counter() - start
    ours_top1 = top1(ours, test_x, test_y)
    sk_seconds, sk_top1, sk_iters = sklearn_probe(train_x, train_y, test_x, test_y, l2, args.sklearn_max_iter)
    epochs = 1 if args.smoke else args.reencode_epochs
    re_seconds, re_top1 = reencoding_probe(view, train, info, device, test_x, test_y, epochs, classes)
    table = (
        f"{len(train_x)} x {train_x.shape[1]} training features ({view.pooling}), {len(test_x)} test; "
        f"l2 = {l2} (scikit-learn C = {1 / (l2 * len(train_x)):.4g}); feature extraction {extract:.1f} s, once.\n\n"
        "| probe | fit time | test top-1 |\n|---|---|---|\n"
        f"| ssl_pretrain (torch L-BFGS, float32, {iters} iterations) | {ours_seconds:.1f} s | {ours_top1:.2f}% |\n"
        f"| scikit-learn LogisticRegression (lbfgs, float64, {sk_iters} iterations) | {sk_seconds:.1f} s | "
        f"{sk_top1:.2f}% |\n\n"
        f"Speed-up: **{sk_seconds / ours_seconds:.1f}x**; accuracy difference {ours_top1 - sk_top1:+.2f} points.\n\n"
        "Against re-encoding the images every probe epoch (no feature cache), whole cost including extraction:\n\n"
        "| probe | time | test top-1 |\n|---|---|---|\n"
        f"| cached: extract once + L-BFGS | {extract + ours_seconds:.1f} s | {ours_top1:.2f}% |\n"
        f"| re-encoding, {epochs} epochs of Adam (lr 1e-3, batch 256) | {re_seconds:.1f} s | {re_top1:.2f}% |\n\n"
        f"Re-encoding costs **{re_seconds / (extract + ours_seconds):.1f}x** the cached probe's time."
    )
    report(
        "Cached-feature probe vs scikit-learn (benchmarks/probe_speed.py)", f"{table}\n\nRun: {args.run}", args.smoke
    )


if __name__ == "__main__":
    run_main(main)
