"""Cold import time of each Lambda handler module against `import boto3` alone.

Each measurement is a fresh Python process (as a Lambda cold start is), timing only the import
statement; the median of N runs is reported with its ratio to boto3's. Run by hand:

    .venv/bin/python bench/cold_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

MODULES = [
    "boto3",
    "engagement.handlers.github_webhook",
    "engagement.handlers.discourse_webhook",
    "engagement.handlers.recalc",
    "engagement.handlers.crm_sync",
]
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def measure(module: str, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0", "POWERTOOLS_METRICS_DISABLED": "true"}
    root = Path(__file__).resolve().parent.parent
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(module=module)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip()))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for module in MODULES:  # warm the disk cache and bytecode once
        measure(module, 1)
    base = statistics.median(measure("boto3", args.runs))
    print(f"{'module':45} {'median ms':>10} {'x boto3':>8}")
    for module in MODULES:
        median = statistics.median(measure(module, args.runs))
        print(f"{module:45} {median * 1000:10.1f} {median / base:8.2f}")


if __name__ == "__main__":
    main()
