//! The vocabulary of advanced event selectors (fields, operators, categories) and how a record
//! supplies a value for each field. The rules that are our own reading of CloudTrail, not
//! documented behaviour, live here and only here: [`field_passes`] (fields a record lacks, and
//! fields with several values), [`read_only_value`] (records without `readOnly`) and
//! [`resource_arn`] (resources named by `ARNPrefix`).

use crate::record::{EventCategory, Record, Resource};

/// A field an advanced selector may name (section 5.2 of the fact sheet, trail fields only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    EventCategory,
    EventSource,
    EventName,
    EventType,
    ReadOnly,
    ResourcesType,
    ResourcesArn,
    SessionCredentialFromConsole,
    UserIdentityArn,
    ErrorCode,
    VpcEndpointId,
}

impl Field {
    pub const ALL: [Field; 11] = [
        Field::EventCategory,
        Field::EventSource,
        Field::EventName,
        Field::EventType,
        Field::ReadOnly,
        Field::ResourcesType,
        Field::ResourcesArn,
        Field::SessionCredentialFromConsole,
        Field::UserIdentityArn,
        Field::ErrorCode,
        Field::VpcEndpointId,
    ];

    /// The field by its selector name; names are case-sensitive, as in CloudTrail.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Field::EventCategory => "eventCategory",
            Field::EventSource => "eventSource",
            Field::EventName => "eventName",
            Field::EventType => "eventType",
            Field::ReadOnly => "readOnly",
            Field::ResourcesType => "resources.type",
            Field::ResourcesArn => "resources.ARN",
            Field::SessionCredentialFromConsole => "sessionCredentialFromConsole",
            Field::UserIdentityArn => "userIdentity.arn",
            Field::ErrorCode => "errorCode",
            Field::VpcEndpointId => "vpcEndpointId",
        }
    }
}

/// The six comparison operators of an advanced field selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Equals,
    StartsWith,
    EndsWith,
    NotEquals,
    NotStartsWith,
    NotEndsWith,
}

impl Operator {
    pub const ALL: [Operator; 6] = [
        Operator::Equals,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::NotEquals,
        Operator::NotStartsWith,
        Operator::NotEndsWith,
    ];

    pub fn parse(name: &str) -> Option<Operator> {
        Operator::ALL.into_iter().find(|op| op.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "Equals",
            Operator::StartsWith => "StartsWith",
            Operator::EndsWith => "EndsWith",
            Operator::NotEquals => "NotEquals",
            Operator::NotStartsWith => "NotStartsWith",
            Operator::NotEndsWith => "NotEndsWith",
        }
    }

    /// Position in [`Operator::ALL`], for per-operator arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Negative operators form the DESELECT group; the others the SELECT group.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            Operator::NotEquals | Operator::NotStartsWith | Operator::NotEndsWith
        )
    }

    /// The comparison itself, ignoring negation: for `NotStartsWith` it says whether the value
    /// starts with the pattern (a "deselect hit").
    pub fn compares(self, value: &str, pattern: &str) -> bool {
        match self {
            Operator::Equals | Operator::NotEquals => value == pattern,
            Operator::StartsWith | Operator::NotStartsWith => value.starts_with(pattern),
            Operator::EndsWith | Operator::NotEndsWith => value.ends_with(pattern),
        }
    }
}

/// The event categories a trail's advanced selector can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorCategory {
    Management,
    Data,
    NetworkActivity,
}

impl SelectorCategory {
    pub fn parse(name: &str) -> Option<SelectorCategory> {
        match name {
            "Management" => Some(SelectorCategory::Management),
            "Data" => Some(SelectorCategory::Data),
            "NetworkActivity" => Some(SelectorCategory::NetworkActivity),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SelectorCategory::Management => "Management",
            SelectorCategory::Data => "Data",
            SelectorCategory::NetworkActivity => "NetworkActivity",
        }
    }

    pub fn of_record(category: EventCategory) -> Option<SelectorCategory> {
        match category {
            EventCategory::Management => Some(SelectorCategory::Management),
            EventCategory::Data => Some(SelectorCategory::Data),
            EventCategory::NetworkActivity => Some(SelectorCategory::NetworkActivity),
            EventCategory::Insight | EventCategory::Other => None,
        }
    }

    /// Fields a trail accepts besides `eventCategory` for this category (section 5.2).
    pub fn allowed_fields(self) -> &'static [Field] {
        match self {
            SelectorCategory::Management => &[Field::ReadOnly, Field::EventSource],
            SelectorCategory::Data => &[
                Field::ResourcesType,
                Field::ResourcesArn,
                Field::ReadOnly,
                Field::EventName,
                Field::EventSource,
                Field::EventType,
                Field::SessionCredentialFromConsole,
                Field::UserIdentityArn,
            ],
            SelectorCategory::NetworkActivity => &[
                Field::EventSource,
                Field::EventName,
                Field::ErrorCode,
                Field::VpcEndpointId,
                Field::UserIdentityArn,
            ],
        }
    }
}

