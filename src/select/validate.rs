//! Validation as PutEventSelectors does it (fact sheet sections 4, 5.1–5.5 and 10): every
//! problem is reported, each naming the selector, the field and the value at fault. Messages
//! follow CloudTrail's `Value <v> for <field> is invalid.` form where CloudTrail's own text is
//! known; the other texts are ours (CloudTrail's are not published).

use super::config_problem::ConfigProblem;
use super::fields::{Field, Operator, SelectorCategory};
use super::model::{AdvancedSelector, BasicSelector, FieldSelector, InsightSelector, Selectors};
use super::reference::{
    arn_templates_for, is_known_resource_type, is_valid_arn_for, BASIC_RESOURCE_TYPES,
};

/// Basic event selectors per trail.
pub const MAX_BASIC_SELECTORS: usize = 5;
/// Data resources summed over all basic selectors ("all of a type" values do not count).
pub const MAX_DATA_RESOURCES: usize = 250;
/// Values summed over every operator list of every advanced selector of a trail.
pub const MAX_ADVANCED_VALUES: usize = 500;
/// `OperatorValue` length bounds from the API model.
pub const MAX_VALUE_CHARS: usize = 2048;
/// `SelectorName` and `SelectorField` maximum length from the API model.
pub const MAX_NAME_CHARS: usize = 1000;
/// The management event sources that can be excluded (basic and advanced selectors alike).
pub const EXCLUDABLE_MANAGEMENT_SOURCES: [&str; 2] = ["kms.amazonaws.com", "rdsdata.amazonaws.com"];
/// Categories advanced selectors accept only on CloudTrail Lake event data stores.
const LAKE_ONLY_CATEGORIES: [&str; 4] = [
    "Insight",
    "ConfigurationItem",
    "Evidence",
    "ActivityAuditLog",
];

/// The trail properties that validation looks at.
pub(crate) struct TrailScope<'c> {
    pub home_region: Option<&'c str>,
    pub trail_arn: Option<&'c str>,
    pub is_multi_region_trail: bool,
    pub include_global_service_events: bool,
}

pub(crate) fn validate_trail(scope: &TrailScope<'_>, problems: &mut Vec<ConfigProblem>) {
    if scope.is_multi_region_trail && !scope.include_global_service_events {
        problems.push(ConfigProblem::new(
            "IncludeGlobalServiceEvents",
            "InvalidParameterCombinationException: Multi-Region trail must include global service events.",
        ));
    }
    let arn_region = match scope.trail_arn {
        Some(arn) => match trail_arn_region(arn) {
            Some(region) => Some(region),
            None => {
                problems.push(ConfigProblem::new(
                    "TrailARN",
                    format!("CloudTrailARNInvalidException: {arn} is not a trail ARN (arn:<partition>:cloudtrail:<region>:<account>:trail/<name>)."),
                ));
                None
            }
        },
        None => None,
    };
    if let (Some(home), Some(arn_region)) = (scope.home_region, arn_region) {
        if home != arn_region {
            problems.push(ConfigProblem::new(
                "HomeRegion",
                format!("HomeRegion {home} does not match the Region {arn_region} of TrailARN."),
            ));
        }
    }
    if !scope.is_multi_region_trail && scope.home_region.is_none() && arn_region.is_none() {
        problems.push(ConfigProblem::new(
            "HomeRegion",
            "a single-Region trail needs HomeRegion or TrailARN to know which Region it logs.",
        ));
    }
}

/// The Region of `arn:<partition>:cloudtrail:<region>:<account>:trail/<name>`.
pub fn trail_arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "cloudtrail", region, account, resource]
            if !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && resource
                    .strip_prefix("trail/")
                    .is_some_and(|n| !n.is_empty()) =>
        {
            Some(region)
        }
        _ => None,
    }
}

pub(crate) fn validate_selectors(
    selectors: &Selectors,
    both_kinds: bool,
    problems: &mut Vec<ConfigProblem>,
) {
    if both_kinds {
        problems.push(ConfigProblem::new(
            "EventSelectors",
            "EventSelectors and AdvancedEventSelectors cannot be used together; a trail has one kind or the other.",
        ));
    }
    match selectors {
        Selectors::Default => {}
        Selectors::Basic(list) => validate_basic(list, problems),
        Selectors::Advanced(list) => validate_advanced(list, problems),
    }
}

