//! template.yaml deployed in moto: the stack the end-to-end tests run the pipeline through.
//!
//! `scripts/moto_stack.py` translates the template with aws-sam-translator (SAM's own, offline)
//! and creates it in moto's CloudFormation with the parameters a user would give; what the
//! stack created (outputs, physical ids, each function's environment and role as deployed, the
//! roles' policies, the event source mappings) and the resources moto skips, resolved against
//! the stack (queue and topic policies, the subscription filter, alarms), come back as JSON.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use crate::{endpoint, repo_root, unique};

/// What a test deploys: the template's parameters, and what must exist before the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub parameters: Vec<(String, String)>,
    /// A customer-managed key for the trail's files (`CloudTrailKmsKeyArn`).
    pub kms_key: bool,
    /// An SSM parameter holding this trail configuration (`TrailConfigParameterName`).
    pub ssm_config: Option<String>,
    /// The trail's SNS topic (`CloudTrailSnsTopicArn`).
    pub sns_topic: bool,
}

impl Default for StackOptions {
    /// What a user with an organisation trail under a prefix gives: the prefix, its KMS key,
    /// S3 ingest only.
    fn default() -> Self {
        StackOptions {
            parameters: vec![
                ("CloudTrailKeyPrefix".into(), "org-trail".into()),
                ("IngestFromEventBridge".into(), "false".into()),
            ],
            kms_key: true,
            ssm_config: None,
            sns_topic: false,
        }
    }
}

impl StackOptions {
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.parameters.retain(|(n, _)| n != name);
        self.parameters.push((name.into(), value.into()));
        self
    }
}

/// A function as deployed: its name, role and environment (every value as text, as Lambda
/// hands it to the process).
#[derive(Debug, Clone)]
pub struct DeployedFunction {
    pub name: String,
    pub role: String,
    pub environment: BTreeMap<String, String>,
}

impl DeployedFunction {
    /// The variable as the function reads it; `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<String> {
        self.environment
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// A variable the function requires: the test fails naming it when the stack lacks it.
    pub fn required(&self, name: &str) -> String {
        self.var(name)
            .unwrap_or_else(|| panic!("{} is deployed without {name}", self.name))
    }
}

#[derive(Debug, Clone)]
pub struct DeployedStack {
    pub name: String,
    pub bucket: String,
    /// The parameters as given (the KMS key's ARN included).
    pub parameters: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    /// Logical id → physical id.
    pub physical: BTreeMap<String, String>,
    pub functions: BTreeMap<String, DeployedFunction>,
    /// Logical id of each role → its ARN and inline policy documents.
    pub roles: BTreeMap<String, (String, Vec<Value>)>,
    /// Logical id of each role → temporary credentials of a session of it (AssumeRole), as
    /// Lambda gets them: access key id, secret, session token.
    pub role_credentials: BTreeMap<String, [String; 3]>,
    pub event_source_mappings: Vec<Value>,
    /// Resources moto's CloudFormation skips, with their properties resolved.
    pub skipped: BTreeMap<String, Value>,
    /// The template as translated (plain CloudFormation).
    pub template: Value,
}

