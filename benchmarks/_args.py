"""The command line every benchmark with a smoke run shares: its description and `--smoke`, defined once."""

from __future__ import annotations

import argparse


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of the benchmark's docstring `doc`, with `--smoke`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="a few iterations at tiny sizes: the benchmark runs end to end (tests/test_benchmarks.py); "
                             "its figures mean nothing")
    return parser
