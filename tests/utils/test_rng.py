"""Which CUDA generator a run's RNG state holds: the run's own device's (checked without a GPU)."""

import torch

from ssl_pretrain.utils import rng


def test_the_cuda_state_of_the_runs_device_is_saved_and_restored(monkeypatch):
    read, written = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": read.append(device) or torch.zeros(4))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": written.append(device))
    state = rng.rng_state(torch.device("cuda", 1))
    rng.set_rng_state(state, torch.device("cuda", 1))
    assert read == [1] and written == [1], "device=cuda:1 without torchrun: cuda:1's generator, not cuda:0's"
    rng.set_rng_state(rng.rng_state(torch.device("cpu")), torch.device("cpu"))
    assert read[-1] == "cuda" and written[-1] == "cuda", "no CUDA device of its own: the current one"
