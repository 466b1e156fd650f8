//! The trail configuration as written by the user (`get-event-selectors` output plus trail
//! properties), read from JSON by hand so that every shape problem is reported at once, with
//! its place, instead of stopping at the first one as a derived deserializer would.

use serde_json::{Map, Value};

use super::config_problem::ConfigProblem;
use super::fields::Operator;

/// Which kind of selectors a trail has.
#[derive(Debug, Clone, PartialEq)]
pub enum Selectors {
    /// No selectors: CloudTrail's default, all management events and nothing else.
    Default,
    Basic(Vec<BasicSelector>),
    Advanced(Vec<AdvancedSelector>),
}

/// An entry of `EventSelectors`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicSelector {
    pub read_write_type: ReadWriteType,
    pub include_management_events: bool,
    pub data_resources: Vec<DataResource>,
    pub exclude_management_event_sources: Vec<String>,
}

impl Default for BasicSelector {
    /// The selector CloudTrail applies when a trail has none.
    fn default() -> Self {
        BasicSelector {
            read_write_type: ReadWriteType::All,
            include_management_events: true,
            data_resources: Vec::new(),
            exclude_management_event_sources: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadWriteType {
    ReadOnly,
    WriteOnly,
    All,
}

impl ReadWriteType {
    pub fn parse(text: &str) -> Option<ReadWriteType> {
        match text {
            "ReadOnly" => Some(ReadWriteType::ReadOnly),
            "WriteOnly" => Some(ReadWriteType::WriteOnly),
            "All" => Some(ReadWriteType::All),
            _ => None,
        }
    }

    /// Whether a record with this `readOnly` value (see `fields::read_only_value`) is wanted.
    pub fn accepts(self, read_only: &str) -> bool {
        match self {
            ReadWriteType::All => true,
            ReadWriteType::ReadOnly => read_only == "true",
            ReadWriteType::WriteOnly => read_only == "false",
        }
    }
}

/// An entry of `DataResources`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataResource {
    pub resource_type: String,
    pub values: Vec<String>,
}

/// An entry of `AdvancedEventSelectors`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdvancedSelector {
    pub name: Option<String>,
    pub field_selectors: Vec<FieldSelector>,
}

/// An entry of `FieldSelectors`: a field and up to six operator lists.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    pub field: String,
    /// Indexed by [`Operator::index`]; `None` when the operator is absent.
    pub operators: [Option<Vec<String>>; 6],
}

impl FieldSelector {
    pub fn values(&self, op: Operator) -> Option<&[String]> {
        self.operators[op.index()].as_deref()
    }

    /// The operators present, with their values, in `Operator::ALL` order.
    pub fn conditions(&self) -> impl Iterator<Item = (Operator, &[String])> {
        Operator::ALL
            .into_iter()
            .filter_map(|op| self.values(op).map(|values| (op, values)))
    }
}

/// An entry of `InsightSelectors` (`get-insight-selectors` output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightSelector {
    pub insight_type: InsightType,
    /// `EventCategories` as given; CloudTrail treats an absent list as `[Management]`.
    pub event_categories: Vec<InsightEventCategory>,
}

/// The Insight types are the Insights stage's; the trail configuration only names them.
pub use crate::insights::InsightType;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsightEventCategory {
    Management,
    Data,
}

impl InsightSelector {
    /// The categories analysed: `EventCategories`, or management events when it is absent.
    pub fn categories(&self) -> &[InsightEventCategory] {
        if self.event_categories.is_empty() {
            &[InsightEventCategory::Management]
        } else {
            &self.event_categories
        }
    }
}

/// Everything read from the configuration document.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub home_region: Option<String>,
    pub is_multi_region_trail: Option<bool>,
    pub include_global_service_events: Option<bool>,
    pub is_organization_trail: Option<bool>,
    pub trail_arn: Option<String>,
    pub selectors: Selectors,
    pub insight_selectors: Vec<InsightSelector>,
    /// Both `EventSelectors` and `AdvancedEventSelectors` were given.
    pub both_kinds: bool,
}

const TOP_KEYS: [&str; 8] = [
    "TrailARN",
    "HomeRegion",
    "IsMultiRegionTrail",
    "IncludeGlobalServiceEvents",
    "IsOrganizationTrail",
    "EventSelectors",
    "AdvancedEventSelectors",
    "InsightSelectors",
];

