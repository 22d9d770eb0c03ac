"""The lab's original training configs train through `robovlms-mobile train`, unchanged but for paths and hardware."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORIGINALS = REPO / "tests" / "fixtures" / "original_configs"
PATH_KEYS = ("model_path", "model_config", "output_root", "log_root", "cache_root")


def localise(original: dict, model_dir: Path, data_dir: Path, out_dir: Path) -> dict:
    """Replace only paths (backbone, data, outputs) and hardware (CPU, fp32); every other key stays as the lab wrote it."""
    cfg = json.loads(json.dumps(original))
    cfg["model_path"], cfg["model_config"] = str(model_dir), str(model_dir / "config.json")
    cfg["vlm"]["pretrained_model_name_or_path"] = cfg["tokenizer"]["pretrained_model_name_or_path"] = str(model_dir)
    cfg["output_root"], cfg["log_root"], cfg["cache_root"] = (str(out_dir / k) for k in ("runs", "logs", "cache"))
    for name in ("train_dataset", "val_dataset"):
        cfg[name]["data_dir"] = str(data_dir)
    cfg["trainer"].update(accelerator="cpu", precision="32")
    return cfg


def lab_named_episodes(episodes_dir: Path, out: Path) -> Path:
    """The fixture episodes under names the lab's globs select (episode_20251114_*)."""
    out.mkdir()
    for i, src in enumerate(sorted(episodes_dir.glob("*.h5"))):
        tag = src.stem.split("_", 3)[3]
        shutil.copy(src, out / f"episode_20251114_{120000 + i:06d}_{tag}.h5")
    return out


@pytest.mark.parametrize("name", ["mobile_vla_kosmos2_frozen_lora_leftright_20251204.json", "mobile_vla_20251114_lora.json"])
def test_original_config_trains_one_step_in_process(name, tiny_model_dir, episodes_dir, tmp_path, capsys, monkeypatch):
    """The fast version of the slow CLI test below: `cli.main(["train", ...])` in this process, 1 step."""
    from robovlms_mobile.cli import main

    original = json.loads((ORIGINALS / name).read_text())
    cfg = localise(original, tiny_model_dir, lab_named_episodes(episodes_dir, tmp_path / "data"), tmp_path)
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["train", str(path), "--max-steps", "1", "--no-progress"]) == 0, capsys.readouterr().err[-3000:]
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{\n"):])
    assert result["global_step"] == 1 and Path(result["last_checkpoint"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobile_vla_kosmos2_frozen_lora_leftright_20251204.json", "mobile_vla_20251114_lora.json"])
def test_original_config_trains_through_the_cli(name, tiny_model_dir, episodes_dir, tmp_path):
    original = json.loads((ORIGINALS / name).read_text())
    cfg = localise(original, tiny_model_dir, lab_named_episodes(episodes_dir, tmp_path / "data"), tmp_path)
    changed = {k for k in original if original[k] != cfg[k]}
    assert changed <= {*PATH_KEYS, "vlm", "tokenizer", "train_dataset", "val_dataset", "trainer"}
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "robovlms_mobile.cli", "train", str(path), "--max-steps", "2", "--no-progress"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{\n"):])
    assert result["global_step"] == 2 and Path(result["last_checkpoint"]).is_file()
    notices = [line for line in proc.stderr.splitlines() if ": notice: " in line]
    assert any("'train_dataset.episode_pattern' -> 'train_dataset.pattern'" in n for n in notices)
    assert sum("no effect here:" in n for n in notices) == 1
    if name == "mobile_vla_20251114_lora.json":
        assert sum("'act_head' window_size = 1, fwd_pred_next_n = 1 differ from the top level; using window_size = 8, "
                   "fwd_pred_next_n = 10" in n for n in notices) == 1
