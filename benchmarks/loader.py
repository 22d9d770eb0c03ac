"""Loader throughput: windows/s on the same generated 720x1280 gzip V4 episodes, 2 DataLoader workers.

(1) naive: per item, open the file, decompress all 18 frames, BGR->RGB, resize every frame with
    PIL bicubic, normalise, keep the window's 8 (the original project's reader);
(2) MobileVLAH5Dataset, no cache: only the window's frames are read, resized with torch's uint8 kernel;
(3) MobileVLAH5Dataset with `cache_dir`: memory-mapped frames resized once (build time printed apart);
(4) JPEG against raw storage: the same frames as V5 files, once raw (gzip arrays) and once as the V5
    collector's JPEG bytes (q90), both read uncached (`jpeg_over_raw`).
All draw the same seeded windows (with replacement) and use the same collate (the dataset
collater's `rgb` and `actions`; tokenisation is left out, it is the same for all). Timing starts
after the first batch, so worker start-up is excluded. The files sit in the OS page cache (just
written): this measures decompression and resizing, not the disk.

The dataset's batches cross the DataLoader as uint8 (upstream's batch keys and shapes, a quarter
of the bytes) and are normalised where the batch is consumed: MobileVLATrainer calls
`normalise_batch` after moving the batch to its device, on the GPU in a real run. So the
headline `cached_over_naive` is the rate at which the DataLoader delivers cached uint8 batches
(what the trainer consumes) over the naive reader's float batches; `cached_normalised_on_cpu_over_naive`
also normalises each batch in this (main) process on this CPU, inside the timing, as a CPU-only
consumer would. Uncached and V5 figures are normalised on the CPU too (the reading dominates).
`normalise_batch` itself is timed side by side on one (8, 8, 3, 224, 224) batch with 1 and 2
threads: into a fresh output (as the trainer calls it), the same passes frame by frame
(cache-resident), into a reused buffer (`out=`), and fresh in a child process started with
torch's `THP_MEM_ALLOC_ENABLE=1` (transparent huge pages for large CPU allocations).
Last line: `uncached_over_naive=... cached_over_naive=... cached_normalised_on_cpu_over_naive=... jpeg_over_raw=...`
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from robovlms_mobile.data.dataset import MobileVLAH5Dataset, stack_rgb
from robovlms_mobile.data.episode import check_episode
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.synthetic import generate_episodes
from robovlms_mobile.data.writers import write_episode_v5
from robovlms_mobile.data.transforms import _BIAS, _SCALE, normalise_batch, normalise_frames

from _args import benchmark_parser

WINDOW, CHUNK, SIZE, BATCH, WORKERS = 8, 10, 224, 8, 2
REPEATS = 15  # normalise_batch timings per variant and thread count


class NaiveWindows(Dataset):
    """The original reader: everything of the episode, every item."""

    def __init__(self, ds: MobileVLAH5Dataset):
        self.index, self.episodes = ds.index, ds.episodes

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, start = self.index[i]
        episode = self.episodes[e]
        with h5py.File(episode.path, "r") as f:
            frames = f["images"][()][..., ::-1]  # (18, 720, 1280, 3) BGR -> RGB
            actions = f["actions"][()][:, :2]
        resized = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(x)).resize((SIZE, SIZE), Image.BICUBIC))
                            for x in frames])
        rgb = normalise_frames(resized)[start : start + WINDOW]
        return {"rgb": rgb, "actions": torch.from_numpy(actions[start : start + WINDOW + CHUNK - 1] / 1.15)}


def collate(samples: list[dict]) -> dict:
    """The dataset collater's image and action part (`rgb` (B, W, 3, S, S), uint8 or normalised float; `actions`)."""
    return {"rgb": stack_rgb(samples), "actions": torch.stack([s["actions"] for s in samples])}