/// How selectors match a resource named by `ARNPrefix` instead of `ARN`.
///
/// Bucket-level S3 data APIs (`ListObjects`, `ListObjectsV2`, `ListObjectVersions`,
/// `ListMultipartUploads`, `HeadBucket`, `DeleteObjects`, …) are recorded as data events whose
/// `AWS::S3::Object` entry has `"ARNPrefix": "arn:aws:s3:::<bucket>/<list prefix>"` beside an
/// `AWS::S3::Bucket` entry with the bucket's `ARN` (the shape of published real records, as
/// in `tests/select_bucket_level.rs`). CloudTrail's documentation says which selectors log object-level events (basic:
/// "prefix match on object ARN", `DataResource.Values`; advanced: `resources.ARN` with the six
/// operators, fact sheet 4 and 5.4) but not how a prefix entry is compared, so the rule is ours:
///
/// **the prefix is compared exactly as an object ARN would be** — this function's answer
/// (`ARN`, else `ARNPrefix`) is the value of `resources.ARN` and of basic S3 values:
/// - basic `AWS::S3::Object` values (`arn:aws:s3`, `arn:aws:s3:::`, `arn:aws:s3:::bucket/`,
///   `arn:aws:s3:::bucket/images`) select the event when the prefix starts with them: an
///   all-buckets or whole-bucket selector logs every `HeadBucket` and `ListObjects` of its
///   buckets, which is what real all-buckets trails show;
/// - advanced `resources.ARN` runs each operator on the prefix string: `StartsWith` and
///   `NotStartsWith` as above, `Equals`/`NotEquals` compare it whole (a prefix equals no object
///   ARN, so `Equals` on an object never selects a bucket-level call and `NotEquals` never
///   deselects one), `EndsWith`/`NotEndsWith` test its end (`arn:aws:s3:::bucket/` ends with
///   `/`).
///
/// The choices AWS leaves open, and ours: a selector for a key prefix (`.../bucket/images/`)
/// does **not** select a listing of the whole bucket (prefix `.../bucket/`), though the listing
/// shows the names of the selected objects — we read the selector as covering the call's whole
/// range, as for objects; a listing with its own prefix (`.../bucket/images/2024/`) is
/// selected. The same rule holds for every resource type that names resources by `ARNPrefix`
/// (S3 directory buckets' `AWS::S3Express::Object` and S3 on Outposts list calls have the same
/// shape); types whose records always carry `ARN` are unaffected.
pub fn resource_arn<'r>(resource: &'r Resource<'_>) -> Option<&'r str> {
    resource.arn.as_deref().or(resource.arn_prefix.as_deref())
}

/// `readOnly` as selectors see it: `"true"` or `"false"`, never missing.
///
/// CloudTrail classifies every API as read or write; a record without `readOnly` (eventVersion
/// 1.0, network activity, some console and service events) is one we cannot classify. We count
/// it as a **write**: a `WriteOnly` trail keeps it and a `ReadOnly` trail drops it. That is the
/// conservative side for an audit trail — people choose WriteOnly to keep every change while
/// saving cost, and an unclassified call that might have changed something must not vanish from
/// that trail — and it keeps `ReadOnly` and `WriteOnly` an exact partition of all records.
pub fn read_only_value(record: &Record<'_>) -> &'static str {
    match record.fields.read_only {
        Some(true) => "true",
        Some(false) | None => "false",
    }
}

/// The value of a single-valued field in a record, `None` when the record lacks it.
/// `resources.type` and `resources.ARN` are multi-valued and read by the callers from
/// `fields.resources`.
pub fn scalar_value<'r>(record: &'r Record<'_>, field: Field) -> Option<&'r str> {
    let fields = &record.fields;
    match field {
        Field::EventCategory => Some(record.category().as_str()),
        Field::EventSource => fields.event_source.as_deref(),
        Field::EventName => fields.event_name.as_deref(),
        Field::EventType => fields.event_type.as_deref(),
        Field::ReadOnly => Some(read_only_value(record)),
        Field::SessionCredentialFromConsole => fields.session_credential_from_console.as_deref(),
        Field::UserIdentityArn => fields.user_identity.as_ref()?.arn.as_deref(),
        Field::ErrorCode => fields.error_code.as_deref(),
        Field::VpcEndpointId => fields.vpc_endpoint_id.as_deref(),
        Field::ResourcesType | Field::ResourcesArn => None,
    }
}

/// Whether one field selector passes, given the record's values for the field.
///
/// THE rule for missing and multi-valued fields (CloudTrail documents neither):
/// - Field absent (no value at all, e.g. no `userIdentity.arn`, or no resource of the selected
///   type for `resources.ARN`): a positive operator (Equals/StartsWith/EndsWith) cannot match it
///   and a negative operator (NotEquals/NotStartsWith/NotEndsWith) cannot hit it. So the field
///   passes exactly when it has no positive operator: `NotEquals x` keeps records without the
///   field, `Equals x` drops them — which makes every condition and its negation a partition.
/// - Several values (several `resources` entries): the field passes when **some** value passes
///   on its own (SELECT group matched, no DESELECT hit), the documented per-value rule applied
///   to each resource. A CopyObject from a deselected bucket into a selected one is kept.
///
/// `has_select`: the field selector has a positive operator. `select`/`deselect`: whether the
/// value matches any positive / any negative condition.
pub fn field_passes<'v>(
    values: impl IntoIterator<Item = &'v str>,
    has_select: bool,
    select: impl Fn(&str) -> bool,
    deselect: impl Fn(&str) -> bool,
) -> bool {
    let mut any_value = false;
    for value in values {
        any_value = true;
        if (!has_select || select(value)) && !deselect(value) {
            return true;
        }
    }
    !any_value && !has_select
}
