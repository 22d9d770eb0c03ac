"""HTTP overhead of the policy server: round trip minus the time spent in (and waiting for) the model.

A real `robovlms-mobile serve` (tiny checkpoint, receding horizon: every request runs the model)
in a subprocess on 127.0.0.1; clients use `PolicyClient` (httpx, keep-alive, multipart JPEG
upload of a 144x256 frame). Per request, the server reports `policy` (the whole tick on the model
thread) and `queue` (waiting for that thread behind other clients); overhead = client round trip
- policy - queue: HTTP, multipart parsing, JPEG encode/decode, JSON, scheduling. 1 client
sequential, then 8 concurrent clients (one episode each), in one run. The server requires an API
key (a fresh random one, in $ROBOVLMS_MOBILE_API_KEY), as deployed; every client sends it.

Last line: `overhead_p50_ms=... overhead_p99_ms=... overhead_p50_ms_8clients=... overhead_p99_ms_8clients=...`
(goal: p50 <= 5 ms on loopback)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _args import benchmark_parser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")
SEQUENTIAL, PER_CLIENT, CLIENTS, WARMUP = 300, 60, 8, 20
INSTRUCTION = "go around the box on the left and stop in front of the bottle"


def start_server(ckpt: Path, model_dir: Path, log: Path, api_key: str) -> tuple[subprocess.Popen, str]:
    import httpx

    from helpers import free_port

    port = free_port()
    cli = str(Path(sys.executable).with_name("robovlms-mobile"))
    proc = subprocess.Popen([cli, "serve", str(ckpt), "--base-model-dir", str(model_dir), "--port", str(port),
                             "--log-level", "warning"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**{k: v for k, v in os.environ.items() if k != "VLA_API_KEY"}, "ROBOVLMS_MOBILE_API_KEY": api_key})
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def measure(url: str, api_key: str, jpegs: list[bytes], n: int, barrier: threading.Barrier | None = None) -> list[tuple[float, float, float]]:
    """(round trip, policy, queue) in ms for n /act requests of one client in its own episode."""
    from robovlms_mobile.runtime.client import PolicyClient

    out = []
    with PolicyClient(url, api_key=api_key) as client:
        episode = client.reset()
        for i in range(WARMUP):
            client.act(jpegs[i % len(jpegs)], INSTRUCTION, episode_id=episode)
        if barrier is not None:
            barrier.wait()
        for i in range(n):
            start = time.perf_counter()
            r = client.act(jpegs[i % len(jpegs)], INSTRUCTION, episode_id=episode)
            rtt = (time.perf_counter() - start) * 1e3
            out.append((rtt, r["latency_ms"]["policy"], r["latency_ms"]["queue"]))
    return out


def summary(rows: list[tuple[float, float, float]]) -> dict[str, float]:
    a = np.array(rows)
    overhead = a[:, 0] - a[:, 1] - a[:, 2]
    return {"rtt_p50": np.percentile(a[:, 0], 50), "policy_p50": np.percentile(a[:, 1], 50),
            "queue_p50": np.percentile(a[:, 2], 50), "p50": np.percentile(overhead, 50), "p99": np.percentile(overhead, 99),
            "own_p50": np.percentile(a[:, 0] - a[:, 1], 50)}


def main() -> None:
    global SEQUENTIAL, PER_CLIENT, WARMUP
    parser = benchmark_parser(__doc__)
    parser.add_argument("--checkpoint", help="a plugin checkpoint to serve (default: train a tiny one for 2 steps)")
    parser.add_argument("--base-model-dir", help="its backbone folder (with --checkpoint)")
    args = parser.parse_args()
    if args.smoke:
        SEQUENTIAL, PER_CLIENT, WARMUP = 5, 2, 2
    from inference_tick import build_checkpoint, episode_frames

    from robovlms_mobile.runtime.client import encode_jpeg

    with tempfile.TemporaryDirectory() as tmp:
        ckpt, model_dir = ((Path(args.checkpoint), Path(args.base_model_dir)) if args.checkpoint
                           else build_checkpoint(Path(tmp)))
        api_key = secrets.token_urlsafe(16)  # as deployed: the server checks a key on every request
        jpegs = [encode_jpeg(f) for f in episode_frames()]
        proc, url = start_server(ckpt, model_dir, Path(tmp) / "server.log", api_key)
        try:
            one = summary(measure(url, api_key, jpegs, SEQUENTIAL))
            barrier = threading.Barrier(CLIENTS)
            with ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(measure, url, api_key, jpegs, PER_CLIENT, barrier) for _ in range(CLIENTS)]
                eight = summary([row for f in futures for row in f.result()])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"tiny Kosmos-2, receding horizon, 144x256 JPEG frames ({len(jpegs[0]) // 1024} KiB), loopback; "
          f"{SEQUENTIAL} sequential requests, then {CLIENTS} clients x {PER_CLIENT}")
    for name, s in (("1 client ", one), ("8 clients", eight)):
        print(f"{name}: round trip p50 {s['rtt_p50']:.2f} ms = policy {s['policy_p50']:.2f} + queue {s['queue_p50']:.2f} "
              f"+ overhead {s['p50']:.2f} (p99 {s['p99']:.2f}); round trip - own policy time p50 {s['own_p50']:.2f} ms; "
              f"overhead / policy {s['p50'] / s['policy_p50']:.3f}")
    print(f"overhead_p50_ms={one['p50']:.2f} overhead_p99_ms={one['p99']:.2f} "
          f"overhead_p50_ms_8clients={eight['p50']:.2f} overhead_p99_ms_8clients={eight['p99']:.2f}")


if __name__ == "__main__":
    main()