def windows_per_second(ds: Dataset, n_windows: int, consume: bool = True) -> float:
    """Windows/s through a 2-worker DataLoader, after its first batch; `consume`: normalised in this process, model-ready."""
    sampler = RandomSampler(ds, replacement=True, num_samples=n_windows + BATCH, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(ds, batch_size=BATCH, sampler=sampler, num_workers=WORKERS, collate_fn=collate)
    it = iter(loader)
    first = normalise_batch(next(it)["rgb"])
    assert first.shape == (BATCH, WINDOW, 3, SIZE, SIZE) and first.dtype == torch.float32
    start, count = time.perf_counter(), 0
    for batch in it:
        count += len(normalise_batch(batch["rgb"]) if consume else batch["rgb"])  # the consumer's step: model-ready float
    return count / (time.perf_counter() - start)


def ms_per_window(ds: Dataset, n: int) -> float:
    """Milliseconds per window fetched, collated and normalised in this process (one thread): the work without the DataLoader."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    fetch = getattr(ds, "__getitems__", None) or (lambda idx: [ds[i] for i in idx])
    normalise_batch(collate(fetch([0]))["rgb"])
    start = time.perf_counter()
    for k in range(n):
        normalise_batch(collate(fetch([k % len(ds)]))["rgb"])
    elapsed = time.perf_counter() - start
    torch.set_num_threads(threads)
    return elapsed / n * 1e3


def v5_copies(v4_dir: Path, out: Path, storage: str) -> None:
    """The V4 episodes' frames and actions as V5 files (raw or the collector's JPEG bytes)."""
    out.mkdir()
    for path in sorted(v4_dir.glob("*.h5")):
        ep = check_episode(path, min_length=1, max_speed=2).episode
        with h5py.File(path, "r") as f:
            frames, actions = read_frames_rgb(f, ep, 0, ep.num_frames), f["actions"][()]
        attrs = {"scenario": "target_left_straight_path", "pattern": "core", "distance": "fixed", "end_pos": "left"}
        write_episode_v5(out / path.name, frames, actions, instruction=ep.instruction, attrs=attrs, storage=storage)


def per_frame_normalise(rgb: torch.Tensor) -> torch.Tensor:
    """The same three in-place passes one frame at a time, so each stays in cache (measured, not adopted)."""
    out = torch.empty(rgb.shape, dtype=torch.float32)
    for b in range(rgb.shape[0]):
        for w in range(rgb.shape[1]):
            out[b, w].copy_(rgb[b, w])
            out[b, w].mul_(_SCALE).sub_(_BIAS)
    return out


def normalise_timings() -> dict[str, float]:
    """Median ms per (8, 8, 3, 224, 224) uint8 batch, with 1 and 2 threads: normalise_batch, per frame, reused buffer."""
    threads = torch.get_num_threads()
    rgb = torch.randint(0, 256, (BATCH, WINDOW, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    buffer = torch.empty(rgb.shape)
    variants = {"fresh": normalise_batch, "per_frame": per_frame_normalise,
                "reused_buffer": lambda x: normalise_batch(x, out=buffer)}
    assert all(torch.equal(f(rgb), normalise_batch(rgb)) for f in variants.values())  # identical values
    out = {}
    for n in (1, 2):
        torch.set_num_threads(n)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(REPEATS):  # interleaved, so machine noise hits all alike
            for name, f in variants.items():
                start = time.perf_counter()
                f(rgb)
                times[name].append((time.perf_counter() - start) * 1e3)
        out.update({f"{k}_{n}": statistics.median(v) for k, v in times.items()})
    torch.set_num_threads(threads)
    return out


def normalise_timings_with_thp() -> dict[str, float] | None:
    """`normalise_timings` in a child process started with THP_MEM_ALLOC_ENABLE=1 (read once, at torch's first allocation)."""
    smoke = ["--smoke"] if REPEATS == 1 else []
    proc = subprocess.run([sys.executable, __file__, "--normalise-only", *smoke], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "THP_MEM_ALLOC_ENABLE": "1"})
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None


