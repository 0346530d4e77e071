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
    "engagement.handlers.slack_webhook",
    "engagement.handlers.discord_webhook",
    "engagement.handlers.bevy_webhook",
    "engagement.handlers.events_endpoint",
    "engagement.handlers.recalc",
    "engagement.handlers.crm_sync",
    "engagement.handlers.crm_reconcile",
    "engagement.handlers.hubspot_webhook",
    "engagement.handlers.hubspot_pull",
    "engagement.handlers.identity_admin",
]
PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def measure(module: str) -> float:
    env = {**os.environ, "POWERTOOLS_METRICS_DISABLED": "true"}
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for module in MODULES:  # warm the disk cache and bytecode once
        measure(module)
    # Round-robin, so that a burst of load on this shared machine hits every module alike; each
    # round's ratio is taken against the boto3 run of the same round.
    times: dict[str, list[float]] = {m: [] for m in MODULES}
    ratios: dict[str, list[float]] = {m: [] for m in MODULES}
    for _ in range(args.runs):
        round_times = {m: measure(m) for m in MODULES}
        for module, seconds in round_times.items():
            times[module].append(seconds)
            ratios[module].append(seconds / round_times["boto3"])
    print(f"{'module':45} {'median ms':>10} {'x boto3':>8}   (median of {args.runs} fresh processes)")
    for module in MODULES:
        print(f"{module:45} {statistics.median(times[module]) * 1000:10.1f} {statistics.median(ratios[module]):8.2f}")


if __name__ == "__main__":
    main()
