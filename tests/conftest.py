"""Shared fixtures: a tiny Kosmos-2, generated episodes, configs pointing at them, upstream's checkout."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow end-to-end check: run with --run-slow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from helpers import build_once
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    return build_once(tmp_path_factory, "tiny-kosmos2", lambda out: build_tiny_kosmos2(out, seed=0))


@pytest.fixture(scope="session")
def episodes_dir(tmp_path_factory) -> Path:
    from helpers import build_once
    from robovlms_mobile.data.synthetic import generate_episodes

    def build(out: Path) -> Path:
        generate_episodes(out, 10, seed=0, frame_size=(72, 128))
        return out

    return build_once(tmp_path_factory, "episodes", build)


@pytest.fixture(scope="session")
def base_config() -> dict:
    from robovlms_mobile.config import load_config

    cwd = os.getcwd()
    os.chdir(REPO)  # upstream resolves `parent` from the cwd
    try:
        return load_config(REPO / "configs" / "tiny_cpu.json")
    finally:
        os.chdir(cwd)


@pytest.fixture
def tiny_config(base_config, tiny_model_dir, episodes_dir, tmp_path) -> dict:
    """The tiny CPU config with every path pointing at session fixtures / tmp_path."""
    return make_tiny_config(base_config, tiny_model_dir, episodes_dir, tmp_path)


def make_tiny_config(base_config: dict, model_dir: Path, data_dir: Path, out_dir: Path) -> dict:
    """Copy of the tiny config, small and fast, with absolute paths."""
    cfg = copy.deepcopy(base_config)
    cfg.pop("parent", None)
    cfg.pop("sim_eval", None)  # the demo's closed loop during training; tests that want it set it
    for key in ("model_path",):
        cfg[key] = str(model_dir)
    cfg["model_config"] = str(model_dir / "config.json")
    cfg["vlm"]["pretrained_model_name_or_path"] = str(model_dir)
    cfg["tokenizer"]["pretrained_model_name_or_path"] = str(model_dir)
    for name in ("train_dataset", "val_dataset"):
        cfg[name]["data_dir"] = str(data_dir)
        cfg[name]["val_ratio"] = 0.2
    cfg["output_root"] = str(out_dir / "checkpoints")
    cfg["log_root"] = str(out_dir / "logs")
    cfg["cache_root"] = str(out_dir / "cache")
    cfg["batch_size"] = 2
    cfg["act_head"]["hidden_size"] = 32
    cfg["trainer"].update(max_epochs=1, max_steps=-1, enable_model_summary=False)
    return cfg


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    """A checkout of upstream RoboVLMs at UPSTREAM_VERSION (main.py, configs, tools/)."""
    path = Path(os.environ.get("ROBOVLMS_UPSTREAM_DIR", REPO / ".cache" / "RoboVLMs")).resolve()
    if not (path / "main.py").is_file():
        subprocess.run(["make", "-C", str(REPO), "upstream-checkout", f"UPSTREAM_DIR={path}"], check=True)
    pinned = (REPO / "UPSTREAM_VERSION").read_text().strip()
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert head == pinned, f"upstream checkout {path} is at {head}, expected {pinned}"
    return path