def main() -> None:
    global REPEATS
    parser = benchmark_parser(__doc__)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--naive-windows", type=int, default=48)
    parser.add_argument("--uncached-windows", type=int, default=160)
    parser.add_argument("--cached-windows", type=int, default=3200)
    parser.add_argument("--v5-windows", type=int, default=160)
    parser.add_argument("--normalise-only", action="store_true", help="print normalise_batch's timings as JSON and stop")
    args = parser.parse_args()
    if args.smoke:
        REPEATS = 1
        args.episodes, args.naive_windows, args.uncached_windows, args.cached_windows, args.v5_windows = 1, 1, 1, 1, 1
    if args.normalise_only:
        print(json.dumps(normalise_timings()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "episodes"
        t = time.perf_counter()
        generate_episodes(data, args.episodes, frame_size=(720, 1280), length=WINDOW + CHUNK)
        size_mb = sum(p.stat().st_size for p in data.iterdir()) / 2**20
        print(f"{args.episodes} V4 episodes, 18 frames of 720x1280, gzip: {size_mb:.1f} MB, written in {time.perf_counter() - t:.1f} s")
        kw = dict(split="all", window_size=WINDOW, fwd_pred_next_n=CHUNK, image_size=SIZE)
        uncached = MobileVLAH5Dataset(str(data), **kw)
        t = time.perf_counter()
        cached = MobileVLAH5Dataset(str(data), cache_dir=str(Path(tmp) / "cache"), **kw)
        print(f"cache built once in {time.perf_counter() - t:.1f} s ({args.episodes} episodes)")
        a, b = uncached[0], cached[0]
        assert torch.equal(a["rgb"], b["rgb"]), "cached and uncached items differ"
        one = [ms_per_window(NaiveWindows(uncached), 3), ms_per_window(uncached, 10), ms_per_window(cached, 200)]
        print("ms per window in one process, one thread: naive {:.1f}, uncached {:.1f}, cached {:.2f}".format(*one))
        naive = windows_per_second(NaiveWindows(uncached), args.naive_windows)
        plain = windows_per_second(uncached, args.uncached_windows)
        delivered = windows_per_second(cached, args.cached_windows, consume=False)
        on_cpu = windows_per_second(cached, args.cached_windows)
        print(f"windows/s, {WORKERS} workers, batch {BATCH}, window {WINDOW}, {SIZE}px: naive {naive:.1f}, "
              f"uncached {plain:.1f}, cached {delivered:.1f} (uint8 batches as the DataLoader delivers them; "
              f"normalised in this process on this CPU: {on_cpu:.1f})")
        ms, thp = normalise_timings(), normalise_timings_with_thp()
        for n in (1, 2):
            print(f"normalise_batch, one ({BATCH}, {WINDOW}, 3, {SIZE}, {SIZE}) uint8 batch, {n} thread(s), median ms: "
                  f"fresh output {ms[f'fresh_{n}']:.1f}, per frame {ms[f'per_frame_{n}']:.1f}, into a reused buffer "
                  f"{ms[f'reused_buffer_{n}']:.1f}" + (f"; THP_MEM_ALLOC_ENABLE=1: fresh output {thp[f'fresh_{n}']:.1f}"
                                                      if thp else ""))
        v5 = {}
        for storage in ("raw", "jpeg"):
            v5_copies(data, Path(tmp) / f"v5-{storage}", storage)
            size_mb = sum(p.stat().st_size for p in (Path(tmp) / f"v5-{storage}").iterdir()) / 2**20
            v5[storage] = windows_per_second(MobileVLAH5Dataset(str(Path(tmp) / f"v5-{storage}"), **kw), args.v5_windows)
            print(f"V5 {storage}: {size_mb:.1f} MB, uncached windows/s {v5[storage]:.1f}")
        print(f"uncached_over_naive={plain / naive:.2f} cached_over_naive={delivered / naive:.1f} "
              f"cached_normalised_on_cpu_over_naive={on_cpu / naive:.1f} jpeg_over_raw={v5['jpeg'] / v5['raw']:.2f}")


if __name__ == "__main__":
    main()
