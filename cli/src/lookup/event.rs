//! One CloudTrail record as Event history shows it: the fields LookupEvents returns and
//! matches on, derived from the record's JSON.
//!
//! Username and Resources are not record fields: CloudTrail derives them. How, AWS does not
//! document in full; what is documented or shown in AWS's own examples is followed, the rest
//! is ours and says so:
//!
//! * Username — `Root` → `root` (CloudTrail User Guide, "Viewing CloudTrail events with the
//!   AWS CLI": a Root ConsoleLogin event has `"Username": "root"`); `AssumedRole` → the role
//!   session name, the last part of `arn:aws:sts::…:assumed-role/<role>/<session>` (AWS CLI
//!   example `cloudtrail/lookup-events.rst`: `"Username": "my-session-name"` for
//!   `assumed-role/my-role/my-session-name`); `IAMUser` → `userIdentity.userName` (the API
//!   reference: "a user name or role name of the requester"). Ours: any other identity with a
//!   `userName` gets it; a `FederatedUser` without one gets the name after
//!   `federated-user/`; an `AWSService` call gets none (the service is `invokedBy`, which the
//!   table shows instead; whether Event history names it is unconfirmed).
//! * Resources — every entry of the record's `resources` as (type, ARN), then the names
//!   CloudTrail puts in Event history for calls that carry none, taken from
//!   `requestParameters` / `responseElements` by [`DERIVED`]: a small table of common calls
//!   (e.g. S3 `bucketName` → `AWS::S3::Bucket`), ours, not AWS's complete mapping.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use trailwatch::record::{EventCategory, Record};
use trailwatch::time::{format_event_time, parse_event_time};

use super::query::{AttributeKey, Query};

/// The fields of a record that lookup reads. Strings that are not strings (or a record that
/// is not a JSON object) make the record unreadable, as in the rest of the pipeline.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct View<'a> {
    #[serde(borrow, default)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "eventID")]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_category: Option<Cow<'a, str>>,
    #[serde(default)]
    read_only: Option<Value>,
    #[serde(borrow, default, rename = "sourceIPAddress")]
    source_ip_address: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    error_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_identity: Option<Identity<'a>>,
    #[serde(borrow, default)]
    resources: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request_parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_elements: Option<&'a RawValue>,
    #[serde(borrow, default)]
    insight_details: Option<InsightDetails<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity<'a> {
    #[serde(borrow, default, rename = "type")]
    identity_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    principal_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    invoked_by: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsightDetails<'a> {
    #[serde(borrow, default)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_source: Option<Cow<'a, str>>,
}

/// A record lookup could not read; the caller says where it was.
#[derive(Debug)]
pub struct Unreadable(pub String);

impl<'a> View<'a> {
    pub fn parse(raw: &'a str) -> Result<Self, Unreadable> {
        serde_json::from_str(raw)
            .map_err(|e| Unreadable(format!("not a CloudTrail record (JSON object): {e}")))
    }

    pub fn time_ms(&self) -> Result<i64, Unreadable> {
        let text = self
            .event_time
            .as_deref()
            .ok_or_else(|| Unreadable("record has no eventTime".into()))?;
        parse_event_time(text).map_err(|e| Unreadable(format!("record has a bad eventTime: {e}")))
    }

    /// The category as the pipeline decides it ([`Record::category`]: `eventCategory`, or
    /// CloudTrail's rules for records older than eventVersion 1.07).
    fn category(&self, raw: &str) -> EventCategory {
        match self.event_category.as_deref() {
            Some("Management") => EventCategory::Management,
            Some("Data") => EventCategory::Data,
            Some("NetworkActivity") => EventCategory::NetworkActivity,
            Some("Insight") => EventCategory::Insight,
            Some(_) => EventCategory::Other,
            None => Record::parse(raw)
                .map(|r| r.category())
                .unwrap_or(EventCategory::Management),
        }
    }

    /// eventName; for an Insights event, the API it is about (`insightDetails.eventName`).
    pub fn event_name(&self) -> Option<&str> {
        self.event_name.as_deref().or_else(|| {
            self.insight_details
                .as_ref()
                .and_then(|d| d.event_name.as_deref())
        })
    }

