"""Shared set-up for the CDK template tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# jsii starts its Node process on the first aws_cdk import and copies this environment then.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# `infra` is a top-level package beside `functions/`; make it importable however pytest is started
# (`python -m pytest` adds the working directory, the `pytest` script does not).
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