impl DeployedStack {
    /// Deploys template.yaml into moto as a stack of its own, with a trail bucket of its own.
    pub fn deploy(options: &StackOptions) -> DeployedStack {
        let name = unique("tw");
        let bucket = format!("{name}-trail");
        let python = repo_root().join(".venv-sam/bin/python");
        assert!(
            python.exists(),
            "{} missing: run scripts/tools.sh (aws-sam-translator translates the template)",
            python.display()
        );
        let mut command = Command::new(python);
        command
            .arg(repo_root().join("scripts/moto_stack.py"))
            .args(["deploy", "--endpoint", &endpoint(), "--stack", &name])
            .args(["--bucket", &bucket]);
        for (key, value) in &options.parameters {
            command.arg("--param").arg(format!("{key}={value}"));
        }
        if options.kms_key {
            command.arg("--kms-key");
        }
        if options.sns_topic {
            command.arg("--sns-topic");
        }
        let config_file;
        if let Some(config) = &options.ssm_config {
            config_file = std::env::temp_dir().join(format!("{name}-trail-config.json"));
            std::fs::write(&config_file, config).unwrap();
            command
                .arg("--ssm-parameter")
                .arg(format!("/{name}/trail-config={}", config_file.display()));
        }
        let out = command.output().expect("scripts/moto_stack.py runs");
        assert!(
            out.status.success(),
            "deploying template.yaml into moto failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let description: Value = serde_json::from_slice(&out.stdout).unwrap();
        Self::from_description(name, bucket, description)
    }

    fn from_description(name: String, bucket: String, d: Value) -> DeployedStack {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let strings = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default()
        };
        let functions = d["functions"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(logical, f)| {
                let function = DeployedFunction {
                    name: text(&f["name"]),
                    role: text(&f["role"]),
                    environment: strings(&f["environment"]),
                };
                (logical.clone(), function)
            })
            .collect();
        let roles = d["roles"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(logical, r)| {
                let policies = r["policies"].as_object().unwrap().values().cloned();
                (logical.clone(), (text(&r["arn"]), policies.collect()))
            })
            .collect();
        let role_credentials = d["roles"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(logical, r)| {
                let c = &r["credentials"];
                let field = |k: &str| c[k].as_str().unwrap().to_owned();
                let credentials = [
                    field("AccessKeyId"),
                    field("SecretAccessKey"),
                    field("SessionToken"),
                ];
                (logical.clone(), credentials)
            })
            .collect();
        DeployedStack {
            name,
            bucket,
            role_credentials,
            parameters: strings(&d["parameters"]),
            outputs: strings(&d["outputs"]),
            physical: d["resources"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), text(&v["physical"])))
                .collect(),
            functions,
            roles,
            event_source_mappings: d["event_source_mappings"].as_array().unwrap().clone(),
            skipped: d["skipped"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            template: d["template"].clone(),
        }
    }

    /// A stack output; the test fails naming it when the stack has none of that name.
    pub fn output(&self, key: &str) -> &str {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("stack {} has no output {key}", self.name))
    }

    pub fn function(&self, logical: &str) -> &DeployedFunction {
        self.functions
            .get(logical)
            .unwrap_or_else(|| panic!("stack {} has no function {logical}", self.name))
    }

    /// The SDK configuration of a session of `role` (moto enforces IAM on it), as the function
    /// runs under its role in Lambda.
    pub async fn role_sdk(&self, role: &str) -> aws_config::SdkConfig {
        let [key, secret, token] = self.role_credentials[role].clone();
        crate::sdk_with(aws_sdk_s3::config::Credentials::new(
            key,
            secret,
            Some(token),
            None,
            "role",
        ))
        .await
    }

    /// A resource moto skipped, as the template resolves it for this stack.
    pub fn skipped(&self, logical: &str) -> &Value {
        self.skipped.get(logical).unwrap_or_else(|| {
            panic!(
                "stack {} has no {logical} (or not in its conditions)",
                self.name
            )
        })
    }

    /// Where the trail writes its log files: `<prefix>/AWSLogs/...` or `AWSLogs/...`.
    pub fn key_prefix(&self) -> String {
        match self.parameters.get("CloudTrailKeyPrefix") {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        }
    }

    /// The event source mapping of the queue with this ARN (the stack's trigger for it).
    pub fn mapping_of(&self, queue_arn: &str) -> &Value {
        self.event_source_mappings
            .iter()
            .find(|m| m["EventSourceArn"] == queue_arn)
            .unwrap_or_else(|| panic!("no event source mapping reads {queue_arn}"))
    }
}

/// The functions' contexts as each function builds them at cold start from its environment as
/// deployed (the variable names are the functions' own constants), with clients of `sdk`: the
/// tests' configuration, or one signed with the function's role.
pub mod contexts {
    use aws_config::SdkConfig;
    use trailwatch::deliver::ledger::DEFAULT_CLAIM_LEASE_MS;
    use trailwatch::detect::Noise;
    use trailwatch::insights::InsightsConfig;
    use trailwatch::select::TrailConfig;
    use trailwatch_aws::cloudwatch_logs::CloudWatchLogs;
    use trailwatch_aws::dedup::DynamoDbLedger;
    use trailwatch_aws::detection_windows::DynamoDbWindows;
    use trailwatch_aws::eventbridge::EventBridgeBus;
    use trailwatch_aws::insights_state::DynamoDbInsightsStore;
    use trailwatch_aws::s3::S3Objects;
    use trailwatch_aws::sqs::SqsSender;
    use trailwatch_deliver_fn as deliver;
    use trailwatch_insights_fn as insights;
    use trailwatch_select_fn as select;

    use super::DeployedFunction;
    use crate::s3_client;

    pub fn select(
        f: &DeployedFunction,
        sdk: &SdkConfig,
        config: &TrailConfig,
    ) -> select::SelectContext {
        select::SelectContext {
            s3: S3Objects::new(s3_client(sdk)),
            sqs: SqsSender::new(aws_sdk_sqs::Client::new(sdk)),
            delivery_queue: f.required(select::DELIVERY_QUEUE_ENV),
            insights_queue: f.required(select::INSIGHTS_QUEUE_ENV),
            matcher: config.compile(),
            accept_records: select::accept_records(f.var(select::ACCEPT_RECORDS_ENV).as_deref())
                .unwrap(),
            detector: detector(f),
        }
    }