pub(crate) fn validate_insights(list: &[InsightSelector], problems: &mut Vec<ConfigProblem>) {
    for (i, selector) in list.iter().enumerate() {
        if list[..i]
            .iter()
            .any(|s| s.insight_type == selector.insight_type)
        {
            problems.push(ConfigProblem::new(
                format!("InsightSelectors[{i}]"),
                format!(
                    "InvalidInsightSelectorsException: InsightType {} is listed twice.",
                    selector.insight_type.as_str()
                ),
            ));
        }
    }
}

fn validate_basic(list: &[BasicSelector], problems: &mut Vec<ConfigProblem>) {
    if list.is_empty() {
        problems.push(ConfigProblem::new(
            "EventSelectors",
            "a trail with EventSelectors needs 1 to 5 of them; found 0.",
        ));
    }
    if list.len() > MAX_BASIC_SELECTORS {
        problems.push(ConfigProblem::new(
            "EventSelectors",
            format!(
                "a trail can have at most {MAX_BASIC_SELECTORS} event selectors; found {}.",
                list.len()
            ),
        ));
    }
    let mut counted_resources = 0;
    for (i, selector) in list.iter().enumerate() {
        let at = format!("EventSelectors[{i}]");
        for source in &selector.exclude_management_event_sources {
            if !EXCLUDABLE_MANAGEMENT_SOURCES.contains(&source.as_str()) {
                problems.push(ConfigProblem::new(
                    format!("{at}.ExcludeManagementEventSources"),
                    format!("Value {source} for ExcludeManagementEventSources is invalid (only kms.amazonaws.com and rdsdata.amazonaws.com can be excluded)."),
                ));
            }
        }
        for (j, resource) in selector.data_resources.iter().enumerate() {
            let at = format!("{at}.DataResources[{j}]");
            counted_resources +=
                validate_data_resource(&at, &resource.resource_type, &resource.values, problems);
        }
    }
    if counted_resources > MAX_DATA_RESOURCES {
        problems.push(ConfigProblem::new(
            "EventSelectors",
            format!("a trail can have at most {MAX_DATA_RESOURCES} data resources across all event selectors; found {counted_resources}."),
        ));
    }
}

