"""Alarms, their SNS topic and the operator's dashboard."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants
from infra.stages import StageConfig

FIVE_MINUTES = Duration.minutes(5)
# API 5xx rate: the 5XXError metric is 1 per failed request and 0 otherwise, so its average is the rate.
API_5XX_RATE = 0.05
# The CRM sync is behind when its oldest unprocessed stream record is older than this.
ITERATOR_AGE_MS = 15 * 60 * 1000
# Deliveries with a wrong signature in 15 minutes: one is a misconfigured secret being tried, ten is a pattern.
BAD_SIGNATURES_PER_15_MINUTES = 10
# The daily recalculation: at least one successful run (invocations minus errors) in the last 25 hours.
RECALC_WINDOW_HOURS = 25


def _custom(metric_name: str, label: str | None, platform: str | None = None, *, namespace: str) -> cloudwatch.Metric:
    dimensions = {"service": constants.SERVICE_NAME}
    if platform is not None:
        dimensions["platform"] = platform
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=metric_name,
        dimensions_map=dimensions,
        statistic="Sum",
        period=FIVE_MINUTES,
        label=label,
    )


def any_count_alarm(
    scope: Construct, construct_id: str, metric: cloudwatch.IMetric, description: str, topic: sns.ITopic
) -> cloudwatch.Alarm:
    """An alarm on the stack's topic as soon as `metric` (a count, e.g. a function's Errors) reaches 1 in a period;
    no data (no invocations) is not a breach."""
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        metric=metric,
        threshold=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    return alarm


class Monitoring(Construct):
    """Every alarm goes to one SNS topic (with an email subscription when `alarm_email` is set)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StageConfig,
        webhooks: dict[str, lambda_.IFunction],
        recalc: lambda_.IFunction,
        crm_sync: lambda_.IFunction,
        api: apigateway.RestApi,
        failures: sqs.IQueue,
        pollers: dict[str, lambda_.IFunction] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.namespace = constants.metrics_namespace(config.name)
        self.topic = sns.Topic(self, constants.ALARM_TOPIC_ID, display_name="Engagement alarms", enforce_ssl=True)
        # enforce_ssl gives the topic a policy of its own (a Deny without TLS), which replaces SNS's default
        # policy; alarms publish as the CloudWatch service, so it needs an explicit Allow, scoped to this account.
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"
                    },
                },
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self._action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        functions = {**{f"{p.capitalize()}Webhook": fn for p, fn in webhooks.items()}}
        functions.update({"Recalc": recalc, "CrmSync": crm_sync})
        # A poller raises when a stream failed (its cursor stays put), so Errors covers a vendor down or a bad token.
        functions.update({f"{p.capitalize()}Poller": fn for p, fn in (pollers or {}).items()})
        for name, function in functions.items():
            self._alarm(
                f"{name}Errors",
                function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {name} function failed at least once in 5 minutes (see its log group).",
            )
            self._alarm(
                f"{name}Throttles",
                function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                description=f"The {name} function was throttled in 5 minutes.",
            )

        self._alarm(
            "Api5xxRate",
            api.metric_server_error(period=FIVE_MINUTES, statistic="Average"),
            threshold=API_5XX_RATE,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description=f"More than {API_5XX_RATE:.0%} of webhook requests answered 5xx in 2 of 3 five-minute periods.",
        )
        self._alarm(
            "CrmSyncIteratorAge",
            crm_sync.metric("IteratorAge", period=FIVE_MINUTES, statistic="Maximum"),
            threshold=ITERATOR_AGE_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            description="The CRM sync is more than 15 minutes behind the members stream.",
        )
        self._alarm(
            "CrmSyncFailureQueueDepth",
            failures.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
            threshold=1,
            description="Stream records the CRM sync gave up on are waiting in the failure queue.",
        )
        # The daily recalculation (the CRM reconcile job has its own alarm, infra/crm.py): with hourly periods,
        # 25 of 25 without a successful run (missing data counts) means none in 25 hours.
        self._alarm(
            "RecalcMissed",
            cloudwatch.MathExpression(
                expression="invocations - FILL(errors, 0)",
                using_metrics={
                    "invocations": recalc.metric_invocations(period=Duration.hours(1), statistic="Sum"),
                    "errors": recalc.metric_errors(period=Duration.hours(1), statistic="Sum"),
                },
                period=Duration.hours(1),
                label="Successful recalculations",
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=RECALC_WINDOW_HOURS,
            missing=cloudwatch.TreatMissingData.BREACHING,
            description=f"No successful score recalculation in the last {RECALC_WINDOW_HOURS} hours.",
        )
        for platform in webhooks:
            self._alarm(
                f"{platform.capitalize()}BadSignatures",
                # No label: a labelled metric renders as a metric-math alarm, which reads worse in the console.
                _custom("BadSignatures", None, platform, namespace=self.namespace).with_(period=Duration.minutes(15)),
                threshold=BAD_SIGNATURES_PER_15_MINUTES,
                description=f"{platform} deliveries refused for a wrong signature: a secret out of step with the "
                "platform, or someone probing the webhook URL.",
            )

        self.dashboard = self._dashboard(config, webhooks, crm_sync, api, failures)

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        self.alarms[construct_id] = alarm

    def _dashboard(
        self,
        config: StageConfig,
        webhooks: dict[str, lambda_.IFunction],
        crm_sync: lambda_.IFunction,
        api: apigateway.RestApi,
        failures: sqs.IQueue,
    ) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"engagement-{config.name}")
        ingest = [
            _custom(metric, f"{platform} {label}", platform, namespace=self.namespace)
            for platform in webhooks
            for metric, label in (
                ("ActivitiesStored", "stored"),
                ("DuplicateDeliveries", "duplicate"),
                ("DeliveriesIgnored", "ignored"),
                ("DeliveriesRefused", "refused"),
                ("BadSignatures", "bad signature"),
            )
        ]
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Ingest by platform", left=ingest, width=12, stacked=False),
            cloudwatch.GraphWidget(
                title="Scores recalculated and CRM updates",
                left=[
                    _custom("ScoresRecalculated", "scores recalculated", namespace=self.namespace),
                    _custom("CrmUpdates", "CRM updates", namespace=self.namespace),
                ],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Failures",
                left=[
                    _custom("CrmFailures", "CRM failures", namespace=self.namespace),
                    failures.metric_approximate_number_of_messages_visible(
                        period=FIVE_MINUTES, statistic="Maximum", label="failure queue depth"
                    ),
                    api.metric_server_error(period=FIVE_MINUTES, statistic="Sum", label="API 5xx"),
                    api.metric_client_error(period=FIVE_MINUTES, statistic="Sum", label="API 4xx"),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="CRM sync stream lag (ms)",
                left=[crm_sync.metric("IteratorAge", period=FIVE_MINUTES, statistic="Maximum", label="iterator age")],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24),
        )
        return dashboard
