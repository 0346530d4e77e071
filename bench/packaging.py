"""Compare the two ways of shipping the functions' dependencies: size and cold import time.

Option `bundle`: one dependency layer built with pip from functions/requirements.txt (what the stack deploys).
Option `public-layer`: the public Powertools layer plus a small bundle of the rest (httpx, stamina).

What the public layer ships cannot be checked offline, so it is approximated with `aws-lambda-powertools[all]`
(the layer is built with every core extra: pydantic, aws-xray-sdk, fastjsonschema, ...).

For each option this script:
- builds the deployed layout for Lambda (manylinux2014_aarch64, CPython 3.13, wheels only) into a temp dir and
  reports its size in MB (for `public-layer`: the layer and the small bundle, and their sum);
- installs the same requirement sets for this machine's Python into temp targets and times
  `import engagement.handlers.github_webhook` in fresh `python -S` processes (no site-packages: only the layout,
  the function code and a boto3 standing in for the runtime's), median of N runs, round-robin.

Run by hand (needs PyPI):

    .venv/bin/python bench/packaging.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
REQUIREMENTS = FUNCTIONS / "requirements.txt"
PUBLIC_LAYER = ["aws-lambda-powertools[all]"]
LAMBDA_PLATFORM = [
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
]
MODULE = "engagement.handlers.github_webhook"
PROBE = f"import time; t = time.perf_counter(); import {MODULE}; print(time.perf_counter() - t)"


def _requirements_without_powertools() -> list[str]:
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("aws-lambda-powertools")]


def _pip(target: Path, requirements: list[str], lambda_platform: bool) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target)]
    command += LAMBDA_PLATFORM if lambda_platform else []
    subprocess.run(command + requirements, check=True)


def _megabytes(*dirs: Path) -> float:
    return sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file()) / 1e6


def _import_seconds(path: list[Path]) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in [FUNCTIONS, *path]),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode is written on the warm-up runs, as the bundle ships .pyc
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    small = _requirements_without_powertools()
    full = ["-r", str(REQUIREMENTS)]

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        deployed = {name: tmp / "deployed" / name for name in ("bundle", "layer", "small")}
        _pip(deployed["bundle"], full, lambda_platform=True)
        _pip(deployed["layer"], PUBLIC_LAYER, lambda_platform=True)
        _pip(deployed["small"], small, lambda_platform=True)

        local = {name: tmp / "local" / name for name in ("bundle", "layer", "small", "runtime")}
        _pip(local["bundle"], full, lambda_platform=False)
        _pip(local["layer"], PUBLIC_LAYER, lambda_platform=False)
        _pip(local["small"], small, lambda_platform=False)
        _pip(local["runtime"], ["boto3"], lambda_platform=False)  # the Lambda runtime's boto3

        # Lambda puts the function's own code first, then /opt/python (layers); the runtime's boto3 comes last.
        layouts = {
            "bundle": [local["bundle"], local["runtime"]],
            "public-layer": [local["small"], local["layer"], local["runtime"]],
        }
        for path in layouts.values():  # warm the disk cache and write bytecode once
            _import_seconds(path)
            _import_seconds(path)
        times: dict[str, list[float]] = {name: [] for name in layouts}
        for _ in range(args.runs):
            for name, path in layouts.items():
                times[name].append(_import_seconds(path))

        bundle_mb = _megabytes(deployed["bundle"])
        layer_mb, small_mb = _megabytes(deployed["layer"]), _megabytes(deployed["small"])
        print(f"cold import of {MODULE}: median of {args.runs} fresh processes on {sys.version.split()[0]}")
        print(f"{'option':14} {'deployed MB (unzipped, arm64 3.13)':>40} {'import ms':>10}")
        print(f"{'bundle':14} {bundle_mb:40.1f} {statistics.median(times['bundle']) * 1000:10.1f}")
        sizes = f"{layer_mb:.1f} layer + {small_mb:.1f} bundle = {layer_mb + small_mb:.1f}"
        print(f"{'public-layer':14} {sizes:>40} {statistics.median(times['public-layer']) * 1000:10.1f}")


if __name__ == "__main__":
    main()
