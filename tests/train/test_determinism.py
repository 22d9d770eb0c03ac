"""A CPU training run is repeatable for a seed: same seed -> identical weights, another seed -> different."""

from __future__ import annotations

import torch

from robovlms_mobile.checkpoint.format import load_checkpoint
from robovlms_mobile.train.launcher import train


def _weights(config: dict, out, seed: int) -> dict[str, torch.Tensor]:
    config = dict(config, seed=seed)
    return load_checkpoint(train(config, output_dir=out, max_steps=3, progress=False)["last_checkpoint"])["state_dict"]


def test_same_seed_same_weights_with_mirror_and_workers(tiny_config, tmp_path):
    assert tiny_config["trainer"]["deterministic"] is True and tiny_config["train_dataset"]["mirror"] > 0
    assert tiny_config["num_workers"] >= 1  # augmentation draws happen in a DataLoader worker
    a, b = _weights(tiny_config, tmp_path / "a", 7), _weights(tiny_config, tmp_path / "b", 7)
    c = _weights(tiny_config, tmp_path / "c", 8)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
