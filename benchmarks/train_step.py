"""One training step: the 2-DOF pipeline vs upstream's 7-DOF BaseTrainer + LSTMDecoder.

Same tiny Kosmos-2, same LoRA adapters, same decoder width/depth, same images and prompt; only
the trainer (`_process_batch`, loss) and the head differ. Steps alternate between the two in
one process and the medians are compared, so machine noise hits both alike.

The 2-DOF step is `MobileVLATrainer.training_step`, the plugin's real path: its `_process_batch`
moves the batch to the module's device, so it runs with or without a GPU. Upstream's
`BaseTrainer._process_batch` calls `.cuda()` on every tensor (spec §3), so without a GPU the
7-DOF step is the rest of upstream's `training_step` (`model.forward` + `_get_loss`) on the
tensors `_process_batch` would hand it, as tests/test_contract.py does; no torch method is
replaced. That leaves the 2-DOF side with the batch processing and logging the 7-DOF side skips,
so the ratio errs against the plugin.

Last line: `step_ratio=...` (2-DOF / 7-DOF median step time; goal <= 1.05)
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from _args import benchmark_parser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
warnings.filterwarnings("ignore")
ROUNDS, WARMUP = 15, 3


def build_pair(tmp: Path):
    from conftest import make_tiny_config
    from robovlms.train.base_trainer import BaseTrainer

    from robovlms_mobile.config import load_config
    from robovlms_mobile.data.synthetic import generate_episodes
    from robovlms_mobile.data.transforms import normalise_batch
    from robovlms_mobile.train.launcher import build_datamodule
    from robovlms_mobile.model.lora import apply_lora
    from robovlms_mobile.train.registry import register
    from robovlms_mobile.train.trainer import MobileVLATrainer

    register()
    base = load_config(REPO / "configs" / "tiny_cpu.json")
    generate_episodes(tmp / "e", 10, frame_size=(72, 128))
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    cfg = make_tiny_config(base, build_tiny_kosmos2(tmp / "m"), tmp / "e", tmp)
    cfg["act_head"].update(hidden_size=base["act_head"]["hidden_size"], num_layers=base["act_head"]["num_layers"])
    torch.manual_seed(0)
    mobile = MobileVLATrainer(cfg)

    cfg7 = copy.deepcopy(cfg)
    cfg7.pop("trainer_type")
    cfg7["train_setup"]["lora_enable"] = False
    cfg7["act_head"] = {"type": "LSTMDecoder", "action_dim": 7, "hidden_size": cfg["act_head"]["hidden_size"],
                        "num_layers": cfg["act_head"]["num_layers"], "down_sample": "none", "latent": 1,
                        "fwd_pred_next_n": 10, "window_size": 8, "action_space": "continuous", "with_history": True,
                        "history_type": "post"}
    torch.manual_seed(0)
    upstream = BaseTrainer.from_checkpoint(None, "torch", cfg7)
    apply_lora(upstream.model.backbone, cfg["train_setup"])

    batch = next(iter(build_datamodule(cfg, mobile).train_dataloader()))
    batch["rgb"] = normalise_batch(batch["rgb"])  # the loader's uint8, normalised once for both (upstream's _process_batch takes float)
    g = torch.Generator().manual_seed(0)
    b, t = batch["action"].shape[:2]
    action7 = torch.rand(b, t, 7, generator=g) * 2 - 1
    action7[..., -1] = (action7[..., -1] > 0).float()
    batch7 = {**batch, "action": action7, "action_chunck": action7.unfold(1, 10, 1).permute(0, 1, 3, 2),
              "data_source": "calvin_action"}
    return (mobile, batch), (upstream, batch7)


def upstream_loss(module, batch) -> torch.Tensor:
    """Upstream's 7-DOF training loss: `training_step` on a GPU, else its model.forward + _get_loss after `_process_batch`."""
    if torch.cuda.is_available():
        return module.training_step(batch, 0)
    window, chunk = module.configs["window_size"], batch["action_chunck"]  # chunk (B, W, C, 7)
    prediction = module.model.forward(batch["rgb"][:, :window], batch["text"], attention_mask=batch["text_mask"],
                                      action_labels=(chunk[..., :6], chunk[..., -1]), action_mask=batch["chunck_mask"],
                                      raw_text=batch.get("raw_text"), rel_state=batch.get("rel_state"),
                                      data_source=batch["data_source"])
    return module._get_loss(prediction)["loss"]


def make_step(module, batch, loss_fn):
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    module.train()

    def step() -> float:
        start = time.perf_counter()
        loss = loss_fn(module, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step, sum(p.numel() for p in params)


def main() -> None:
    global ROUNDS, WARMUP
    parser = benchmark_parser(__doc__)
    if parser.parse_args().smoke:
        ROUNDS, WARMUP = 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        (mobile, batch2), (upstream, batch7) = build_pair(Path(tmp))
        if torch.cuda.is_available():  # both on the GPU: upstream's _process_batch moves its batch there
            mobile, upstream = mobile.cuda(), upstream.cuda()
        step2, n2 = make_step(mobile, batch2, lambda module, batch: module.training_step(batch, 0))
        step7, n7 = make_step(upstream, batch7, upstream_loss)
        for _ in range(WARMUP):
            step2(), step7()
        t2, t7 = [], []
        for i in range(ROUNDS):
            order = (step2, step7) if i % 2 == 0 else (step7, step2)
            for fn in order:
                (t2 if fn is step2 else t7).append(fn())
    m2, m7 = statistics.median(t2), statistics.median(t7)
    print(f"batch: rgb {tuple(batch2['rgb'].shape)}; trainable params 2-DOF {n2:,} vs 7-DOF {n7:,}")
    print(f"median step: 2-DOF MobileVLATrainer {m2 * 1e3:.1f} ms, 7-DOF BaseTrainer+LSTMDecoder {m7 * 1e3:.1f} ms ({ROUNDS} rounds)")
    print(f"step_ratio={m2 / m7:.3f}")


if __name__ == "__main__":
    main()
