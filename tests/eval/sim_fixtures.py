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


_made: dict[str, Path] = {}  # each importing test module gets its own fixture object: build once per session


@pytest.fixture(scope="session")
def sim_episodes(tmp_path_factory) -> Path:
    from robovlms_mobile.sim.expert import write_expert_episodes

    if "episodes" not in _made:
        _made["episodes"] = tmp_path_factory.mktemp("sim-episodes")
        write_expert_episodes(_made["episodes"], 6, seed=0, frame_size=(36, 64))
    return _made["episodes"]


@pytest.fixture(scope="session")
def sim_checkpoint(base_config, tiny_model_dir, sim_episodes, tmp_path_factory) -> Path:
    from robovlms_mobile.launcher import train

    if "checkpoint" not in _made:
        out = tmp_path_factory.mktemp("sim-run")
        cfg = make_tiny_config(base_config, tiny_model_dir, sim_episodes, out)
        _made["checkpoint"] = Path(train(cfg, output_dir=out / "run", max_steps=2, progress=False)["last_checkpoint"])
    return _made["checkpoint"]
