"""Real size on CPU: a 1-step rehearsal, then fp32 / bf16 / int8 streaming and the whole window, interleaved.

1. `rehearse` (robovlms_mobile/recipes/rehearse.py) on configs/mobile_vla_lora.json: Kosmos-2 at its
   published architecture with random weights, 1 training step, checkpoint save + reload through
   the runtime's loader (fp32). `--inference-only` skips it and builds the untrained model.
2. From that ONE fp32 model the runtime's precision code (`runtime/precision.py`,
   `precision_copy`, what `--dtype` uses) makes a bf16 copy (weights bfloat16 + autocast) and an
   int8 copy (dynamic int8 on every nn.Linear except the LoRA adapters; it shares the rest with
   the fp32 model), so fp32 + bf16 + int8 sit in memory together and never two fp32 copies.
3. Streaming queries (`MobileVLAPolicy.predict`: the newest frame through Kosmos-2, the LSTM head
   over the window of cached features) run round-robin fp32, bf16, int8, fp32 whole window, fp32,
   bf16, ... on the same frames, so machine noise hits every variant alike. The whole-window query
   is what the original server did per query: the 8-frame window re-encoded (`forward_continuous`
   on (1, 8, 3, 224, 224)). Each episode's window is first filled with copies of its first frame's
   features (the LSTM's cost does not depend on the values), which saves 7 warm-up queries per
   dtype at real size. The chunks of each dtype are compared with fp32's on the same frames.

Random weights: the timings are those of the real architecture; the output differences are
those of a random model and say nothing about a trained one's accuracy.

Last line, full mode: `step_s= peak_rss_gb= ckpt_mb= stream_over_window= int8_over_fp32= bf16_over_fp32=`
(times on this machine; goal stream_over_window <= 0.2; peak_rss_gb is the whole run's peak).
`--inference-only all|fp32|bf16|fp32+int8` ends with the ratios it has and `peak_rss_gb=`.
`--tiny` runs everything on the tiny Kosmos-2.
"""

from __future__ import annotations

import argparse
import gc
import os
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
MODES = {"all": ("fp32", "bf16", "int8"), "fp32": ("fp32",), "bf16": ("bf16",), "fp32+int8": ("fp32", "int8")}


def frames(n: int) -> np.ndarray:
    """(n, 144, 256, 3) RGB frames of one synthetic episode."""
    from robovlms_mobile.data.synthetic import Scenario, make_episode

    return make_episode(Scenario(side="left"), seed=0, frame_size=(144, 256), length=max(n, 18)).images[:n]


def make_policy(module, max_speed: float, template: str):
    """The runtime's streaming policy around an already loaded module."""
    from robovlms_mobile.runtime.policy import MobileVLAPolicy

    return MobileVLAPolicy(module, max_speed=max_speed, prompt_template=template)


def timed_predict(policy, frame: np.ndarray, episode) -> tuple[float, np.ndarray]:
    """(seconds, (chunk, 2) m/s) of one streaming query."""
    start = time.perf_counter()
    chunk = policy.predict(frame, INSTRUCTION, episode)
    return time.perf_counter() - start, chunk


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


def rss_gb() -> float:
    """This process's resident set size now (GiB)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def variants(module, dtypes: tuple[str, ...]) -> dict[str, object]:
    """{dtype: module} from one fp32 module, through the runtime's precision code; the RSS after each is printed."""
    from robovlms_mobile.runtime.precision import apply_precision, precision_copy

    gc.collect()
    if dtypes == ("bf16",):  # alone: converted in place, half the memory
        out = {"bf16": apply_precision(module, "bf16")}
    else:
        out = {"fp32": module}
        for dtype in dtypes[1:]:
            out[dtype] = precision_copy(module, dtype)
            gc.collect()
    names = [f"int8 ({m.int8_linear_layers} Linear layers int8)" if d == "int8" else d for d, m in out.items()]
    print(f"models resident: {', '.join(names)}; RSS {rss_gb():.2f} GiB", flush=True)
    return out