    /// eventSource; for an Insights event, `insightDetails.eventSource`.
    pub fn event_source(&self) -> Option<&str> {
        self.event_source.as_deref().or_else(|| {
            self.insight_details
                .as_ref()
                .and_then(|d| d.event_source.as_deref())
        })
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// `readOnly` (a JSON boolean; `"true"`/`"false"` strings from exports are read too).
    pub fn read_only(&self) -> Option<bool> {
        match self.read_only.as_ref()? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// `userIdentity.accessKeyId`, absent when empty (CloudTrail writes `""` for some calls).
    pub fn access_key_id(&self) -> Option<&str> {
        let id = self.user_identity.as_ref()?.access_key_id.as_deref()?;
        (!id.is_empty()).then_some(id)
    }

    /// Event history's Username; see the module documentation for the rules and sources.
    pub fn username(&self) -> Option<&str> {
        let ui = self.user_identity.as_ref()?;
        let name = ui.user_name.as_deref().filter(|n| !n.is_empty());
        let arn_tail = |infix: &str| {
            ui.arn
                .as_deref()
                .and_then(|arn| arn.split_once(infix))
                .and_then(|(_, rest)| rest.rsplit('/').next())
                .filter(|s| !s.is_empty())
        };
        match ui.identity_type.as_deref() {
            Some("Root") => Some("root"),
            Some("AssumedRole") => arn_tail(":assumed-role/")
                .or_else(|| {
                    ui.principal_id
                        .as_deref()
                        .and_then(|p| p.split_once(':'))
                        .map(|(_, session)| session)
                        .filter(|s| !s.is_empty())
                })
                .or(name),
            Some("FederatedUser") => name.or_else(|| arn_tail(":federated-user/")),
            Some("AWSService") => None,
            _ => name,
        }
    }

    /// Who, for the table: Username, else the calling service, else the identity type.
    pub fn who(&self) -> Option<&str> {
        let ui = self.user_identity.as_ref();
        self.username()
            .or_else(|| ui.and_then(|u| u.invoked_by.as_deref()))
            .or_else(|| ui.and_then(|u| u.identity_type.as_deref()))
    }

    pub fn source_ip(&self) -> Option<&str> {
        self.source_ip_address.as_deref()
    }

    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }

    /// Event history's Resources: see the module documentation.
    pub fn resources(&self) -> Vec<ResourceOut> {
        let mut out: Vec<ResourceOut> = Vec::new();
        let mut push = |resource_type: Option<String>, name: String| {
            if !out
                .iter()
                .any(|r| r.resource_name == name && r.resource_type == resource_type)
            {
                out.push(ResourceOut {
                    resource_type,
                    resource_name: name,
                });
            }
        };
        if let Some(raw) = self.resources {
            if let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(raw.get()) {
                for entry in entries {
                    let Some(arn) = entry.get("ARN").and_then(Value::as_str) else {
                        continue;
                    };
                    let kind = entry.get("type").and_then(Value::as_str).map(str::to_owned);
                    push(kind, arn.to_owned());
                }
            }
        }
        let source = self.event_source.as_deref().unwrap_or("");
        let name = self.event_name.as_deref().unwrap_or("");
        let rules: Vec<&Derived> = DERIVED
            .iter()
            .filter(|d| d.source == source && d.name_contains.is_none_or(|n| name.contains(n)))
            .collect();
        if rules.is_empty() {
            return out;
        }
        let parse = |raw: Option<&RawValue>| {
            raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                .unwrap_or(Value::Null)
        };
        let request = parse(self.request_parameters);
        let response = parse(self.response_elements);
        for rule in rules {
            let root = if rule.in_response {
                &response
            } else {
                &request
            };
            let mut found = Vec::new();
            collect(root, rule.path, &mut found);
            for value in found {
                push(Some(rule.resource_type.to_owned()), value.to_owned());
            }
        }
        out
    }

    /// Whether the record passes the query (category, time range, attribute). `time_ms` is
    /// [`View::time_ms`], read once by the caller.
    pub fn matches(&self, raw: &str, time_ms: i64, query: &Query) -> bool {
        let category = self.category(raw);
        if query.insight {
            if category != EventCategory::Insight {
                return false;
            }
        } else if category == EventCategory::Insight
            || (query.management_only && category != EventCategory::Management)
        {
            return false;
        }
        if query.start_ms.is_some_and(|s| time_ms < s) || query.end_ms.is_some_and(|e| time_ms > e)
        {
            return false;
        }
        let Some(attribute) = &query.attribute else {
            return true;
        };
        let value = attribute.value.as_str();
        match attribute.key {
            AttributeKey::EventId => self.event_id() == Some(value),
            AttributeKey::EventName => self.event_name() == Some(value),
            AttributeKey::EventSource => self.event_source() == Some(value),
            AttributeKey::ReadOnly => {
                self.read_only().map(|b| b.to_string()).as_deref() == Some(value)
            }
            AttributeKey::Username => self.username() == Some(value),
            AttributeKey::AccessKeyId => self.access_key_id() == Some(value),
            AttributeKey::ResourceName => self.resources().iter().any(|r| r.resource_name == value),
            AttributeKey::ResourceType => self
                .resources()
                .iter()
                .any(|r| r.resource_type.as_deref() == Some(value)),
        }
    }

    /// The record as LookupEvents returns it.
    pub fn to_event(&self, raw: &str, time_ms: i64) -> LookupEvent {
        LookupEvent {
            event_id: self.event_id().map(str::to_owned),
            event_name: self.event_name().map(str::to_owned),
            read_only: self.read_only().map(|b| b.to_string()),
            access_key_id: self.access_key_id().map(str::to_owned),
            event_time: format_lookup_time(time_ms),
            event_source: self.event_source().map(str::to_owned),
            username: self.username().map(str::to_owned),
            resources: self.resources(),
            cloud_trail_event: raw.to_owned(),
        }
    }
}

/// One event of LookupEvents' output (`Event` in the API model), members in the model's
/// order; absent members are left out, as the API leaves them out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LookupEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    pub event_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub resources: Vec<ResourceOut>,
    pub cloud_trail_event: String,
}