/// Reads the document; shape problems (wrong JSON types, unknown keys, bad enum values) are
/// pushed to `problems` and the offending part is left out.
pub(crate) fn read_document(root: &Value, problems: &mut Vec<ConfigProblem>) -> Document {
    let mut doc = Document {
        home_region: None,
        is_multi_region_trail: None,
        include_global_service_events: None,
        is_organization_trail: None,
        trail_arn: None,
        selectors: Selectors::Default,
        insight_selectors: Vec::new(),
        both_kinds: false,
    };
    let Some(top) = root.as_object() else {
        problems.push(ConfigProblem::new(
            "configuration",
            "must be a JSON object (aws cloudtrail get-event-selectors output)",
        ));
        return doc;
    };
    for key in top.keys() {
        // Trail properties from describe-trails may ride along; only unknown ones are reported.
        if !TOP_KEYS.contains(&key.as_str()) && !DESCRIBE_TRAILS_KEYS.contains(&key.as_str()) {
            problems.push(ConfigProblem::new(
                key,
                format!("unknown configuration key {key}"),
            ));
        }
    }
    doc.trail_arn = optional_string(top, "", "TrailARN", problems);
    doc.home_region = optional_string(top, "", "HomeRegion", problems);
    doc.is_multi_region_trail = optional_bool(top, "", "IsMultiRegionTrail", problems);
    doc.include_global_service_events =
        optional_bool(top, "", "IncludeGlobalServiceEvents", problems);
    doc.is_organization_trail = optional_bool(top, "", "IsOrganizationTrail", problems);

    let basic = top.get("EventSelectors").filter(|v| !v.is_null());
    let advanced = top.get("AdvancedEventSelectors").filter(|v| !v.is_null());
    doc.both_kinds = basic.is_some() && advanced.is_some();
    if let Some(advanced) = advanced {
        doc.selectors = Selectors::Advanced(read_list(
            advanced,
            "AdvancedEventSelectors",
            problems,
            read_advanced,
        ));
    } else if let Some(basic) = basic {
        doc.selectors = Selectors::Basic(read_list(basic, "EventSelectors", problems, read_basic));
    }
    if let Some(insights) = top.get("InsightSelectors").filter(|v| !v.is_null()) {
        doc.insight_selectors = read_list(insights, "InsightSelectors", problems, read_insight)
            .into_iter()
            .flatten()
            .collect();
    }
    doc
}

/// `describe-trails` keys accepted (and ignored) next to the selectors.
const DESCRIBE_TRAILS_KEYS: [&str; 14] = [
    "Name",
    "S3BucketName",
    "S3KeyPrefix",
    "SnsTopicName",
    "SnsTopicARN",
    "LogFileValidationEnabled",
    "CloudWatchLogsLogGroupArn",
    "CloudWatchLogsRoleArn",
    "KmsKeyId",
    "HasCustomEventSelectors",
    "HasInsightSelectors",
    "IsLogging",
    "RecursiveLogging",
    "Tags",
];

fn read_list<T>(
    value: &Value,
    name: &str,
    problems: &mut Vec<ConfigProblem>,
    mut each: impl FnMut(&Value, &str, &mut Vec<ConfigProblem>) -> T,
) -> Vec<T> {
    let Some(items) = value.as_array() else {
        problems.push(ConfigProblem::new(name, "must be a list"));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| each(item, &format!("{name}[{i}]"), problems))
        .collect()
}

fn object<'v>(
    value: &'v Value,
    at: &str,
    keys: &[&str],
    problems: &mut Vec<ConfigProblem>,
) -> Option<&'v Map<String, Value>> {
    let Some(map) = value.as_object() else {
        problems.push(ConfigProblem::new(at, "must be a JSON object"));
        return None;
    };
    for key in map.keys() {
        if !keys.contains(&key.as_str()) {
            problems.push(ConfigProblem::new(
                at,
                format!("unknown key {key} (expected one of {})", keys.join(", ")),
            ));
        }
    }
    Some(map)
}

fn optional_string(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => {
            problems.push(ConfigProblem::new(
                join(at, key),
                format!("must be a string, found {}", json_type(other)),
            ));
            None
        }
    }
}

fn optional_bool(
    map: &Map<String, Value>,
    at: &str,
    key: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<bool> {
    match map.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Null => None,
        other => {
            problems.push(ConfigProblem::new(
                join(at, key),
                format!("must be true or false, found {}", json_type(other)),
            ));
            None
        }
    }
}