def compare(modules: dict[str, object], max_speed: float, template: str, queries: int, window_queries: int) -> dict:
    """Round-robin streaming queries over `modules` (+ the first one's whole window) on the same frames; figures."""
    policies = {d: make_policy(m, max_speed, template) for d, m in modules.items()}
    first = next(iter(policies))
    window = policies[first].window_size
    rounds = max(queries, window_queries)
    clip = frames(1 + rounds + window)
    episodes = {d: p.new_episode() for d, p in policies.items()}
    chunks: dict[str, list[np.ndarray]] = {d: [] for d in policies}
    times: dict[str, list[float]] = {d: [] for d in policies}
    t_window: list[float] = []
    for d, p in policies.items():  # warm-up query, then the window filled with copies of its features
        chunks[d].append(timed_predict(p, clip[0], episodes[d])[1])
        history = episodes[d].history
        history.extend([history[-1]] * (window - 1))
    for i in range(rounds):
        for d, p in policies.items():
            seconds, chunk = timed_predict(p, clip[1 + i], episodes[d])
            chunks[d].append(chunk)
            if i < queries:
                times[d].append(seconds)
        if i < window_queries:
            t_window.append(window_query(policies[first], clip[1 + i: 1 + i + window]))
    out = {"window": window, "first": first, "n": queries, "n_window": window_queries,
           "stream": {d: statistics.median(t) for d, t in times.items()}, "whole_window": statistics.median(t_window)}
    if "fp32" in chunks:
        ref = np.stack(chunks["fp32"])  # (rounds + 1, chunk, 2) m/s
        out["fp32_max"] = float(np.abs(ref).max())
        out["diff"] = {d: float(np.abs(np.stack(c) - ref).max()) for d, c in chunks.items() if d != "fp32"}
    return out