/// `Resource` in the API model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub resource_name: String,
}

/// EventTime as the AWS CLI v2 prints LookupEvents' timestamps (ISO 8601 with a numeric
/// offset, e.g. `2021-11-18T09:41:02-08:00` in the CLI's own example), always in UTC here:
/// `2023-07-10T11:42:36+00:00` (the CLI converts to the local zone of the machine; we do
/// not, so output is the same everywhere). Sub-second times, which only exports produce,
/// get Python's six fraction digits as the CLI would print them.
pub fn format_lookup_time(ms: i64) -> String {
    let base = format_event_time(ms);
    let base = base.strip_suffix('Z').unwrap_or(&base);
    match ms.rem_euclid(1000) {
        0 => format!("{base}+00:00"),
        frac => format!("{base}.{frac:03}000+00:00"),
    }
}

/// A resource name CloudTrail's Event history shows for calls whose record carries no
/// `resources`: where in the request (or response) it is and which type it has. Ours, for
/// common calls; AWS's own mapping is not published and covers far more.
struct Derived {
    source: &'static str,
    /// Only for event names containing this (e.g. SSM's `name` is a parameter only in the
    /// parameter APIs).
    name_contains: Option<&'static str>,
    in_response: bool,
    /// Object keys; `*` walks every element of an array.
    path: &'static [&'static str],
    resource_type: &'static str,
}

