"""template.yaml as a deployed stack, in moto: the deployed-stack tests' harness.

    python scripts/moto_stack.py translate [--param K=V ...]
        prints the template translated to plain CloudFormation (JSON), as SAM would deploy it
    python scripts/moto_stack.py publish --endpoint URL --topic-arn ARN --message TEXT
        publishes to an SNS topic in moto (as CloudTrail does to the trail's topic)
    python scripts/moto_stack.py deploy --endpoint URL --stack NAME [--param K=V ...]
            [--bucket NAME] [--kms-key] [--sns-topic] [--ssm-parameter NAME=FILE]
        creates what the stack expects to exist (the trail bucket, a KMS key whose ARN becomes
        CloudTrailKmsKeyArn, the trail's SNS topic, the SSM parameter holding the trail
        configuration), creates the
        stack in moto's CloudFormation and prints, as JSON, what it created: outputs, physical
        ids, each function's name, role and environment as deployed, the roles' policies, the
        event source mappings, and the translated template

Run it with .venv-sam's python (scripts/tools.sh): aws-sam-translator is the SAM CLI's own.
The translation is offline (the managed-policy loader answers {}: every role here is explicit).
moto skips what it does not model (queue and topic policies, SNS subscriptions, the
subscription filter, EventInvokeConfig): tests/aws/stack.rs checks those against the
translated template. The event source mappings are disabled after creation: the tests play
Lambda's poller themselves, and moto would otherwise invoke (in Docker) on every message.
"""

import argparse
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import boto3
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ARTIFACTS = "trailwatch-test-artifacts"


class NoManagedPolicies:
    def load(self):
        return {}


