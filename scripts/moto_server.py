"""moto_server, patched where the tests need moto to behave as AWS does.

1. DynamoDB requests isolated from each other as DynamoDB isolates them. moto 5.2's
   TransactWriteItems is not thread-safe: it deep-copies the table when it starts and, when any
   item's condition fails, puts that copy back, wiping out whatever other requests wrote in
   between (moto_server answers requests on several threads). DynamoDB runs transactions
   serializably (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-isolation).
   One lock around every DynamoDB request gives that (moto holds the GIL for the whole request
   anyway, so nothing is lost in throughput).

2. CloudFormation as the deployed-stack test needs it (tests/aws/stack.rs): a FIFO queue created
   without a QueueName gets CloudFormation's generated name with the `.fifo` suffix, as AWS
   names it (moto leaves it off and then refuses the queue); inline role policies are stored as
   JSON text, as IAM stores them (moto keeps the template's dict, which its own IAM API and
   policy evaluation cannot read), without the statements an `AWS::NoValue` removed; a log
   group's `Arn` attribute ends in `:*`, as CloudFormation's does. And EventBridge rules as the stack's need: a scheduled rule
   without an event pattern (the every-minute tick) matches no put event, as in AWS (moto
   matched every event); an SNS target (the Insights alert rule's topic) is published to, and
   a Lambda target left alone (no function runs here), where moto raised NotImplementedError
   and answered the whole PutEvents with a 500.

3. IAM enforced per request, for the least-privilege test only: a request signed with
   temporary credentials that moto's STS issued (AssumeRole of a function's role, as Lambda
   does) is authorised against that role's policies; every other request (the tests' fixed
   `testing` key) is served without IAM, so the other tests share the server. Where moto checks
   only the action (it passes resource `*` for CloudWatch Logs, DynamoDB, EventBridge and SSM),
   the resource ARN is derived from the request as AWS does, and TransactWriteItems is
   authorised per item (PutItem, UpdateItem, DeleteItem, ConditionCheckItem on the table, as
   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html
   says), where moto asks for an action IAM does not have. Every decision is appended, as one
   JSON line (access key, action, resource, allowed), to the file named by
   $TRAILWATCH_MOTO_CALLS_LOG, so a test can list the calls its code made under each role.
   Condition keys stay unevaluated (moto knows StringEquals on trust policies only).

Usage: python scripts/moto_server.py [moto_server's arguments]
"""

import json
import os
import threading

from moto.core.authorization import ActionAuthenticatorMixin
from moto.dynamodb.responses import DynamoHandler
from moto.events.models import Rule
from moto.iam import models as iam_models
from moto.logs.models import LogGroup
from moto.server import main
from moto.sqs.models import Queue

_DYNAMODB = threading.Lock()
_call_action = DynamoHandler.call_action


def _isolated_call_action(self):
    with _DYNAMODB:
        return _call_action(self)


DynamoHandler.call_action = _isolated_call_action


# --- 2. CloudFormation: FIFO queue names, inline role policies as JSON -------------------------

_queue_from_cfn = Queue.create_from_cloudformation_json.__func__


def _queue_from_cloudformation(cls, resource_name, cloudformation_json, *args, **kwargs):
    properties = cloudformation_json.get("Properties", {})
    fifo = str(properties.get("FifoQueue", "false")).lower() == "true"
    if fifo and "QueueName" not in properties:
        # AWS: "if you don't specify a name, CloudFormation generates one ... with the .fifo
        # suffix" (AWS::SQS::Queue, QueueName); the whole name stays within 80 characters.
        resource_name = str(resource_name)[: 80 - len(".fifo")] + ".fifo"
    return _queue_from_cfn(cls, resource_name, cloudformation_json, *args, **kwargs)


Queue.create_from_cloudformation_json = classmethod(_queue_from_cloudformation)

_role_put_policy = iam_models.Role.put_policy


def _put_policy_as_json(self, policy_name, policy_json):
    if not isinstance(policy_json, str):
        # moto resolves AWS::NoValue in a list to None; CloudFormation leaves the item out.
        statements = policy_json.get("Statement")
        if isinstance(statements, list):
            policy_json = {**policy_json, "Statement": [s for s in statements if s is not None]}
        policy_json = json.dumps(policy_json)
    return _role_put_policy(self, policy_name, policy_json)


iam_models.Role.put_policy = _put_policy_as_json

_log_group_attribute = LogGroup.get_cfn_attribute


def _log_group_arn_as_cloudformation(self, attribute_name):
    value = _log_group_attribute(self, attribute_name)
    return value + ":*" if attribute_name == "Arn" and not value.endswith(":*") else value


LogGroup.get_cfn_attribute = _log_group_arn_as_cloudformation

