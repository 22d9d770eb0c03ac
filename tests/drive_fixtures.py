"""Fixtures for the runtime / server / ROS tests: one tiny trained checkpoint per test session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def _make_tiny_config():
    # by path: with conftest.py files in sub-folders, the module name "conftest" is ambiguous
    spec = importlib.util.spec_from_file_location("_tests_root_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_config


@pytest.fixture(scope="session")
def tiny_checkpoint(base_config, tiny_model_dir, episodes_dir, tmp_path_factory) -> Path:
    """A plugin checkpoint after 2 training steps on the tiny model (built once, shared by every test dir)."""
    from helpers import build_once

    def build(out: Path) -> Path:
        from robovlms_mobile.train.launcher import train

        cfg = _make_tiny_config()(base_config, tiny_model_dir, episodes_dir, out)
        train(cfg, output_dir=out / "run", max_steps=2, progress=False)
        return out / "run" / "last.ckpt"

    return build_once(tmp_path_factory, "drive-checkpoint", build)


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    """12 RGB uint8 frames (12, 72, 128, 3) of one synthetic episode."""
    from robovlms_mobile.data.synthetic import Scenario, make_episode

    return make_episode(Scenario(side="left"), seed=3, frame_size=(72, 128), length=12).images