/// Checks one `DataResources` entry; returns how many values count toward the 250 limit.
fn validate_data_resource(
    at: &str,
    resource_type: &str,
    values: &[String],
    problems: &mut Vec<ConfigProblem>,
) -> usize {
    if resource_type.is_empty() {
        return 0; // reported by the reader
    }
    if !BASIC_RESOURCE_TYPES.contains(&resource_type) {
        let message = if is_known_resource_type(resource_type) {
            format!("Value {resource_type} for DataResources.Type is invalid: basic event selectors accept only AWS::S3::Object, AWS::Lambda::Function and AWS::DynamoDB::Table; use advanced event selectors for it.")
        } else {
            format!("Value {resource_type} for DataResources.Type is invalid.")
        };
        problems.push(ConfigProblem::new(format!("{at}.Type"), message));
        return 0;
    }
    if values.is_empty() {
        problems.push(ConfigProblem::new(
            format!("{at}.Values"),
            format!("DataResources.Values for {resource_type} must list at least one value."),
        ));
    }
    let mut counted = 0;
    for value in values {
        match basic_value_kind(resource_type, value) {
            Some(BasicValue::AllOfType) => {}
            Some(BasicValue::Specific) => counted += 1,
            None => problems.push(ConfigProblem::new(
                format!("{at}.Values"),
                format!("Value {value} for DataResources.Values is invalid."),
            )),
        }
    }
    counted
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BasicValue {
    /// `arn:aws:s3`, `arn:aws:s3:::`, `arn:aws:lambda`, `arn:aws:dynamodb`: all of the type.
    AllOfType,
    /// A bucket/prefix, a function or a table.
    Specific,
}

/// What a basic `DataResources.Values` entry means for its type; `None` when invalid.
pub(crate) fn basic_value_kind(resource_type: &str, value: &str) -> Option<BasicValue> {
    if value.is_empty() || value.len() > MAX_VALUE_CHARS || value.contains('*') {
        return None;
    }
    let service = match resource_type {
        "AWS::S3::Object" => "s3",
        "AWS::Lambda::Function" => "lambda",
        "AWS::DynamoDB::Table" => "dynamodb",
        _ => return None,
    };
    let mut parts = value.splitn(3, ':');
    let (Some("arn"), Some(partition), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if partition.is_empty()
        || !partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return None;
    }
    if rest == service || (service == "s3" && rest == "s3:::") {
        return Some(BasicValue::AllOfType);
    }
    if service == "s3" {
        // A bucket (`arn:aws:s3:::bucket/`) or a key prefix inside one.
        let bucket_and_key = rest.strip_prefix("s3:::")?;
        let bucket = bucket_and_key.split('/').next().unwrap_or("");
        return (!bucket.is_empty() && bucket_and_key.contains('/'))
            .then_some(BasicValue::Specific);
    }
    is_valid_arn_for(resource_type, value).then_some(BasicValue::Specific)
}

fn validate_advanced(list: &[AdvancedSelector], problems: &mut Vec<ConfigProblem>) {
    let mut total_values = 0;
    for (i, selector) in list.iter().enumerate() {
        let at = match &selector.name {
            Some(name) => format!("AdvancedEventSelectors[{i}] ({name})"),
            None => format!("AdvancedEventSelectors[{i}]"),
        };
        if let Some(name) = &selector.name {
            if name.chars().count() > MAX_NAME_CHARS {
                problems.push(ConfigProblem::new(
                    at.clone(),
                    format!("Name is longer than {MAX_NAME_CHARS} characters."),
                ));
            }
        }
        total_values += selector
            .field_selectors
            .iter()
            .flat_map(|fs| fs.conditions())
            .map(|(_, values)| values.len())
            .sum::<usize>();
        validate_one_advanced(&at, selector, problems);
    }
    if total_values > MAX_ADVANCED_VALUES {
        problems.push(ConfigProblem::new(
            "AdvancedEventSelectors",
            format!("a trail's advanced event selectors can have at most {MAX_ADVANCED_VALUES} values in total; found {total_values}."),
        ));
    }
}

fn validate_one_advanced(at: &str, selector: &AdvancedSelector, problems: &mut Vec<ConfigProblem>) {
    if selector.field_selectors.is_empty() {
        problems.push(ConfigProblem::new(
            format!("{at}.FieldSelectors"),
            "FieldSelectors must contain at least 1 field selector.",
        ));
        return;
    }
    let category = selector_category(at, selector, problems);
    let mut seen = SelectorFields::default();
    for (j, fs) in selector.field_selectors.iter().enumerate() {
        let at = format!("{at}.FieldSelectors[{j}]");
        check_operator_lists(&at, fs, problems);
        let Some(field) = check_field_name(&at, &fs.field, problems) else {
            continue;
        };
        if field == Field::EventCategory {
            continue; // checked by selector_category
        }
        let Some(category) = category else {
            continue;
        };
        if check_field_allowed(&at, field, category, problems) {
            check_field_rules(&at, field, category, fs, &mut seen, problems);
            check_wildcards(&at, field, fs, problems);
        }
    }
    match category {
        Some(SelectorCategory::Data) if seen.resource_type_selectors == 0 => problems.push(
            ConfigProblem::new(at, "resources.type is required when eventCategory is Data."),
        ),
        Some(SelectorCategory::NetworkActivity) if !seen.network_source => {
            problems.push(ConfigProblem::new(
                at,
                "eventSource is required when eventCategory is NetworkActivity.",
            ))
        }
        _ => {}
    }
    if let Some(resource_type) = seen.resource_type {
        for (j, fs) in selector.field_selectors.iter().enumerate() {
            if fs.field == Field::ResourcesArn.as_str() {
                check_arn_values(
                    &format!("{at}.FieldSelectors[{j}]"),
                    resource_type,
                    fs,
                    problems,
                );
            }
        }
    }
}

/// What the field selectors of one advanced selector said so far, for the checks across them.
#[derive(Default)]
struct SelectorFields<'s> {
    resource_type_selectors: usize,
    /// The `resources.type` value, for checking `resources.ARN` values against its formats.
    resource_type: Option<&'s str>,
    network_source: bool,
}

/// Whether the category allows the field on trails; reports it when not.
fn check_field_allowed(
    at: &str,
    field: Field,
    category: SelectorCategory,
    problems: &mut Vec<ConfigProblem>,
) -> bool {
    if category.allowed_fields().contains(&field) {
        return true;
    }
    let allowed: Vec<&str> = category
        .allowed_fields()
        .iter()
        .map(|f| f.as_str())
        .collect();
    problems.push(ConfigProblem::new(
        at,
        format!(
            "Field {} is not supported for eventCategory {} on trails (allowed: eventCategory, {}).",
            field.as_str(),
            category.as_str(),
            allowed.join(", ")
        ),
    ));
    false
}

