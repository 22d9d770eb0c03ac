"""Contract (b): upstream's own `main.experiment()` trains the 2-DOF policy, checkpoints, resumes."""

from __future__ import annotations

import json

import torch

from helpers import free_port, last_json_line, run_python

# What upstream's `if __name__ == "__main__"` does, except the process group: NCCL cannot start
# on a CPU-only machine, so this initialises gloo (spec §3) and then calls experiment() unchanged.
RUN_MAIN = r"""
import glob, json, os, sys
upstream, config_path, port = sys.argv[1:4]
sys.path.insert(0, upstream)
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
import torch.distributed as dist
import main
sys.argv = ["main.py", config_path]
args = main.parse_args()
configs = main.update_configs(main.load_config(args["config"]), args)
dist.init_process_group(backend="gloo", rank=0, world_size=1)
captured = {}
orig_fit = main.Trainer.fit
def fit(self, model, *a, **k):
    captured["model"] = type(model).__name__
    captured["head"] = type(model.model.act_head).__name__
    out = orig_fit(self, model, *a, **k)
    captured["global_step"] = self.global_step
    captured["metrics"] = {k: float(v) for k, v in self.callback_metrics.items()}
    return out
main.Trainer.fit = fit
main.experiment(variant=configs)
captured["checkpoints"] = sorted(glob.glob(os.path.join(configs["output_dir"], "*.ckpt")))
print(json.dumps(captured))
"""


def _write(cfg: dict, path) -> str:
    path.write_text(json.dumps(cfg, indent=2))
    return str(path)


def test_upstream_main_trains_checkpoints_and_resumes(tiny_config, upstream_dir, tmp_path):
    cfg = tiny_config
    cfg["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    first = last_json_line(run_python(RUN_MAIN, str(upstream_dir), _write(cfg, tmp_path / "run1.json"), str(free_port()),
                                      cwd=tmp_path).stdout)
    assert first["model"] == "MobileVLATrainer" and first["head"] == "MobileVLALSTMDecoder"
    assert first["global_step"] == 2
    assert torch.isfinite(torch.tensor(first["metrics"]["train_loss"]))
    assert torch.isfinite(torch.tensor(first["metrics"]["val_loss"]))  # one validation batch ran
    [ckpt_path] = first["checkpoints"]
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert "mobile_vla" in ckpt and ckpt["mobile_vla"]["action_scale"]["max_speed"] == 1.15
    frozen = ("vision_model",) + (() if cfg["train_setup"].get("train_text_embedding") else ("embed_tokens",))
    assert not any(f in k for f in frozen for k in ckpt["state_dict"]), "frozen backbone saved"

    cfg["resume"] = ckpt_path
    cfg["trainer"]["max_epochs"] = 2
    second = last_json_line(run_python(RUN_MAIN, str(upstream_dir), _write(cfg, tmp_path / "run2.json"), str(free_port()),
                                       cwd=tmp_path).stdout)
    assert second["global_step"] == 4, "resume should continue from step 2 for one more epoch"
    assert torch.isfinite(torch.tensor(second["metrics"]["train_loss"]))
