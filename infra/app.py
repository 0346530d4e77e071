"""CDK entry point: `python3 -m infra.app` from the project root (cdk.json runs it for `npx cdk synth`)."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra import constants, stages
from infra.stack import EngagementStack


def create_app(context: dict[str, Any] | None = None, **app_kwargs: Any) -> App:
    """Build the app with one stack, `Engagement-<stage>`, checked by cdk-nag's AwsSolutions rules on synth.

    The stage comes from the `stage` context key (`-c stage=prod`), its settings from infra/stages.py with any
    context overrides. The stack's environment is left unresolved (no account or region), so synthesis needs no
    credentials and makes no lookups. Any unacknowledged cdk-nag finding makes `app.synth()` fail.
    """
    app = App(context=context, **app_kwargs)
    config = stages.resolve(app.node.try_get_context)
    EngagementStack(app, constants.stack_name(config.name), config=config)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    create_app().synth()
