"""What the autoload hook costs: interpreter start-up and `import robovlms`, hook on vs off.

Start-up: the hook's own import time (from `-X importtime`) against the whole start-up of
`python -c pass`, so `startup_ratio` = start-up / (start-up - hook). Activation: wall time of
`import robovlms.data, robovlms.train.base_trainer` with ROBOVLMS_MOBILE_AUTOLOAD=1 vs 0,
alternating runs. Last line: `startup_ratio=... hook_us=... activation_ratio=...`
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

from _args import benchmark_parser

RUNS, ACTIVATION_RUNS = 15, 5


def run(code: str, autoload: str, *flags: str) -> tuple[float, str]:
    env = {**os.environ, "ROBOVLMS_MOBILE_AUTOLOAD": autoload, "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what a user gets: cached bytecode, as pip installs it
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *flags, "-c", code], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stderr


def hook_import_us() -> float:
    _, err = run("pass", "1", "-X", "importtime")
    for line in err.splitlines():
        if line.rstrip().endswith("robovlms_mobile_autoload"):
            return float(re.split(r"[:|]", line)[2])  # cumulative µs
    raise RuntimeError("robovlms_mobile_autoload not imported at start-up: is the .pth installed?")


def main() -> None:
    global RUNS, ACTIVATION_RUNS
    parser = benchmark_parser(__doc__)
    if parser.parse_args().smoke:
        RUNS, ACTIVATION_RUNS = 2, 1
    startup = statistics.median(run("pass", "1")[0] for _ in range(RUNS))
    hook_us = statistics.median(hook_import_us() for _ in range(RUNS))
    code = "import robovlms.data, robovlms.train.base_trainer"
    on, off = [], []
    for i in range(ACTIVATION_RUNS):
        for flag in (("1", "0") if i % 2 == 0 else ("0", "1")):
            (on if flag == "1" else off).append(run(code, flag)[0])
    print(f"python -c pass: {startup * 1e3:.1f} ms, of which the hook's import: {hook_us:.0f} us")
    print(f"import robovlms.data + base_trainer: {statistics.median(on):.2f} s with the plugin, {statistics.median(off):.2f} s without")
    print(f"startup_ratio={startup / (startup - hook_us / 1e6):.4f} hook_us={hook_us:.0f} "
          f"activation_ratio={statistics.median(on) / statistics.median(off):.3f}")


if __name__ == "__main__":
    main()