_rule_send_to_targets = Rule.send_to_targets


def _send_to_targets_as_aws(self, original_event, transform_input=True):
    if self.scheduled_expression and not self.event_pattern.get_pattern():
        return None
    if not self.event_pattern.matches_event(original_event):
        return None
    from moto.sns.models import sns_backends

    targets = self.targets
    for target in targets:
        arn = target["Arn"]
        if arn.startswith("arn:aws:sns:"):
            _, _, _, region, account, _ = arn.split(":", 5)
            sns_backends[account][region].publish(
                message=json.dumps(original_event), arn=arn
            )
    self.targets = [t for t in targets if t["Arn"].split(":")[2] not in ("sns", "lambda")]
    try:
        return _rule_send_to_targets(self, original_event, transform_input)
    finally:
        self.targets = targets


Rule.send_to_targets = _send_to_targets_as_aws


# --- 3. IAM for the functions' roles --------------------------------------------------------

_CALLS_LOG = os.environ.get("TRAILWATCH_MOTO_CALLS_LOG")
_CALLS_LOCK = threading.Lock()


def _record(access_key, action, resource, allowed):
    if not _CALLS_LOG:
        return
    line = json.dumps(
        {"key": access_key, "action": action, "resource": resource, "allowed": allowed}
    )
    with _CALLS_LOCK, open(_CALLS_LOG, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def _is_role_session(response):
    """Signed with temporary credentials (ASIA…, with a session token) that moto's STS issued."""
    authorization = response.headers.get("Authorization", "")
    if "Credential=ASIA" not in authorization:
        return False
    token = response.headers.get("X-Amz-Security-Token") or response.headers.get(
        "x-amz-security-token"
    )
    return bool(token)


def _body_json(response):
    """The request's JSON body (DynamoDB's handler has already replaced `body` by it)."""
    if isinstance(response.body, dict):
        return response.body
    try:
        return json.loads(response.raw_body or "{}")
    except (TypeError, ValueError):
        return {}


def _arn(response, service, rest):
    return f"arn:aws:{service}:{response.region}:{response.current_account}:{rest}"


# Batch actions IAM authorises as their single action
# (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-api-permissions-reference.html).
_SQS_BATCH = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _checks(response, service, action, resource):
    """(action, resource) pairs IAM evaluates for this request, as AWS evaluates them."""
    action = _SQS_BATCH.get(action, action)
    if resource != "*" or service not in ("dynamodb", "logs", "events", "ssm"):
        return [(action, resource)]
    body = _body_json(response)
    if service == "dynamodb":
        table = lambda name: _arn(response, "dynamodb", f"table/{name}")  # noqa: E731
        if action == "dynamodb:TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem"}
            return [
                (f"dynamodb:{kinds[kind]}", table(item[kind]["TableName"]))
                for item in body.get("TransactItems", [])
                for kind in item
            ]
        if action == "dynamodb:BatchGetItem":
            return [(action, table(name)) for name in body.get("RequestItems", {})]
        if "TableName" in body:
            return [(action, table(body["TableName"]))]
    if service == "logs" and "logGroupName" in body:
        group = _arn(response, "logs", f"log-group:{body['logGroupName']}")
        if "logStreamName" in body:
            return [(action, f"{group}:log-stream:{body['logStreamName']}")]
        return [(action, group)]
    if service == "events" and action == "events:PutEvents":
        buses = {e.get("EventBusName") or "default" for e in body.get("Entries", [])}
        return [
            (action, bus if bus.startswith("arn:") else _arn(response, "events", f"event-bus/{bus}"))
            for bus in sorted(buses)
        ]
    if service == "ssm" and "Name" in body:
        name = body["Name"].lstrip("/")
        return [(action, _arn(response, "ssm", f"parameter/{name}"))]
    return [(action, resource)]


def _authorize(self, iam_request_cls, resource="*"):
    if not _is_role_session(self):
        return
    from urllib.parse import urlparse

    parsed_url = urlparse(self.uri)
    path = self.raw_path + ("?" + parsed_url.query if parsed_url.query else "")
    iam_request = iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=path,
        data=self.data,
        body=self.raw_body,
        headers=self.headers,
        action=self._get_action(),
    )
    iam_request.check_signature()
    service, _, _ = iam_request._action.partition(":")
    access_key = self.headers["Authorization"].split("Credential=", 1)[1].split("/", 1)[0]
    for action, arn in _checks(self, service, iam_request._action, resource):
        iam_request._action = action
        try:
            iam_request.check_action_permitted(arn)
        except Exception:
            _record(access_key, action, arn, False)
            raise
        _record(access_key, action, arn, True)


ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize

if __name__ == "__main__":
    main()
