"""CDK entry point: `python3 -m infra.app` from the project root (cdk.json runs it for `npx cdk synth`)."""

from __future__ import annotations

from typing import Any

from aws_cdk import App

from infra import constants
from infra.stack import EngagementStack


def create_app(context: dict[str, Any] | None = None, **app_kwargs: Any) -> App:
    """Build the app with one stack, `Engagement-<stage>`.

    The stack's environment is left unresolved (no account or region), so synthesis needs no credentials.
    """
    app = App(context=context, **app_kwargs)
    stage = app.node.try_get_context(constants.STAGE_CONTEXT) or constants.DEFAULT_STAGE
    schedule = app.node.try_get_context(constants.RECALC_SCHEDULE_CONTEXT) or constants.DEFAULT_RECALC_SCHEDULE
    EngagementStack(app, constants.stack_name(stage), stage=stage, recalc_schedule=schedule)
    return app


if __name__ == "__main__":
    create_app().synth()