def report(r: dict, what: str) -> dict[str, float]:
    """Print the comparison; returns the ratios for the last line."""
    s, first = r["stream"], r["first"]
    per = ", ".join(f"{d} {v:.2f} s" for d, v in s.items())
    print(f"per query ({what}, CPU, torch threads {torch.get_num_threads()}): streaming {per}; whole "
          f"{r['window']}-frame window {first} {r['whole_window']:.2f} s (the original server's query); medians of "
          f"{r['n']} / {r['n_window']}, round-robin {', '.join(s)}, window on the same frames, on this machine")
    ratios = {"stream_over_window": s[first] / r["whole_window"]}
    for d in ("bf16", "int8"):
        if d in s and "fp32" in s:
            ratios[f"{d}_over_fp32"] = s[d] / s["fp32"]
            how = "weights bfloat16 + autocast" if d == "bf16" else "dynamic int8 Linear layers, LoRA adapters float"
            print(f"{d} ({how}): {d}_over_fp32={ratios[f'{d}_over_fp32']:.3f}, max abs chunk difference vs fp32 "
                  f"{r['diff'][d]:.4f} m/s on the same frames (fp32 outputs up to {r['fp32_max']:.3f} m/s)")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Kosmos-2 (a quick check of the benchmark itself)")
    parser.add_argument("--config", default=str(REPO / "configs" / "mobile_vla_lora.json"))
    parser.add_argument("--model-dir", help="random full-size Kosmos-2 folder (see `robovlms-mobile rehearse --help`)")
    parser.add_argument("--queries", type=int, default=3, help="timed streaming queries per dtype (default: %(default)s)")
    parser.add_argument("--window-queries", type=int, default=2, help="timed whole-window queries (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--max-rss-gb", type=float, default=16.0,
                        help="stop with a one-line error past this RSS (default: %(default)s)")
    parser.add_argument("--inference-only", choices=tuple(MODES), help="no rehearsal: the untrained model; all = fp32, "
                        "bf16 and int8 interleaved (fp32 6.6 + bf16 3.3 + int8 ~1.7 GB at real size); bf16 alone is "
                        "converted in place (half the memory); fp32+int8 leaves bf16 out")
    args = parser.parse_args()
    if min(args.queries, args.window_queries) < 1:
        parser.error("--queries and --window-queries must be >= 1")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)  # configs name their parent relative to the repository
    from robovlms_mobile.train.memory import GIB, MemoryGuard, PeakRSS

    size = "tiny" if args.tiny else "real size"
    with MemoryGuard(int(args.max_rss_gb * GIB), what="realsize"), tempfile.TemporaryDirectory(prefix="realsize-") as tmp:
        if args.inference_only:
            module, max_speed, template = untrained(args, Path(tmp))
            with PeakRSS() as rss:
                r = compare(variants(module, MODES[args.inference_only]), max_speed, template, args.queries,
                            args.window_queries)
            ratios = report(r, f"{size}, untrained")
            ratios["peak_rss_gb"] = max(rss.peak, _maxrss()) / GIB
            print(f"peak RSS: {rss.peak / GIB:.2f} GiB while timing, {ratios['peak_rss_gb']:.2f} GiB over the run "
                  f"(model build included); {size}, CPU, random weights; times measured on this machine")
            print(" ".join(f"{k}={v:.3f}" if k != "peak_rss_gb" else f"{k}={v:.2f}" for k, v in ratios.items()))
            return
        from robovlms_mobile.recipes.rehearse import format_report, rehearse

        # gradient checkpointing on: without it one real-size step passes 14 GiB RSS (docs/realsize.md)
        reh = rehearse(args.config, steps=1, tiny=args.tiny, model_dir=args.model_dir, checkpointing=False,
                       keep_model=True, work_dir=tmp, gradient_checkpointing=True, log=lambda *_: None,
                       max_rss_gb=args.max_rss_gb)
        module, meta = reh.pop("module"), reh.pop("info")  # reloaded by runtime.loader.load_for_inference (fp32)
        print(format_report(reh), flush=True)
        with PeakRSS() as rss:
            r = compare(variants(module, MODES["all"]), meta.max_speed, meta.prompt_template, args.queries,
                        args.window_queries)
        ratios = report(r, f"{size}, after 1 training step, reloaded")
        peak = max(reh["peak_rss_gb"] * GIB, rss.peak, _maxrss())
        print(f"peak RSS: rehearsal {reh['peak_rss_gb']:.2f} GiB, inference with fp32 + bf16 + int8 resident "
              f"{rss.peak / GIB:.2f} GiB; {size}, CPU, random weights; times measured on this machine")
    print(f"step_s={reh['step_s']:.2f} peak_rss_gb={peak / GIB:.2f} ckpt_mb={reh['ckpt_bytes'] / 2**20:.1f} "
          f"stream_over_window={ratios['stream_over_window']:.3f} int8_over_fp32={ratios['int8_over_fp32']:.3f} "
          f"bf16_over_fp32={ratios['bf16_over_fp32']:.3f}")


def _maxrss() -> int:
    """The process's lifetime peak RSS (bytes; Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def untrained(args, tmp: Path) -> tuple[object, float, str]:
    """(the untrained fp32 model in eval mode, max speed, prompt template): no training, no checkpoint."""
    import contextlib
    import io

    from robovlms_mobile.config import load_config
    from robovlms_mobile.recipes.rehearse import prepare_backbone, rehearsal_config
    from robovlms_mobile.runtime.loader import build_module

    configs = load_config(args.config)
    backbone = prepare_backbone(tiny=args.tiny, model_dir=args.model_dir, work=tmp)
    cfg = rehearsal_config(configs, backbone, tmp, tmp / "run", steps=1, batch_size=1)
    with contextlib.redirect_stdout(io.StringIO()):
        module = build_module(cfg)
    module.requires_grad_(False)
    return module, float(configs["train_dataset"].get("max_speed", 1.15)), configs["train_dataset"]["prompt_template"]


if __name__ == "__main__":
    main()