/// The operators and values one field allows (fact sheet 5.3).
fn check_field_rules<'s>(
    at: &str,
    field: Field,
    category: SelectorCategory,
    fs: &'s FieldSelector,
    seen: &mut SelectorFields<'s>,
    problems: &mut Vec<ConfigProblem>,
) {
    match field {
        Field::ResourcesType => {
            seen.resource_type_selectors += 1;
            if seen.resource_type_selectors == 2 {
                problems.push(ConfigProblem::new(
                    at,
                    "only one resources.type field selector is allowed per advanced event selector.",
                ));
            }
            only_operators(at, fs, &[Operator::Equals], problems);
            seen.resource_type = check_resource_type(at, fs, problems).or(seen.resource_type);
        }
        Field::ReadOnly => {
            only_operators(at, fs, &[Operator::Equals], problems);
            allowed_values(at, fs, &["true", "false"], problems);
        }
        Field::SessionCredentialFromConsole => {
            only_operators(at, fs, &[Operator::Equals, Operator::NotEquals], problems);
            allowed_values(at, fs, &["true"], problems);
        }
        Field::ErrorCode => {
            only_operators(at, fs, &[Operator::Equals], problems);
            allowed_values(at, fs, &["VpceAccessDenied"], problems);
        }
        Field::EventSource if category == SelectorCategory::Management => {
            only_operators(at, fs, &[Operator::NotEquals], problems);
            allowed_values(at, fs, &EXCLUDABLE_MANAGEMENT_SOURCES, problems);
        }
        Field::EventSource if category == SelectorCategory::NetworkActivity => {
            seen.network_source = true;
            only_operators(at, fs, &[Operator::Equals], problems);
            if fs.values(Operator::Equals).is_some_and(|v| v.len() > 1) {
                problems.push(ConfigProblem::new(
                    at,
                    "eventSource for eventCategory NetworkActivity takes exactly one value (one event source per selector).",
                ));
            }
        }
        _ => {}
    }
}

/// The selector's `eventCategory`, reporting a missing, repeated or malformed one.
fn selector_category(
    at: &str,
    selector: &AdvancedSelector,
    problems: &mut Vec<ConfigProblem>,
) -> Option<SelectorCategory> {
    let mut found = selector
        .field_selectors
        .iter()
        .enumerate()
        .filter(|(_, fs)| fs.field == Field::EventCategory.as_str());
    let Some((j, fs)) = found.next() else {
        problems.push(ConfigProblem::new(
            at,
            "eventCategory is required: every advanced event selector needs a field selector eventCategory Equals Management, Data or NetworkActivity.",
        ));
        return None;
    };
    let at = format!("{at}.FieldSelectors[{j}]");
    if found.next().is_some() {
        problems.push(ConfigProblem::new(
            at.clone(),
            "only one eventCategory field selector is allowed per advanced event selector.",
        ));
    }
    only_operators(&at, fs, &[Operator::Equals], problems);
    let values = fs.values(Operator::Equals).unwrap_or(&[]);
    if values.len() != 1 {
        if !values.is_empty() {
            problems.push(ConfigProblem::new(
                at,
                format!(
                    "eventCategory Equals takes exactly one value; found {}.",
                    values.len()
                ),
            ));
        }
        return None;
    }
    let value = values[0].as_str();
    match SelectorCategory::parse(value) {
        Some(category) => Some(category),
        None => {
            let message = if LAKE_ONLY_CATEGORIES.contains(&value) {
                format!("Value {value} for eventCategory is only supported by CloudTrail Lake event data stores, not by trails.")
            } else {
                format!("Value {value} for eventCategory is invalid (expected Management, Data or NetworkActivity).")
            };
            problems.push(ConfigProblem::new(at, message));
            None
        }
    }
}

fn check_field_name(at: &str, name: &str, problems: &mut Vec<ConfigProblem>) -> Option<Field> {
    if name.is_empty() {
        return None; // reported by the reader
    }
    if let Some(field) = Field::parse(name) {
        return Some(field);
    }
    let well_formed = name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '|');
    let message = if well_formed {
        format!("Field {name} is not a valid field for advanced event selectors of trails.")
    } else {
        format!("Value {name} for Field is invalid: fields are 1 to {MAX_NAME_CHARS} letters, digits, '.' and '_'.")
    };
    problems.push(ConfigProblem::new(at, message));
    None
}

