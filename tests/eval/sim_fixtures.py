"""A tiny checkpoint trained for a few steps on simulator episodes, shared by the evaluation tests.

Test modules import these fixtures by name (`from sim_fixtures import ...`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# the root conftest by path: another folder's conftest.py may shadow the module name `conftest`
_spec = importlib.util.spec_from_file_location("_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
make_tiny_config = _root.make_tiny_config


@pytest.fixture(scope="session")
def sim_episodes(tmp_path_factory) -> Path:
    from helpers import build_once
    from robovlms_mobile.sim.expert import write_expert_episodes

    def build(out: Path) -> Path:
        write_expert_episodes(out, 6, seed=0, frame_size=(36, 64))
        return out

    return build_once(tmp_path_factory, "sim-episodes", build)  # once per run, whichever module asks first


@pytest.fixture(scope="session")
def sim_checkpoint(base_config, tiny_model_dir, sim_episodes, tmp_path_factory) -> Path:
    from helpers import build_once
    from robovlms_mobile.train.launcher import train

    def build(out: Path) -> Path:
        cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, out)
        return Path(train(cfg, output_dir=out / "run", max_steps=2, progress=False)["last_checkpoint"])

    return build_once(tmp_path_factory, "sim-checkpoint", build)