/// A list of strings; non-strings are reported and skipped.
fn string_list(value: &Value, at: &str, problems: &mut Vec<ConfigProblem>) -> Vec<String> {
    let Some(items) = value.as_array() else {
        problems.push(ConfigProblem::new(
            at,
            format!("must be a list of strings, found {}", json_type(value)),
        ));
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| match item {
            Value::String(s) => Some(s.clone()),
            other => {
                problems.push(ConfigProblem::new(
                    format!("{at}[{i}]"),
                    format!("must be a string, found {}", json_type(other)),
                ));
                None
            }
        })
        .collect()
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn read_basic(value: &Value, at: &str, problems: &mut Vec<ConfigProblem>) -> BasicSelector {
    let mut selector = BasicSelector::default();
    let keys = [
        "ReadWriteType",
        "IncludeManagementEvents",
        "DataResources",
        "ExcludeManagementEventSources",
    ];
    let Some(map) = object(value, at, &keys, problems) else {
        return selector;
    };
    if let Some(text) = optional_string(map, at, "ReadWriteType", problems) {
        match ReadWriteType::parse(&text) {
            Some(rw) => selector.read_write_type = rw,
            None => problems.push(ConfigProblem::new(
                format!("{at}.ReadWriteType"),
                format!("Value {text} for ReadWriteType is invalid (expected ReadOnly, WriteOnly or All)."),
            )),
        }
    }
    if let Some(b) = optional_bool(map, at, "IncludeManagementEvents", problems) {
        selector.include_management_events = b;
    }
    if let Some(list) = map.get("DataResources").filter(|v| !v.is_null()) {
        selector.data_resources = read_list(
            list,
            &format!("{at}.DataResources"),
            problems,
            read_data_resource,
        );
    }
    if let Some(list) = map
        .get("ExcludeManagementEventSources")
        .filter(|v| !v.is_null())
    {
        selector.exclude_management_event_sources = string_list(
            list,
            &format!("{at}.ExcludeManagementEventSources"),
            problems,
        );
    }
    selector
}

fn read_data_resource(value: &Value, at: &str, problems: &mut Vec<ConfigProblem>) -> DataResource {
    let mut resource = DataResource {
        resource_type: String::new(),
        values: Vec::new(),
    };
    let Some(map) = object(value, at, &["Type", "Values"], problems) else {
        return resource;
    };
    match optional_string(map, at, "Type", problems) {
        Some(t) => resource.resource_type = t,
        None => problems.push(ConfigProblem::new(
            format!("{at}.Type"),
            "DataResources.Type is required",
        )),
    }
    if let Some(values) = map.get("Values").filter(|v| !v.is_null()) {
        resource.values = string_list(values, &format!("{at}.Values"), problems);
    }
    resource
}

fn read_advanced(value: &Value, at: &str, problems: &mut Vec<ConfigProblem>) -> AdvancedSelector {
    let mut selector = AdvancedSelector {
        name: None,
        field_selectors: Vec::new(),
    };
    let Some(map) = object(value, at, &["Name", "FieldSelectors"], problems) else {
        return selector;
    };
    selector.name = optional_string(map, at, "Name", problems);
    match map.get("FieldSelectors").filter(|v| !v.is_null()) {
        Some(list) => {
            selector.field_selectors = read_list(
                list,
                &format!("{at}.FieldSelectors"),
                problems,
                read_field_selector,
            )
        }
        None => problems.push(ConfigProblem::new(
            format!("{at}.FieldSelectors"),
            "FieldSelectors is required",
        )),
    }
    selector
}

fn read_field_selector(
    value: &Value,
    at: &str,
    problems: &mut Vec<ConfigProblem>,
) -> FieldSelector {
    let mut selector = FieldSelector::default();
    let mut keys = vec!["Field"];
    keys.extend(Operator::ALL.iter().map(|op| op.as_str()));
    let Some(map) = object(value, at, &keys, problems) else {
        return selector;
    };
    match optional_string(map, at, "Field", problems) {
        Some(field) => selector.field = field,
        None => problems.push(ConfigProblem::new(
            format!("{at}.Field"),
            "Field is required",
        )),
    }
    for op in Operator::ALL {
        if let Some(values) = map.get(op.as_str()).filter(|v| !v.is_null()) {
            selector.operators[op.index()] = Some(string_list(
                values,
                &format!("{at}.{}", op.as_str()),
                problems,
            ));
        }
    }
    selector
}

fn read_insight(
    value: &Value,
    at: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<InsightSelector> {
    let map = object(value, at, &["InsightType", "EventCategories"], problems)?;
    let insight_type = match optional_string(map, at, "InsightType", problems) {
        Some(t) if t == "ApiCallRateInsight" => InsightType::ApiCallRateInsight,
        Some(t) if t == "ApiErrorRateInsight" => InsightType::ApiErrorRateInsight,
        Some(t) => {
            problems.push(ConfigProblem::new(
                format!("{at}.InsightType"),
                format!("InvalidInsightSelectorsException: Value {t} for InsightType is invalid (expected ApiCallRateInsight or ApiErrorRateInsight)."),
            ));
            return None;
        }
        None => {
            problems.push(ConfigProblem::new(
                format!("{at}.InsightType"),
                "InvalidInsightSelectorsException: InsightType is required.",
            ));
            return None;
        }
    };
    let mut event_categories = Vec::new();
    if let Some(list) = map.get("EventCategories").filter(|v| !v.is_null()) {
        let at = format!("{at}.EventCategories");
        for name in string_list(list, &at, problems) {
            match name.as_str() {
                "Management" => event_categories.push(InsightEventCategory::Management),
                "Data" => event_categories.push(InsightEventCategory::Data),
                other => problems.push(ConfigProblem::new(
                    at.clone(),
                    format!("InvalidInsightSelectorsException: Value {other} for EventCategories is invalid (expected Management or Data)."),
                )),
            }
        }
    }
    Some(InsightSelector {
        insight_type,
        event_categories,
    })
}