/// Operator lists present but empty, field selectors with no operator, values of bad length.
fn check_operator_lists(at: &str, fs: &FieldSelector, problems: &mut Vec<ConfigProblem>) {
    if fs.conditions().next().is_none() {
        problems.push(ConfigProblem::new(
            at,
            format!(
                "field selector for {} has no operator; give at least one of Equals, StartsWith, EndsWith, NotEquals, NotStartsWith, NotEndsWith.",
                display_field(&fs.field)
            ),
        ));
    }
    for (op, values) in fs.conditions() {
        if values.is_empty() {
            problems.push(ConfigProblem::new(
                format!("{at}.{}", op.as_str()),
                format!(
                    "Invalid length for parameter {}, value: 0, valid min length: 1.",
                    op.as_str()
                ),
            ));
        }
        for value in values {
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_VALUE_CHARS {
                problems.push(ConfigProblem::new(
                    format!("{at}.{}", op.as_str()),
                    format!(
                        "a value of {chars} characters for {} is invalid: values are 1 to {MAX_VALUE_CHARS} characters.",
                        display_field(&fs.field)
                    ),
                ));
            }
        }
    }
}

fn display_field(name: &str) -> &str {
    if name.is_empty() {
        "(no Field)"
    } else {
        name
    }
}

fn only_operators(
    at: &str,
    fs: &FieldSelector,
    allowed: &[Operator],
    problems: &mut Vec<ConfigProblem>,
) {
    for (op, _) in fs.conditions() {
        if !allowed.contains(&op) {
            let names: Vec<&str> = allowed.iter().map(|op| op.as_str()).collect();
            problems.push(ConfigProblem::new(
                at,
                format!(
                    "Operator {} is not supported for field {}; use {}.",
                    op.as_str(),
                    fs.field,
                    names.join(" or ")
                ),
            ));
        }
    }
}

fn allowed_values(
    at: &str,
    fs: &FieldSelector,
    allowed: &[&str],
    problems: &mut Vec<ConfigProblem>,
) {
    for (op, values) in fs.conditions() {
        for value in values {
            if !allowed.contains(&value.as_str()) {
                problems.push(ConfigProblem::new(
                    format!("{at}.{}", op.as_str()),
                    format!(
                        "Value {value} for {} is invalid (allowed: {}).",
                        fs.field,
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
}

fn check_resource_type<'f>(
    at: &str,
    fs: &'f FieldSelector,
    problems: &mut Vec<ConfigProblem>,
) -> Option<&'f str> {
    let values = fs.values(Operator::Equals)?;
    if values.len() > 1 {
        problems.push(ConfigProblem::new(
            at,
            format!("resources.type Equals takes exactly one value (one resource type per selector); found {}.", values.len()),
        ));
    }
    let value = values.first()?;
    if !is_known_resource_type(value) {
        problems.push(ConfigProblem::new(
            format!("{at}.Equals"),
            format!("Value {value} for resources.type is invalid."),
        ));
        return None;
    }
    Some(value)
}

fn check_arn_values(
    at: &str,
    resource_type: &str,
    fs: &FieldSelector,
    problems: &mut Vec<ConfigProblem>,
) {
    for op in [Operator::Equals, Operator::NotEquals] {
        for value in fs.values(op).unwrap_or(&[]) {
            if !value.is_empty() && !is_valid_arn_for(resource_type, value) {
                let expected = match arn_templates_for(resource_type) {
                    [] => "arn:<partition>:<service>:<region>:<account_ID>:<resource>".to_string(),
                    templates => templates.join(" or "),
                };
                problems.push(ConfigProblem::new(
                    format!("{at}.{}", op.as_str()),
                    format!("Value {value} for resources.ARN is invalid: {} needs a full ARN of resource type {resource_type} ({expected}).", op.as_str()),
                ));
            }
        }
    }
}

/// CloudTrail has no wildcards: `*` in a value is refused, except inside an S3 object key in
/// `resources.ARN` (keys may contain `*`), where only a trailing `*` is taken as a wildcard.
fn check_wildcards(at: &str, field: Field, fs: &FieldSelector, problems: &mut Vec<ConfigProblem>) {
    for (op, values) in fs.conditions() {
        for value in values {
            let wildcard = if field == Field::ResourcesArn {
                value.ends_with('*')
            } else {
                value.contains('*')
            };
            if wildcard {
                problems.push(ConfigProblem::new(
                    format!("{at}.{}", op.as_str()),
                    format!("Value {value} for {} is invalid: wildcards (*) are not supported; use StartsWith or EndsWith.", field.as_str()),
                ));
            }
        }
    }
}
