"""Docker-free bundling of the Lambda dependency layer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, ILocalBundling

from infra import constants


@jsii.implements(ILocalBundling)
class PipLayerBundler:
    """Installs the functions' requirements for Lambda (arm64, CPython 3.13) with this machine's pip.

    `--platform` with `--only-binary=:all:` makes pip pick manylinux aarch64 wheels whatever the
    host is, so no Docker image is needed. Returning True tells the CDK the bundle is done.
    """

    def __init__(self, requirements: Path = constants.REQUIREMENTS_FILE) -> None:
        self._requirements = requirements

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-r",
            str(self._requirements),
            "--target",
            str(Path(output_dir) / constants.LAYER_DIR),
            "--platform",
            constants.LAYER_PIP_PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            constants.LAYER_PYTHON_VERSION,
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # Returning False would fall back to Docker, which is not available: fail with pip's reason instead.
            raise RuntimeError(f"pip could not build the dependency layer:\n{result.stderr.strip()}")
        return True
