//! template.yaml itself under test: deployed into moto (translated by aws-sam-translator, created
//! by moto's CloudFormation) with the parameters users give, its wiring is checked on what the
//! stack created — each function's environment names the stack's own queues, table, bus and
//! log group; each queue feeds its function and dead-letters into a DLQ that has an alarm —
//! and what moto skips (queue and bus policies, the subscription filter, alarms, the Insights
//! function's failure handling) is checked as the template resolves it for the stack.
//!
//! Long by design: one test per wiring of the template, each checked on the deployed stack.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sqs::types::QueueAttributeName as A;
use serde_json::{json, Value};
use trailwatch_e2e::*;

fn deploy(options: StackOptions) -> DeployedStack {
    DeployedStack::deploy(&options)
}

async fn queue_attribute(sqs: &aws_sdk_sqs::Client, url: &str, name: A) -> Option<String> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {}", trailwatch_aws::describe(&e)));
    out.attributes().and_then(|a| a.get(&name)).cloned()
}

/// Every queue URL among the stack's outputs, by output name.
fn queues(stack: &DeployedStack) -> BTreeMap<&str, &str> {
    stack
        .outputs
        .iter()
        .filter(|(k, _)| k.ends_with("QueueUrl"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn statements(policy: &Value) -> Vec<&Value> {
    policy["Statement"].as_array().unwrap().iter().collect()
}

/// A value or list of values, as a set of texts.
fn set(v: &Value) -> BTreeSet<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect(),
        Value::String(s) => BTreeSet::from([s.clone()]),
        other => panic!("not a string or list: {other}"),
    }
}

fn role_arn(stack: &DeployedStack, logical: &str) -> String {
    stack.roles[logical].0.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_function_is_deployed_with_the_stacks_own_resources_and_role() {
    let stack = deploy(StackOptions::default());
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let select = stack.function("SelectFunction");
    assert_eq!(
        select.required(trailwatch_select_fn::DELIVERY_QUEUE_ENV),
        stack.output("DeliveryQueueUrl")
    );
    assert_eq!(
        select.required(trailwatch_select_fn::INSIGHTS_QUEUE_ENV),
        stack.output("InsightsQueueUrl")
    );
    assert_eq!(
        select
            .var(trailwatch_select_fn::ACCEPT_RECORDS_ENV)
            .as_deref(),
        Some("false")
    );
    let deliver = stack.function("DeliverFunction");
    assert_eq!(
        deliver.required(trailwatch_deliver_fn::LOG_GROUP_ENV),
        stack.output("TrailLogGroupName")
    );
    assert_eq!(
        deliver.required(trailwatch_deliver_fn::DEDUP_TABLE_ENV),
        stack.output("StateTableName")
    );
    assert_eq!(
        deliver.required(trailwatch_deliver_fn::HOLD_QUEUE_ENV),
        stack.output("HoldQueueUrl")
    );
    assert_eq!(deliver.required(trailwatch_deliver_fn::RETENTION_ENV), "90");
    assert_eq!(deliver.required(trailwatch_deliver_fn::MAX_WAIT_ENV), "120");
    let insights = stack.function("InsightsFunction");
    assert_eq!(
        insights.required(trailwatch_insights_fn::STATE_TABLE_ENV),
        stack.output("StateTableName")
    );
    assert_eq!(
        insights.required(trailwatch_insights_fn::EVENT_BUS_ENV),
        stack.output("InsightsBusName")
    );
    assert_eq!(
        insights.required(trailwatch_insights_fn::EVENT_SOURCE_ENV),
        "trailwatch.cloudtrail"
    );
    for (function, role) in [
        ("SelectFunction", "SelectFunctionRole"),
        ("DeliverFunction", "DeliverFunctionRole"),
        ("InsightsFunction", "InsightsFunctionRole"),
    ] {
        assert_eq!(
            stack.function(function).role,
            role_arn(&stack, role),
            "{function}'s role"
        );
    }
    // The hold queue is FIFO (one message group per stream), and every queue exists.
    for (output, url) in queues(&stack) {
        let arn = queue_attribute(&sqs, url, A::QueueArn).await;
        assert!(arn.is_some(), "{output} {url} does not exist");
    }
    let hold = stack.output("HoldQueueUrl");
    assert_eq!(
        queue_attribute(&sqs, hold, A::FifoQueue).await.as_deref(),
        Some("true")
    );
    // The names that must not collide between two stacks in one account and region.
    assert_eq!(
        stack.output("TrailLogGroupName"),
        format!("CloudTrail/{}", stack.name)
    );
    assert_eq!(
        stack.output("InsightsBusName"),
        format!("{}-insights", stack.name)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_queue_feeds_its_function_capped_and_dead_letters_into_an_alarmed_dlq() {
    let stack = deploy(
        StackOptions::default()
            .with("SelectMaximumConcurrency", "7")
            .with("DeliverMaximumConcurrency", "3"),
    );
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let function_arn = |logical: &str| {
        format!(
            "arn:aws:lambda:{REGION}:123456789012:function:{}",
            stack.function(logical).name
        )
    };
    // (queue output, its DLQ's output, the function it feeds, batch size, receives, cap)
    let wiring = [
        (
            "IngestQueueUrl",
            "IngestDeadLetterQueueUrl",
            "SelectFunction",
            10,
            5,
            7,
        ),
        (
            "DeliveryQueueUrl",
            "DeliveryDeadLetterQueueUrl",
            "DeliverFunction",
            100,
            5,
            3,
        ),
        (
            "HoldQueueUrl",
            "HoldDeadLetterQueueUrl",
            "DeliverFunction",
            10,
            50,
            3,
        ),
        (
            "InsightsQueueUrl",
            "InsightsDeadLetterQueueUrl",
            "InsightsFunction",
            10,
            5,
            2,
        ),
    ];
    let mut alarmed = BTreeSet::new();
    for alarm in stack.skipped.values() {
        if alarm["type"] == "AWS::CloudWatch::Alarm"
            && alarm["properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        {
            let p = &alarm["properties"];
            assert_eq!(
                (p["Threshold"].clone(), &p["ComparisonOperator"]),
                (json!(0), &json!("GreaterThanThreshold"))
            );
            assert_eq!(p["TreatMissingData"], "notBreaching");
            alarmed.insert(p["Dimensions"][0]["Value"].as_str().unwrap().to_owned());
        }
    }
    for (queue, dlq, function, batch, receives, cap) in wiring {
        let url = stack.output(queue);
        let arn = queue_attribute(&sqs, url, A::QueueArn).await.unwrap();
        let mapping = stack.mapping_of(&arn);
        assert_eq!(
            mapping["FunctionArn"],
            function_arn(function),
            "{queue} feeds {function}"
        );
        assert_eq!(mapping["BatchSize"], batch, "{queue}'s batch size");
        assert_eq!(
            mapping["FunctionResponseTypes"],
            json!(["ReportBatchItemFailures"]),
            "{queue}"
        );
        assert_eq!(
            mapping["ScalingConfig"]["MaximumConcurrency"], cap,
            "{queue}'s concurrency cap"
        );
        let redrive: Value =
            serde_json::from_str(&queue_attribute(&sqs, url, A::RedrivePolicy).await.unwrap())
                .unwrap();
        let dlq_url = stack.output(dlq);
        let dlq_arn = queue_attribute(&sqs, dlq_url, A::QueueArn).await.unwrap();
        assert_eq!(
            redrive["deadLetterTargetArn"], dlq_arn,
            "{queue} dead-letters into {dlq}"
        );
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            receives.to_string()
        );
        let dlq_name = dlq_arn.rsplit(':').next().unwrap();
        assert!(alarmed.contains(dlq_name), "no alarm on {dlq} ({dlq_name})");
        assert_eq!(
            queue_attribute(&sqs, dlq_url, A::MessageRetentionPeriod)
                .await
                .as_deref(),
            Some("1209600"),
            "{dlq} keeps messages 14 days"
        );
    }
    for dlq in [
        "InsightsFailedInvocationQueueUrl",
        "RuleTargetDeadLetterQueueUrl",
    ] {
        let arn = queue_attribute(&sqs, stack.output(dlq), A::QueueArn)
            .await
            .unwrap();
        assert!(
            alarmed.contains(arn.rsplit(':').next().unwrap()),
            "no alarm on {dlq}"
        );
    }
    // Every mapping reads one of these four queues.
    assert_eq!(stack.event_source_mappings.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_and_every_set_aside_metric_the_functions_emit_have_alarms() {
    let stack = deploy(StackOptions::default().with("IngestMaxAgeSeconds", "900"));
    let alarms: Vec<&Value> = stack
        .skipped
        .values()
        .filter(|r| r["type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["properties"])
        .collect();
    let ingest_name = stack
        .output("IngestQueueArn")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let age = alarms
        .iter()
        .find(|a| a["MetricName"] == "ApproximateAgeOfOldestMessage")
        .expect("an alarm on the ingest queue's oldest message");
    assert_eq!(age["Dimensions"][0]["Value"], ingest_name);
    assert_eq!(age["Threshold"], "900");
    // The metric names as the functions emit them (EMF, namespace trailwatch).
    let select_line: Value = serde_json::from_str(
        &trailwatch_select_fn::SelectTotals::default()
            .emf()
            .to_line(0),
    )
    .unwrap();
    let report = trailwatch::deliver::DeliveryReport::default();
    let deliver_line: Value =
        serde_json::from_str(&trailwatch_deliver_fn::emf(&report, &Default::default()).to_line(0))
            .unwrap();
    for (function, metric, line) in [
        ("select", "RejectedUnreadable", &select_line),
        ("deliver", "SetAside", &deliver_line),
    ] {
        assert!(
            line.get(metric).is_some(),
            "{function} emits no {metric}: {line}"
        );
        assert_eq!(line["Function"], function);
        let alarm = alarms
            .iter()
            .find(|a| a["MetricName"] == metric)
            .unwrap_or_else(|| panic!("no alarm on {function}'s {metric}"));
        assert_eq!(alarm["Namespace"], trailwatch_aws::metrics::NAMESPACE);
        assert_eq!(
            alarm["Dimensions"],
            json!([{"Name": "Function", "Value": function}])
        );
        assert_eq!(alarm["Statistic"], "Sum");
    }
    // Without AlarmTopicArn no action; with it every alarm notifies the topic.
    assert!(alarms.iter().all(|a| a.get("AlarmActions").is_none()));
    let topic = "arn:aws:sns:us-east-1:123456789012:ops-alarms";
    let notified = deploy(StackOptions::default().with("AlarmTopicArn", topic));
    let with_topic: Vec<&Value> = notified
        .skipped
        .values()
        .filter(|r| r["type"] == "AWS::CloudWatch::Alarm")
        .collect();
    assert_eq!(with_topic.len(), alarms.len());
    for alarm in with_topic {
        assert_eq!(alarm["properties"]["AlarmActions"], json!([topic]));
        assert_eq!(alarm["properties"]["OKActions"], json!([topic]));
    }
}

/// The ingest queue's policy: only the bucket, the rule (when EventBridge ingest is on), the
/// trail's topic (when given) and the redrive principal may send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_trails_own_sources_may_send_to_the_ingest_queue() {
    let redriver = "arn:aws:iam::123456789012:role/ops-redrive";
    for (eventbridge, topic) in [(false, false), (true, true)] {
        let mut options = StackOptions::default()
            .with("IngestFromEventBridge", &eventbridge.to_string())
            .with("RedrivePrincipalArn", redriver);
        options.sns_topic = topic;
        let stack = deploy(options);
        let policy = &stack.skipped("IngestQueuePolicy")["properties"];
        assert_eq!(policy["Queues"], json!([stack.output("IngestQueueUrl")]));
        let bucket = format!("arn:aws:s3:::{}", stack.bucket);
        let rule = stack
            .physical
            .get("CloudTrailEventsRule")
            .map(|name| format!("arn:aws:events:{REGION}:123456789012:rule/{name}"));
        assert_eq!(
            rule.is_some(),
            eventbridge,
            "the rule exists only with EventBridge ingest"
        );
        let topic_arn = stack
            .parameters
            .get("CloudTrailSnsTopicArn")
            .filter(|t| !t.is_empty());
        assert_eq!(topic_arn.is_some(), topic);
        let mut sources = BTreeSet::from([bucket.clone()]);
        sources.extend(rule.clone());
        sources.extend(topic_arn.cloned());

        let document = &policy["PolicyDocument"];
        let deny: Vec<&Value> = statements(document)
            .into_iter()
            .filter(|s| s["Effect"] == "Deny")
            .collect();
        assert_eq!(deny.len(), 1, "{document}");
        let deny = deny[0];
        assert_eq!(
            (&deny["Principal"], &deny["Action"]),
            (&json!("*"), &json!("sqs:SendMessage"))
        );
        assert_eq!(deny["Resource"], stack.output("IngestQueueArn"));
        assert_eq!(
            set(&deny["Condition"]["ArnNotEquals"]["aws:SourceArn"]),
            sources
        );
        assert_eq!(
            set(&deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]),
            BTreeSet::from([redriver.to_owned()])
        );
        let allowed: BTreeMap<String, String> = statements(document)
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .map(|s| {
                assert_eq!(s["Resource"], stack.output("IngestQueueArn"));
                (
                    s["Principal"]["Service"].as_str().unwrap().to_owned(),
                    s["Condition"]["ArnEquals"]["aws:SourceArn"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        let mut want = BTreeMap::from([("s3.amazonaws.com".to_owned(), bucket)]);
        want.extend(rule.map(|r| ("events.amazonaws.com".to_owned(), r)));
        want.extend(topic_arn.map(|t| ("sns.amazonaws.com".to_owned(), t.clone())));
        assert_eq!(allowed, want);
        if let Some(topic_arn) = topic_arn {
            let subscription = &stack.skipped("CloudTrailTopicSubscription")["properties"];
            assert_eq!(subscription["TopicArn"], *topic_arn);
            assert_eq!(subscription["Endpoint"], stack.output("IngestQueueArn"));
            assert_eq!(subscription["Protocol"], "sqs");
            assert_eq!(
                subscription["RawMessageDelivery"], false,
                "select unwraps SNS envelopes"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_functions_send_to_the_queues_between_them() {
    let stack = deploy(StackOptions::default());
    let select_role = role_arn(&stack, "SelectFunctionRole");
    let deliver_role = role_arn(&stack, "DeliverFunctionRole");
    let queue_arn = |output: &str| {
        let url = stack.output(output);
        format!(
            "arn:aws:sqs:{REGION}:123456789012:{}",
            url.rsplit('/').next().unwrap()
        )
    };
    for (policy, queues, sender) in [
        (
            "SelectOutputQueuesPolicy",
            vec!["DeliveryQueueUrl", "InsightsQueueUrl"],
            &select_role,
        ),
        ("HoldQueuePolicy", vec!["HoldQueueUrl"], &deliver_role),
    ] {
        let p = &stack.skipped(policy)["properties"];
        let urls: Vec<&str> = queues.iter().map(|q| stack.output(q)).collect();
        assert_eq!(p["Queues"], json!(urls), "{policy}");
        let only = statements(&p["PolicyDocument"]);
        assert_eq!(only.len(), 1, "{policy}");
        let deny = only[0];
        assert_eq!(
            (&deny["Effect"], &deny["Principal"], &deny["Action"]),
            (&json!("Deny"), &json!("*"), &json!("sqs:SendMessage"))
        );
        assert_eq!(
            set(&deny["Resource"]),
            queues.iter().map(|q| queue_arn(q)).collect()
        );
        // Without RedrivePrincipalArn the function's role stands alone.
        assert_eq!(
            set(&deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]),
            BTreeSet::from([sender.clone()])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_insights_role_may_put_insights_on_the_bus() {
    let stack = deploy(StackOptions::default());
    let bus = &stack.template["Resources"]["InsightsBus"]["Properties"]["Policy"];
    let only = statements(bus);
    assert_eq!(only.len(), 1);
    let deny = only[0];
    assert_eq!(
        (&deny["Effect"], &deny["Principal"], &deny["Action"]),
        (&json!("Deny"), &json!("*"), &json!("events:PutEvents"))
    );
    assert_eq!(
        deny["Condition"]["StringEquals"]["events:source"],
        json!({"Ref": "InsightsEventSource"})
    );
    assert_eq!(
        deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
        json!({"Fn::GetAtt": ["InsightsFunctionRole", "Arn"]})
    );
    // The policy's resource is the bus itself, as deployed.
    let resolved = deny["Resource"]["Fn::Sub"][1]["Name"].clone();
    assert_eq!(resolved["Fn::If"][0], "HasInsightsBusName");
    assert_eq!(
        stack.output("InsightsBusArn"),
        format!(
            "arn:aws:events:{REGION}:123456789012:event-bus/{}",
            stack.output("InsightsBusName")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_failures_are_kept_whole_for_a_re_invoke_and_rule_targets_have_dlqs() {
    let stack = deploy(StackOptions::default().with("IngestFromEventBridge", "true"));
    let resources = &stack.template["Resources"];
    let function = &resources["InsightsFunction"]["Properties"];
    assert_eq!(
        function["DeadLetterConfig"]["TargetArn"],
        json!({"Fn::GetAtt": ["InsightsFailedInvocationQueue", "Arn"]}),
        "failed asynchronous invocations kept with their event as invoked"
    );
    let invoke = &stack.skipped("InsightsFunctionEventInvokeConfig")["properties"];
    assert_eq!(invoke["MaximumRetryAttempts"], 2);
    assert!(
        invoke["DestinationConfig"].get("OnFailure").is_none(),
        "an on-failure destination wraps the event: {invoke}"
    );
    let subscription = &stack.skipped("InsightsFunctionTrailLogSubscription")["properties"];
    assert_eq!(
        subscription["LogGroupName"],
        stack.output("TrailLogGroupName")
    );
    assert!(subscription["DestinationArn"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            ":function:{}",
            stack.function("InsightsFunction").name
        )));
    // Every rule's every target retries and dead-letters into the rule-target DLQ, whose
    // policy lets exactly those rules send.
    let mut rules = BTreeSet::new();
    for (name, resource) in resources.as_object().unwrap() {
        if resource["Type"] != "AWS::Events::Rule" {
            continue;
        }
        rules.insert(name.clone());
        for target in resource["Properties"]["Targets"].as_array().unwrap() {
            assert_eq!(
                target["DeadLetterConfig"]["Arn"],
                json!({"Fn::GetAtt": ["RuleTargetDeadLetterQueue", "Arn"]}),
                "{name}"
            );
            assert!(
                target["RetryPolicy"]["MaximumRetryAttempts"]
                    .as_u64()
                    .is_some(),
                "{name}"
            );
        }
    }
    assert_eq!(
        rules,
        BTreeSet::from([
            "CloudTrailEventsRule".into(),
            "InsightsAlertRule".into(),
            "InsightsFunctionEveryMinute".into()
        ])
    );
    let dlq_policy =
        &stack.skipped("RuleTargetDeadLetterQueuePolicy")["properties"]["PolicyDocument"];
    let sources = set(&statements(dlq_policy)[0]["Condition"]["ArnEquals"]["aws:SourceArn"]);
    let deployed_rules: BTreeSet<String> = rules
        .iter()
        .map(|r| {
            format!(
                "arn:aws:events:{REGION}:123456789012:rule/{}",
                stack.physical[r]
            )
        })
        .collect();
    assert_eq!(sources, deployed_rules);
}

/// Least privilege as the template writes it, where moto cannot evaluate it (condition keys):
/// the table's items per role, KMS only through S3, listing only the trail's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_scoped_by_conditions_moto_cannot_evaluate() {
    let stack = deploy(StackOptions::default());
    let statement = |role: &str, sid: &str| -> Value {
        stack.roles[role].1[0]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("{role} has no statement {sid}"))
            .clone()
    };
    let leading =
        |s: &Value| s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].clone();
    assert_eq!(
        leading(&statement("DeliverFunctionRole", "DeduplicateDeliveries")),
        json!(["dedup#*"])
    );
    assert_eq!(
        leading(&statement("InsightsFunctionRole", "InsightsState")),
        json!(["insights#*", "detect#*"])
    );
    let kms = statement("SelectFunctionRole", "DecryptTrailLogFiles");
    assert_eq!(kms["Resource"], stack.parameters["CloudTrailKmsKeyArn"]);
    assert_eq!(
        kms["Condition"]["StringEquals"]["kms:ViaService"],
        format!("s3.{REGION}.amazonaws.com")
    );
    let list = statement("SelectFunctionRole", "TellMissingTrailLogFiles");
    assert_eq!(list["Action"], "s3:ListBucket");
    assert_eq!(list["Resource"], format!("arn:aws:s3:::{}", stack.bucket));
    assert_eq!(
        list["Condition"]["StringLike"]["s3:prefix"],
        "org-trail/AWSLogs/*"
    );
    let read = statement("SelectFunctionRole", "ReadTrailLogFiles");
    assert_eq!(
        read["Resource"],
        format!("arn:aws:s3:::{}/org-trail/AWSLogs/*", stack.bucket)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stack_adopts_the_log_group_a_deleted_one_retained() {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk().await);
    let retained = unique("CloudTrail/retained");
    logs.create_log_group()
        .log_group_name(&retained)
        .send()
        .await
        .unwrap();
    let stack = deploy(
        StackOptions::default()
            .with("LogGroupName", &retained)
            .with("AdoptExistingLogGroup", "true"),
    );
    assert!(
        !stack.physical.contains_key("TrailLogGroup"),
        "the stack does not create it"
    );
    assert_eq!(stack.output("TrailLogGroupName"), retained);
    let deliver = stack.function("DeliverFunction");
    assert_eq!(
        deliver.required(trailwatch_deliver_fn::LOG_GROUP_ENV),
        retained
    );
    assert_eq!(
        stack.skipped("InsightsFunctionTrailLogSubscription")["properties"]["LogGroupName"],
        retained
    );
    let write = stack.roles["DeliverFunctionRole"].1[0]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "WriteTrailLogStreams")
        .unwrap()["Resource"]
        .clone();
    assert_eq!(
        write,
        format!("arn:aws:logs:{REGION}:123456789012:log-group:{retained}:log-stream:*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_in_ssm_is_named_to_the_functions_and_readable_by_their_roles_only() {
    let config = std::fs::read_to_string(repo_root().join("events/trail-config.json")).unwrap();
    let stack = deploy(StackOptions {
        ssm_config: Some(config),
        ..StackOptions::default()
    });
    let name = stack.parameters["TrailConfigParameterName"].clone();
    let arn = format!(
        "arn:aws:ssm:{REGION}:123456789012:parameter/{}",
        name.trim_start_matches('/')
    );
    for (function, role) in [
        ("SelectFunction", "SelectFunctionRole"),
        ("InsightsFunction", "InsightsFunctionRole"),
    ] {
        assert_eq!(
            stack
                .function(function)
                .var("TRAILWATCH_TRAIL_CONFIG_PARAMETER"),
            Some(name.clone())
        );
        let read = stack.roles[role].1[0]["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "ReadTrailConfigParameter")
            .unwrap_or_else(|| panic!("{role} cannot read the parameter"))
            .clone();
        assert_eq!(
            read["Resource"], arn,
            "no 'parameter//' for a name with a leading '/'"
        );
    }
    assert!(
        !stack.roles["DeliverFunctionRole"].1[0]
            .to_string()
            .contains("ssm:"),
        "deliver reads no configuration"
    );
}
