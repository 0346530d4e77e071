"""Shared set-up for the CDK template tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# jsii starts its Node process on the first aws_cdk import and copies this environment then.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# `infra` is a top-level package beside `functions/`; make it importable however pytest is started
# (`python -m pytest` adds the working directory, the `pytest` script does not).
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


# Each stage is synthesized once per test session (jsii start-up and a synthesis are the slow parts), through
# `app.synth()`, so cdk-nag's AwsSolutions checks run exactly as for `npx cdk synth`: any unacknowledged finding
# fails the fixture. The layer's pip build is skipped (an empty bundling-stacks list); the CLI test covers it.
BUNDLING_STACKS = "aws:cdk:bundling-stacks"
PROD_CONTEXT = {"recalc_schedule": "rate(6 hours)", "waf": "true", "alarm_email": "ops@example.com"}
# A stage with every poller on (issue 3), and one with every webhook platform on.
POLLER_CONTEXT = {
    "pollers": "discord,circle,meetup",
    "discord_channels": "900000000000000001,900000000000000002",
    "meetup_groups": "maple-devs",
}
ALL_PLATFORMS = "github,discourse,slack,discord,bevy,events"
VARIANT_CONTEXT = {
    "platforms": "github",
    "crm_provider": "outbox",
    "api_gateway_cloudwatch_role": "false",
    "crm_sync_concurrency": "0",
}


def cdk_json_context() -> dict[str, Any]:
    """The context `npx cdk synth` passes (stage, feature flags), so tests see the same stack."""
    return json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]


def synthesize(outdir: Path, stage: str, **context: Any) -> Path:
    """Synthesize Engagement-<stage> with cdk-nag and return the template file."""
    from infra.app import create_app

    app = create_app(
        context={**cdk_json_context(), "stage": stage, BUNDLING_STACKS: [], **context},
        outdir=str(outdir),
        stack_traces=False,
    )
    app.synth()
    return outdir / f"Engagement-{stage}.template.json"


@pytest.fixture(scope="session")
def dev_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out.dev"), "dev")


@pytest.fixture(scope="session")
def prod_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out.prod"), "prod", **PROD_CONTEXT)


@pytest.fixture(scope="session")
def variant_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GitHub-only staging stage with the outbox CRM and no account-level API Gateway role."""
    return synthesize(tmp_path_factory.mktemp("cdk.out.staging"), "staging", **VARIANT_CONTEXT)


@pytest.fixture(scope="session")
def pollers_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out.pollers"), "pollers", **POLLER_CONTEXT)


@pytest.fixture(scope="session")
def community_template_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("cdk.out.community"), "community", platforms=ALL_PLATFORMS)