const fn req(source: &'static str, path: &'static [&'static str], t: &'static str) -> Derived {
    Derived {
        source,
        name_contains: None,
        in_response: false,
        path,
        resource_type: t,
    }
}

const DERIVED: &[Derived] = &[
    req("s3.amazonaws.com", &["bucketName"], "AWS::S3::Bucket"),
    req("iam.amazonaws.com", &["userName"], "AWS::IAM::User"),
    req("iam.amazonaws.com", &["roleName"], "AWS::IAM::Role"),
    req("iam.amazonaws.com", &["groupName"], "AWS::IAM::Group"),
    req("iam.amazonaws.com", &["policyArn"], "AWS::IAM::Policy"),
    req("iam.amazonaws.com", &["accessKeyId"], "AWS::IAM::AccessKey"),
    req(
        "iam.amazonaws.com",
        &["instanceProfileName"],
        "AWS::IAM::InstanceProfile",
    ),
    Derived {
        source: "iam.amazonaws.com",
        name_contains: None,
        in_response: true,
        path: &["accessKey", "accessKeyId"],
        resource_type: "AWS::IAM::AccessKey",
    },
    req(
        "cloudtrail.amazonaws.com",
        &["name"],
        "AWS::CloudTrail::Trail",
    ),
    req(
        "cloudtrail.amazonaws.com",
        &["trailName"],
        "AWS::CloudTrail::Trail",
    ),
    req(
        "logs.amazonaws.com",
        &["logGroupName"],
        "AWS::Logs::LogGroup",
    ),
    req(
        "ec2.amazonaws.com",
        &["instancesSet", "items", "*", "instanceId"],
        "AWS::EC2::Instance",
    ),
    Derived {
        source: "ec2.amazonaws.com",
        name_contains: None,
        in_response: true,
        path: &["instancesSet", "items", "*", "instanceId"],
        resource_type: "AWS::EC2::Instance",
    },
    req("ec2.amazonaws.com", &["groupId"], "AWS::EC2::SecurityGroup"),
    req("ec2.amazonaws.com", &["volumeId"], "AWS::EC2::Volume"),
    req("ec2.amazonaws.com", &["snapshotId"], "AWS::EC2::Snapshot"),
    req("ec2.amazonaws.com", &["vpcId"], "AWS::EC2::VPC"),
    req("ec2.amazonaws.com", &["keyName"], "AWS::EC2::KeyPair"),
    req(
        "lambda.amazonaws.com",
        &["functionName"],
        "AWS::Lambda::Function",
    ),
    req(
        "dynamodb.amazonaws.com",
        &["tableName"],
        "AWS::DynamoDB::Table",
    ),
    req("kms.amazonaws.com", &["keyId"], "AWS::KMS::Key"),
    Derived {
        source: "ssm.amazonaws.com",
        name_contains: Some("Parameter"),
        in_response: false,
        path: &["name"],
        resource_type: "AWS::SSM::Parameter",
    },
    req(
        "secretsmanager.amazonaws.com",
        &["secretId"],
        "AWS::SecretsManager::Secret",
    ),
    req("sns.amazonaws.com", &["topicArn"], "AWS::SNS::Topic"),
    req("sqs.amazonaws.com", &["queueUrl"], "AWS::SQS::Queue"),
    req(
        "rds.amazonaws.com",
        &["dBInstanceIdentifier"],
        "AWS::RDS::DBInstance",
    ),
    req(
        "guardduty.amazonaws.com",
        &["detectorId"],
        "AWS::GuardDuty::Detector",
    ),
    req(
        "cloudformation.amazonaws.com",
        &["stackName"],
        "AWS::CloudFormation::Stack",
    ),
    req(
        "ecr.amazonaws.com",
        &["repositoryName"],
        "AWS::ECR::Repository",
    ),
];

fn collect<'v>(value: &'v Value, path: &[&str], out: &mut Vec<&'v str>) {
    let Some((first, rest)) = path.split_first() else {
        if let Some(s) = value.as_str().filter(|s| !s.is_empty()) {
            out.push(s);
        }
        return;
    };
    if *first == "*" {
        if let Value::Array(items) = value {
            for item in items {
                collect(item, rest, out);
            }
        }
    } else if let Some(next) = value.get(first) {
        collect(next, rest, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(raw: &str) -> View<'_> {
        View::parse(raw).unwrap()
    }

    #[test]
    fn usernames() {
        let root =
            r#"{"userIdentity":{"type":"Root","arn":"arn:aws:iam::1:root","userName":"alias"}}"#;
        assert_eq!(view(root).username(), Some("root"));
        let role = r#"{"userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/r/sess","sessionContext":{"sessionIssuer":{"userName":"r"}}}}"#;
        assert_eq!(view(role).username(), Some("sess"));
        let role2 = r#"{"userIdentity":{"type":"AssumedRole","principalId":"AROA:s2"}}"#;
        assert_eq!(view(role2).username(), Some("s2"));
        let user = r#"{"userIdentity":{"type":"IAMUser","userName":"alice","arn":"arn:aws:iam::1:user/alice"}}"#;
        assert_eq!(view(user).username(), Some("alice"));
        let fed = r#"{"userIdentity":{"type":"FederatedUser","arn":"arn:aws:sts::1:federated-user/bob"}}"#;
        assert_eq!(view(fed).username(), Some("bob"));
        let svc = r#"{"userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"}}"#;
        assert_eq!(view(svc).username(), None);
        assert_eq!(view(svc).who(), Some("ec2.amazonaws.com"));
    }

    #[test]
    fn resources_from_the_record_then_the_table() {
        let raw = r#"{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket","requestParameters":{"bucketName":"b"},"resources":[{"accountId":"1","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::b"}]}"#;
        let r = view(raw).resources();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].resource_name, "arn:aws:s3:::b");
        assert_eq!(r[1].resource_name, "b");
        assert_eq!(r[1].resource_type.as_deref(), Some("AWS::S3::Bucket"));
        let run = r#"{"eventSource":"ec2.amazonaws.com","eventName":"RunInstances","requestParameters":{"instancesSet":{"items":[{"imageId":"ami"}]}},"responseElements":{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]}}}"#;
        let names: Vec<String> = view(run)
            .resources()
            .into_iter()
            .map(|r| r.resource_name)
            .collect();
        assert_eq!(names, ["i-1", "i-2"]);
        let doc = r#"{"eventSource":"ssm.amazonaws.com","eventName":"DeleteDocument","requestParameters":{"name":"d"}}"#;
        assert!(view(doc).resources().is_empty());
    }

    #[test]
    fn times_print_as_the_cli_prints_them() {
        let ms = parse_event_time("2023-07-10T11:42:36Z").unwrap();
        assert_eq!(format_lookup_time(ms), "2023-07-10T11:42:36+00:00");
        assert_eq!(
            format_lookup_time(ms + 250),
            "2023-07-10T11:42:36.250000+00:00"
        );
    }
}
