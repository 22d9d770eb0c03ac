"""Real size on CPU: a 1-step rehearsal, then streaming vs whole-window inference, then bf16 and int8.

1. `rehearse` (robovlms_mobile/rehearse.py) on configs/mobile_vla_lora.json: Kosmos-2 at its
   published architecture with random weights, 1 training step, checkpoint save + reload.
2. On the reloaded model: per-query latency of the streaming runtime (`MobileVLAPolicy.predict`:
   the newest frame through Kosmos-2, the LSTM head over the window of cached features) against
   re-encoding the whole 8-frame window per query, as the original server did
   (`forward_continuous` on (1, 8, 3, 224, 224)). Queries alternate between the two.
3. CPU inference in bf16 (weights cast + autocast) and dynamic int8 (torch.ao `quantize_dynamic`
   on every nn.Linear except the LoRA adapters), each as a speed ratio over fp32 streaming and
   the max abs difference of the velocity chunk (m/s) against fp32 on the same frames.

Random weights: the timings are those of the real architecture; the output differences are
those of a random model and say nothing about a trained one's accuracy.

Last line: `step_s= peak_rss_gb= ckpt_mb= stream_over_window= int8_over_fp32=` (times on this
machine; goal stream_over_window <= 0.2). `--tiny` runs everything on the tiny Kosmos-2.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")
INSTRUCTION = "go around the box on the left and stop in front of the bottle"


def frames(n: int) -> np.ndarray:
    """(n, 144, 256, 3) RGB frames of one synthetic episode."""
    from robovlms_mobile.data.synthetic import Scenario, make_episode

    return make_episode(Scenario(side="left"), seed=0, frame_size=(144, 256), length=max(n, 18)).images[:n]


def make_policy(module, info):
    """The runtime's streaming policy around an already loaded module."""
    from robovlms_mobile.runtime.policy import MobileVLAPolicy

    return MobileVLAPolicy(module, max_speed=info["action_scale"]["max_speed"], prompt_template=info["prompt"]["template"])


def stream(policy, clip: np.ndarray, autocast: torch.dtype | None = None) -> tuple[list[float], np.ndarray]:
    """Feed `clip` through a fresh episode: (seconds per query after the first, chunks (n, chunk, 2))."""
    episode, times, chunks = policy.new_episode(), [], []
    for i, frame in enumerate(clip):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            chunks.append(policy.predict(frame, INSTRUCTION, episode))
        if i:
            times.append(time.perf_counter() - start)
    return times, np.stack(chunks)


def window_query(policy, window: np.ndarray) -> float:
    """One query as the original server did it: the whole window through Kosmos-2 + the head (seconds)."""
    from einops import rearrange

    from robovlms_mobile.data.prompt import encode_prompts
    from robovlms_mobile.data.transforms import preprocess_frames

    start = time.perf_counter()
    ids, mask = encode_prompts(policy.tokenizer, [INSTRUCTION], policy.prompt_template)
    pixels = rearrange(preprocess_frames(window, policy.image_size), "(b t) c h w -> b t c h w", b=1)  # (1, W, 3, S, S)
    with torch.inference_mode():
        velocities, _ = policy.model.forward_continuous(pixels, ids, attention_mask=mask, mode="inference")
    assert velocities.shape[:2] == (1, len(window)), tuple(velocities.shape)
    return time.perf_counter() - start


