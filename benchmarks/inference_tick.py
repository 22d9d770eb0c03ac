"""Per-tick cost of the policy runtime: chunk reuse (k=5) vs a model call every tick, tiny model.

The same checkpoint is loaded twice, once per strategy (receding horizon = a query every tick;
chunk reuse = a query every 5th tick), and blocks of 10 ticks alternate between the two in one
process, so machine noise hits both alike. A tick is `MobileVLAPolicy.step` on a 144x256 RGB
frame: preprocessing + Kosmos-2 + LSTM head when it queries, a chunk lookup when it does not.
Torch runs on `--threads` intra-op threads (default 1): on a 2-core machine shared with other
work, 2 threads made back-to-back model calls several times slower (thread contention), which
measures the machine's load more than the strategy.

Last line: `tick_ratio_reuse5=...` (reuse-5 / every-tick mean per-tick time; ideal ~0.2)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
warnings.filterwarnings("ignore")
ROUNDS, BLOCK, WARMUP = 30, 10, 20


def build_checkpoint(tmp: Path) -> tuple[Path, Path]:
    """A tiny plugin checkpoint (2 training steps) and its backbone folder."""
    import contextlib
    import io

    from conftest import make_tiny_config

    from robovlms_mobile.config import load_config
    from robovlms_mobile.data.synthetic import generate_episodes
    from robovlms_mobile.train.launcher import train
    from robovlms_mobile.model.tiny_kosmos import build_tiny_kosmos2

    model_dir = build_tiny_kosmos2(tmp / "model")
    generate_episodes(tmp / "episodes", 10, frame_size=(72, 128))
    cfg = make_tiny_config(load_config(REPO / "configs" / "tiny_cpu.json"), model_dir, tmp / "episodes", tmp)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = train(cfg, output_dir=tmp / "run", max_steps=2, progress=False)
    return Path(result["last_checkpoint"]), model_dir


def episode_frames(n: int = 18):
    """RGB frames (n, 144, 256, 3) of one synthetic episode."""
    from robovlms_mobile.data.synthetic import Scenario, make_episode

    return make_episode(Scenario(side="left"), seed=0, frame_size=(144, 256), length=n).images


def main() -> None:
    global ROUNDS, BLOCK, WARMUP
    import logging

    import torch
    from _args import benchmark_parser

    parser = benchmark_parser(__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    parser.add_argument("--checkpoint", help="a plugin checkpoint (default: train a tiny one for 2 steps)")
    parser.add_argument("--base-model-dir", help="its backbone folder (with --checkpoint)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        ROUNDS, BLOCK, WARMUP = 2, 5, 5

    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.policy import MobileVLAPolicy

    logging.disable(logging.WARNING)
    instruction = "go around the box on the left and stop in front of the bottle"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, model_dir = ((Path(args.checkpoint), Path(args.base_model_dir)) if args.checkpoint
                           else build_checkpoint(Path(tmp)))
        every = MobileVLAPolicy.from_checkpoint(ckpt, model_dir, strategy=StrategySpec("receding"))
        reuse = MobileVLAPolicy.from_checkpoint(ckpt, model_dir, strategy=StrategySpec("reuse", reuse_steps=5))
    frames = episode_frames()
    counters = {every: 0, reuse: 0}

    def block(policy: MobileVLAPolicy) -> tuple[float, int]:
        queries = 0
        start = time.perf_counter()
        for _ in range(BLOCK):
            i = counters[policy] = counters[policy] + 1
            queries += policy.step(frames[i % len(frames)], instruction).queried
        return (time.perf_counter() - start) / BLOCK, queries

    for _ in range(WARMUP // BLOCK):
        block(every), block(reuse)
    times = {every: [], reuse: []}
    queries = {every: 0, reuse: 0}
    for r in range(ROUNDS):
        for policy in ((every, reuse) if r % 2 == 0 else (reuse, every)):
            t, q = block(policy)
            times[policy].append(t)
            queries[policy] += q
    t_every, t_reuse = statistics.median(times[every]), statistics.median(times[reuse])
    n = ROUNDS * BLOCK
    print(f"tiny Kosmos-2, 144x256 frames, torch threads {torch.get_num_threads()}; {ROUNDS} alternating blocks of {BLOCK} ticks each")
    print(f"every tick:  {t_every * 1e3:.2f} ms/tick (median block mean), {queries[every]}/{n} ticks queried the model")
    print(f"reuse k=5:   {t_reuse * 1e3:.2f} ms/tick (median block mean), {queries[reuse]}/{n} ticks queried the model")
    print(f"tick_ratio_reuse5={t_reuse / t_every:.3f}")


if __name__ == "__main__":
    main()