def translate(parameters, code_uri=(ARTIFACTS, "function.zip")):
    """The SAM template as CloudFormation, each CodeUri pointed at `code_uri` (bucket, key), as
    `sam deploy` points it at the uploaded package."""
    template = yaml_parse((ROOT / "template.yaml").read_text())
    bucket, key = code_uri
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{bucket}/{key}"
    return transform(template, parameters, NoManagedPolicies())


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def function_zip():
    """A stand-in code package: moto's CreateFunction needs a zip; nothing here runs it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    return buffer.getvalue()


def prepare(args, endpoint, parameters):
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=ARTIFACTS)
    s3.put_object(Bucket=ARTIFACTS, Key="function.zip", Body=function_zip())
    if args.bucket:
        s3.create_bucket(Bucket=args.bucket)
        parameters["CloudTrailBucketName"] = args.bucket
    if args.kms_key:
        key = client("kms", endpoint).create_key(Description=f"{args.stack} trail files")
        parameters["CloudTrailKmsKeyArn"] = key["KeyMetadata"]["Arn"]
    if args.sns_topic:
        topic = client("sns", endpoint).create_topic(Name=f"{args.stack}-trail-topic")
        parameters["CloudTrailSnsTopicArn"] = topic["TopicArn"]
    for spec in args.ssm_parameter or []:
        name, _, path = spec.partition("=")
        client("ssm", endpoint).put_parameter(
            Name=name, Value=Path(path).read_text(), Type="String", Overwrite=True
        )
        parameters["TrailConfigParameterName"] = name


# Resource types moto's CloudFormation skips: their properties are resolved here against what
# the stack created, so that tests can check them.
SKIPPED = {
    "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription",
    "AWS::Lambda::EventInvokeConfig", "AWS::Logs::SubscriptionFilter", "AWS::CloudWatch::Alarm",
}
NO_VALUE = object()


class Resolver:
    """Ref, GetAtt, Sub, If, Join, Split, Select, Equals/Not/And/Or, as CloudFormation resolves
    them, over the deployed stack's parameters and physical ids."""

    def __init__(self, endpoint, template, parameters, resources):
        self.template = template
        self.values = {
            name: str(parameters.get(name, spec.get("Default", "")))
            for name, spec in template.get("Parameters", {}).items()
        }
        self.values.update({"AWS::Region": REGION, "AWS::AccountId": "123456789012",
                            "AWS::Partition": "aws", "AWS::NoValue": NO_VALUE})
        self.physical = {k: v["physical"] for k, v in resources.items()}
        self.types = {k: v["type"] for k, v in resources.items()}
        self.endpoint = endpoint
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = self.resolve(self.template["Conditions"][name])
        return self.conditions[name]

    def ref(self, name):
        if name in self.values:
            return self.values[name]
        return self.physical[name]

    def get_att(self, name, attribute):
        kind, physical = self.types[name], self.physical[name]
        if kind == "AWS::SQS::Queue":
            attrs = client("sqs", self.endpoint).get_queue_attributes(
                QueueUrl=physical, AttributeNames=["QueueArn"])["Attributes"]
            return {"Arn": attrs["QueueArn"], "QueueName": attrs["QueueArn"].split(":")[-1],
                    "QueueUrl": physical}[attribute]
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return client("iam", self.endpoint).get_role(
                RoleName=physical.split("/")[-1])["Role"]["Arn"]
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            if physical.startswith("arn:"):
                return physical
            return f"arn:aws:events:{REGION}:123456789012:rule/{physical}"
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return client("lambda", self.endpoint).get_function_configuration(
                FunctionName=physical)["FunctionArn"]
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:123456789012:log-group:{physical}:*"
        raise ValueError(f"GetAtt {name}.{attribute} ({kind}) not modelled")

    def sub(self, text, variables):
        def one(match):
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".")[0] in self.physical:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))
        import re
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(n) for n in node]
            return [i for i in items if i is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self.sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
                return self.sub(arg, {})
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Join":
                return arg[0].join(self.resolve(arg[1]))
            if key == "Fn::Split":
                return self.resolve(arg[1]).split(arg[0])
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(x) for x in arg)
            if key == "Fn::Or":
                return any(self.resolve(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def skipped(self):
        """The resources moto skipped, in the stack's conditions, with properties resolved."""
        out = {}
        for name, resource in self.template["Resources"].items():
            if resource["Type"] not in SKIPPED:
                continue
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[name] = {"type": resource["Type"],
                         "properties": self.resolve(resource.get("Properties", {}))}
        return out


def apply_skipped(endpoint, stack, skipped):
    """Creates, through the services' own APIs, what moto's CloudFormation skipped and moto can
    hold: queue and topic policies (stored, not evaluated), SNS subscriptions (moto delivers
    through them), alarms (stored). Left out: the subscription filter (moto would invoke the
    function in Docker on every PutLogEvents) and EventInvokeConfig."""
    sqs, sns, cloudwatch = (client(s, endpoint) for s in ("sqs", "sns", "cloudwatch"))
    for logical, resource in skipped.items():
        kind, p = resource["type"], resource["properties"]
        if kind == "AWS::SQS::QueuePolicy":
            for url in p["Queues"]:
                sqs.set_queue_attributes(
                    QueueUrl=url, Attributes={"Policy": json.dumps(p["PolicyDocument"])})
        elif kind == "AWS::SNS::TopicPolicy":
            for arn in p["Topics"]:
                sns.set_topic_attributes(TopicArn=arn, AttributeName="Policy",
                                         AttributeValue=json.dumps(p["PolicyDocument"]))
        elif kind == "AWS::SNS::Subscription" and p["Protocol"] == "sqs":
            sns.subscribe(TopicArn=p["TopicArn"], Protocol="sqs", Endpoint=p["Endpoint"],
                          Attributes={"RawMessageDelivery": str(p.get("RawMessageDelivery", False)).lower()})
        elif kind == "AWS::CloudWatch::Alarm":
            # CloudFormation converts parameters to the property's type; the API does not.
            numbers = {"Threshold": float, "Period": int, "EvaluationPeriods": int}
            alarm = {k: numbers.get(k, lambda v: v)(v) for k, v in p.items()}
            alarm.setdefault("AlarmName", f"{stack}-{logical}")
            cloudwatch.put_metric_alarm(**alarm)


def wait_created(cfn, stack):
    deadline = time.monotonic() + 60
    while True:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if status == "CREATE_COMPLETE":
            return
        if status.endswith("FAILED") or status.startswith("ROLLBACK"):
            events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
            reasons = [e.get("ResourceStatusReason") for e in events if e.get("ResourceStatusReason")]
            sys.exit(f"stack {stack}: {status}: {reasons[:5]}")
        if time.monotonic() > deadline:
            sys.exit(f"stack {stack}: still {status} after 60 s")
        time.sleep(0.2)


def describe(endpoint, stack, template, parameters):
    cfn = client("cloudformation", endpoint)
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    }
    resources = {
        r["LogicalResourceId"]: {"type": r["ResourceType"], "physical": r["PhysicalResourceId"]}
        for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    }
    lam, iam = client("lambda", endpoint), client("iam", endpoint)
    functions = {}
    for logical, r in resources.items():
        if r["type"] != "AWS::Lambda::Function":
            continue
        config = lam.get_function_configuration(FunctionName=r["physical"])
        functions[logical] = {
            "name": config["FunctionName"],
            "role": config["Role"],
            "environment": config.get("Environment", {}).get("Variables", {}),
            "dead_letter": config.get("DeadLetterConfig", {}).get("TargetArn"),
        }
    roles = {}
    for logical, r in resources.items():
        if r["type"] != "AWS::IAM::Role":
            continue
        name = r["physical"].split("/")[-1]
        policies = {
            p: iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
        }
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        # Temporary credentials of the role, as Lambda gets them for the function (AssumeRole):
        # moto_server.py enforces IAM on requests signed with them.
        session = client("sts", endpoint).assume_role(RoleArn=arn, RoleSessionName=logical)
        credentials = {k: session["Credentials"][k]
                       for k in ("AccessKeyId", "SecretAccessKey", "SessionToken")}
        roles[logical] = {"arn": arn, "policies": policies, "credentials": credentials}
    mappings = []
    for m in lam.list_event_source_mappings()["EventSourceMappings"]:
        if not any(m["FunctionArn"].endswith(":" + f["name"]) for f in functions.values()):
            continue
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
        mappings.append(
            {k: m.get(k) for k in ("UUID", "FunctionArn", "EventSourceArn", "BatchSize",
                                   "MaximumBatchingWindowInSeconds", "FunctionResponseTypes",
                                   "ScalingConfig")}
        )
    return {
        "stack": stack,
        "parameters": parameters,
        "outputs": outputs,
        "resources": resources,
        "functions": functions,
        "roles": roles,
        "event_source_mappings": mappings,
        "skipped": Resolver(endpoint, template, parameters, resources).skipped(),
        "template": template,
    }


def deploy(args):
    endpoint = args.endpoint
    parameters = dict(p.split("=", 1) for p in args.param or [])
    prepare(args, endpoint, parameters)
    template = translate(parameters)
    cfn = client("cloudformation", endpoint)
    cfn.create_stack(
        StackName=args.stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    wait_created(cfn, args.stack)
    description = describe(endpoint, args.stack, template, parameters)
    apply_skipped(endpoint, args.stack, description["skipped"])
    json.dump(description, sys.stdout)


def publish(args):
    """Publishes MESSAGE to the topic, as the trail does (the tests have no SNS client)."""
    client("sns", args.endpoint).publish(TopicArn=args.topic_arn, Message=args.message)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("translate")
    t.add_argument("--param", action="append", help="K=V, a template parameter")
    d = commands.add_parser("deploy")
    d.add_argument("--endpoint", required=True)
    d.add_argument("--stack", required=True)
    d.add_argument("--param", action="append", help="K=V, a template parameter")
    d.add_argument("--bucket", help="create this trail bucket (CloudTrailBucketName)")
    d.add_argument("--kms-key", action="store_true", help="create a key (CloudTrailKmsKeyArn)")
    d.add_argument("--sns-topic", action="store_true",
                   help="create the trail's topic (CloudTrailSnsTopicArn)")
    d.add_argument("--ssm-parameter", action="append",
                   help="NAME=FILE: put FILE as the parameter (TrailConfigParameterName)")
    p = commands.add_parser("publish")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--topic-arn", required=True)
    p.add_argument("--message", required=True)
    args = parser.parse_args()
    # Nothing here may reach AWS: dummy credentials, no profile files.
    os.environ.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                      AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION)
    if args.command == "translate":
        parameters = dict(p.split("=", 1) for p in args.param or [])
        json.dump(translate(parameters), sys.stdout, indent=1)
    elif args.command == "publish":
        publish(args)
    else:
        deploy(args)


if __name__ == "__main__":
    main()