def quantize_int8(module) -> int:
    """Dynamic int8 on every nn.Linear of the model except LoRA adapters, in place; returns how many."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    names = {name: default_dynamic_qconfig for name, m in module.model.named_modules()
             if isinstance(m, torch.nn.Linear) and ".lora_" not in name}
    quantize_dynamic(module.model, names, dtype=torch.qint8, inplace=True)
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Kosmos-2 (a quick check of the benchmark itself)")
    parser.add_argument("--config", default=str(REPO / "configs" / "mobile_vla_lora.json"))
    parser.add_argument("--model-dir", help="random full-size Kosmos-2 folder (see `robovlms-mobile rehearse --help`)")
    parser.add_argument("--queries", type=int, default=3, help="timed streaming queries per dtype (default: %(default)s)")
    parser.add_argument("--window-queries", type=int, default=2, help="timed whole-window queries (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--inference-only", choices=("fp32", "bf16", "fp32+int8"), help="no rehearsal: "
                        "streaming vs whole window on the untrained model in this dtype (bf16 halves the memory); "
                        "fp32+int8 then quantizes that model in place and streams the same frames again")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    import os

    os.chdir(REPO)  # configs name their parent relative to the repository
    from robovlms_mobile.rehearse import format_report, rehearse
    from robovlms_mobile.runtime.loader import load_for_inference

    if args.inference_only:
        return inference_only(args)
    work = tempfile.TemporaryDirectory(prefix="realsize-")
    # gradient checkpointing on: without it one real-size step passes 14 GiB RSS (docs/realsize.md)
    r = rehearse(args.config, steps=1, tiny=args.tiny, model_dir=args.model_dir, checkpointing=False, keep_model=True,
                 work_dir=work.name, gradient_checkpointing=True, log=lambda *_: None)
    module, info = r.pop("module"), r.pop("info")
    print(format_report(r))
    policy = make_policy(module, info)
    window = int(module.configs["window_size"])
    clip = frames(window + max(args.queries, args.window_queries) + 1)

    # streaming vs whole window, fp32, alternating so machine noise hits both alike
    t_stream, t_window = [], []
    episode = policy.new_episode()
    for frame in clip[:window]:  # fill the head's window (the first query also warms up)
        policy.predict(frame, INSTRUCTION, episode)
    for i in range(max(args.queries, args.window_queries)):
        if i < args.queries:
            start = time.perf_counter()
            policy.predict(clip[window + i], INSTRUCTION, episode)
            t_stream.append(time.perf_counter() - start)
        if i < args.window_queries:
            t_window.append(window_query(policy, clip[i + 1: i + 1 + window]))
    s_fp32, s_window = statistics.median(t_stream), statistics.median(t_window)
    print(f"fp32 per query: streaming {s_fp32:.2f} s (one new frame through Kosmos-2), whole {window}-frame window "
          f"{s_window:.2f} s (original server), medians of {len(t_stream)} / {len(t_window)} on this machine, "
          f"torch threads {torch.get_num_threads()}")

    probe = clip[: args.queries + 1]
    _, ref = stream(policy, probe)
    module.to(torch.bfloat16)
    t_bf16, out_bf16 = stream(policy, probe, autocast=torch.bfloat16)
    del policy, module
    gc.collect()
    module, info = load_for_inference(r["checkpoint"], r["backbone_dir"])
    n_int8 = quantize_int8(module)
    t_int8, out_int8 = stream(make_policy(module, info), probe)
    s_bf16, s_int8 = statistics.median(t_bf16), statistics.median(t_int8)
    scale = float(np.abs(ref).max())
    print(f"bf16 streaming {s_bf16:.2f} s/query (bf16_over_fp32={s_bf16 / s_fp32:.3f}), max abs chunk difference "
          f"{np.abs(out_bf16 - ref).max():.4f} m/s (fp32 outputs up to {scale:.3f} m/s)")
    print(f"int8 streaming {s_int8:.2f} s/query ({n_int8} Linear layers dynamic int8; int8_over_fp32="
          f"{s_int8 / s_fp32:.3f}), max abs chunk difference {np.abs(out_int8 - ref).max():.4f} m/s")
    print(f"{'tiny' if args.tiny else 'real size'}, CPU, random weights; times measured on this machine")
    work.cleanup()
    print(f"step_s={r['step_s']:.2f} peak_rss_gb={r['peak_rss_gb']:.2f} ckpt_mb={r['ckpt_bytes'] / 2**20:.1f} "
          f"stream_over_window={s_fp32 / s_window:.3f} int8_over_fp32={s_int8 / s_fp32:.3f}")


def inference_only(args) -> None:
    """Streaming vs whole-window latency on the untrained model (no training, no checkpoint) in one dtype."""
    import contextlib
    import io

    from robovlms_mobile.config import load_config
    from robovlms_mobile.memory import GIB, MemoryGuard
    from robovlms_mobile.rehearse import prepare_backbone, rehearsal_config
    from robovlms_mobile.registry import register
    from robovlms_mobile.trainer import MobileVLATrainer

    register()
    with tempfile.TemporaryDirectory(prefix="realsize-") as tmp, MemoryGuard(12 * GIB, what="realsize"):
        configs = load_config(args.config)
        backbone = prepare_backbone(tiny=args.tiny, model_dir=args.model_dir, work=Path(tmp))
        cfg = rehearsal_config(configs, backbone, Path(tmp), Path(tmp) / "run", steps=1, batch_size=1)
        with contextlib.redirect_stdout(io.StringIO()):
            module = MobileVLATrainer(cfg)
        module.requires_grad_(False)
        module.eval()
        dtype = torch.bfloat16 if args.inference_only == "bf16" else None
        if dtype is not None:
            module.to(dtype)
        info = {"action_scale": {"max_speed": configs["train_dataset"].get("max_speed", 1.15)},
                "prompt": {"template": configs["train_dataset"]["prompt_template"]}}
        policy = make_policy(module, info)
        window = int(cfg["window_size"])
        clip = frames(window + args.queries + 1)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            t_stream, ref = stream(policy, clip[: args.queries + 1])
            t_window = [window_query(policy, clip[i: i + window]) for i in range(args.window_queries)]
        if args.inference_only == "fp32+int8":
            n = quantize_int8(module)
            t_int8, out = stream(make_policy(module, info), clip[: args.queries + 1])
            q = statistics.median(t_int8)
            print(f"int8 streaming {q:.2f} s/query ({n} Linear layers dynamic int8) vs fp32 "
                  f"{statistics.median(t_stream):.2f} s: int8_over_fp32={q / statistics.median(t_stream):.3f}; max abs "
                  f"chunk difference {np.abs(out - ref).max():.4f} m/s (fp32 outputs up to {np.abs(ref).max():.3f} m/s)")
    s, w = statistics.median(t_stream), statistics.median(t_window)
    print(f"{args.inference_only} per query ({'tiny' if args.tiny else 'real size'}, untrained, CPU, torch threads "
          f"{torch.get_num_threads()}): streaming {s:.2f} s, whole {window}-frame window {w:.2f} s; medians of "
          f"{len(t_stream)} / {len(t_window)} on this machine")
    print(f"stream_over_window={s / w:.3f}")


if __name__ == "__main__":
    main()