    /// The detector as the select function builds it from its environment as deployed.
    pub fn detector(f: &DeployedFunction) -> Option<trailwatch::detect::Detector> {
        select::detector_from_env(|name| f.var(name)).unwrap()
    }

    pub fn deliver(f: &DeployedFunction, sdk: &SdkConfig) -> deliver::DeliverContext {
        let retention: u32 = f.required(deliver::RETENTION_ENV).parse().unwrap();
        let max_wait: i64 = f.required(deliver::MAX_WAIT_ENV).parse().unwrap();
        let sqs = SqsSender::new(aws_sdk_sqs::Client::new(sdk));
        deliver::DeliverContext {
            sink: CloudWatchLogs::new(
                aws_sdk_cloudwatchlogs::Client::new(sdk),
                f.required(deliver::LOG_GROUP_ENV),
                Some(retention),
            ),
            retention_days: retention,
            hold: Some(deliver::HoldBack {
                sqs,
                queue_url: f.required(deliver::HOLD_QUEUE_ENV),
                max_wait_ms: max_wait * 1000,
            }),
            claim_lease_ms: f
                .var(deliver::CLAIM_LEASE_ENV)
                .map_or(DEFAULT_CLAIM_LEASE_MS, |s| s.parse::<i64>().unwrap() * 1000),
        }
    }

    pub fn ledger(f: &DeployedFunction, sdk: &SdkConfig) -> DynamoDbLedger {
        DynamoDbLedger::new(
            aws_sdk_dynamodb::Client::new(sdk),
            f.required(deliver::DEDUP_TABLE_ENV),
        )
    }

    pub fn insights(f: &DeployedFunction, sdk: &SdkConfig) -> insights::InsightsContext {
        insights::InsightsContext {
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(sdk),
                f.required(insights::EVENT_BUS_ENV),
            ),
            source: f.required(insights::EVENT_SOURCE_ENV),
            detections: insights::detections::Detections {
                noise: f
                    .var(insights::detections::DETECTIONS_NOISE_ENV)
                    .map_or_else(Noise::default, |text| Noise::from_json(&text).unwrap()),
                windows: Some(DynamoDbWindows::new(
                    aws_sdk_dynamodb::Client::new(sdk),
                    f.required(insights::STATE_TABLE_ENV),
                )),
            },
        }
    }

    pub fn insights_state(
        f: &DeployedFunction,
        sdk: &SdkConfig,
        config: InsightsConfig,
        source: &str,
    ) -> insights::StateContext {
        insights::StateContext {
            store: DynamoDbInsightsStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                f.required(insights::STATE_TABLE_ENV),
            ),
            config,
            settings: insights::evaluate::EvaluateSettings::new(source),
        }
    }
}

/// Sends the bucket's new log files to the ingest queue exactly as the stack's
/// `BucketNotificationCommand` output says (its notification configuration, prefix filter
/// included), as a user runs it once after deploying.
pub async fn notify_as_the_output_says(stack: &DeployedStack, s3: &aws_sdk_s3::Client) {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let command = stack.output("BucketNotificationCommand");
    assert!(
        command.contains(&format!("--bucket {} ", stack.bucket)),
        "{command}"
    );
    let json = command
        .split_once("--notification-configuration '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no configuration in {command}"));
    let config: Value = serde_json::from_str(json).unwrap();
    let mut queues = Vec::new();
    for q in config["QueueConfigurations"].as_array().unwrap() {
        let rules = q["Filter"]["Key"]["FilterRules"].as_array().unwrap();
        let filter = S3KeyFilter::builder()
            .set_filter_rules(Some(
                rules
                    .iter()
                    .map(|r| {
                        FilterRule::builder()
                            .name(FilterRuleName::from(r["Name"].as_str().unwrap()))
                            .value(r["Value"].as_str().unwrap())
                            .build()
                    })
                    .collect(),
            ))
            .build();
        queues.push(
            QueueConfiguration::builder()
                .id(q["Id"].as_str().unwrap())
                .queue_arn(q["QueueArn"].as_str().unwrap())
                .set_events(Some(
                    q["Events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| Event::from(e.as_str().unwrap()))
                        .collect(),
                ))
                .filter(
                    NotificationConfigurationFilter::builder()
                        .key(filter)
                        .build(),
                )
                .build()
                .unwrap(),
        );
    }
    s3.put_bucket_notification_configuration()
        .bucket(&stack.bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .set_queue_configurations(Some(queues))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// Publishes `message` to an SNS topic in moto, as CloudTrail publishes to the trail's topic.
pub fn publish(topic_arn: &str, message: &str) {
    let out = Command::new(repo_root().join(".venv-sam/bin/python"))
        .arg(repo_root().join("scripts/moto_stack.py"))
        .args([
            "publish",
            "--endpoint",
            &endpoint(),
            "--topic-arn",
            topic_arn,
        ])
        .args(["--message", message])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
