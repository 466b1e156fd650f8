//! The reference interpreter: decides a record by walking the configuration as written, with
//! plain loops and string comparisons. Slow and obviously right; the compiled matcher must
//! agree with it on every record (property test `tests/select_properties.rs`).

use crate::record::{EventCategory, Record};

use super::fields::{field_passes, read_only_value, resource_arn, scalar_value, Field};
use super::model::{AdvancedSelector, BasicSelector, FieldSelector, Selectors};
use super::validate::{basic_value_kind, BasicValue};
use super::{DropReason, TrailConfig, Verdict};

/// The verdict for `record` under `config`, computed without compiling.
pub fn interpret(config: &TrailConfig, record: &Record<'_>) -> Verdict {
    if let Some(reason) = config.region_scope().drop_reason(record) {
        return Verdict::Drop(reason);
    }
    let kept_by = match config.selectors() {
        Selectors::Default => {
            return if basic_matches(&BasicSelector::default(), record) {
                Verdict::Keep { selector: None }
            } else {
                Verdict::Drop(DropReason::NotSelected)
            };
        }
        Selectors::Basic(list) => list.iter().position(|s| basic_matches(s, record)),
        Selectors::Advanced(list) => list.iter().position(|s| advanced_matches(s, record)),
    };
    match kept_by {
        Some(i) => Verdict::Keep { selector: Some(i) },
        None => Verdict::Drop(DropReason::NotSelected),
    }
}

pub(crate) fn basic_matches(selector: &BasicSelector, record: &Record<'_>) -> bool {
    if !selector.read_write_type.accepts(read_only_value(record)) {
        return false;
    }
    match record.category() {
        EventCategory::Management => {
            selector.include_management_events
                && !record.event_source().is_some_and(|source| {
                    selector
                        .exclude_management_event_sources
                        .iter()
                        .any(|excluded| excluded == source)
                })
        }
        EventCategory::Data => record.fields.resources.iter().flatten().any(|resource| {
            let (Some(kind), Some(arn)) =
                (resource.resource_type.as_deref(), resource_arn(resource))
            else {
                return false;
            };
            selector
                .data_resources
                .iter()
                .filter(|dr| dr.resource_type == kind)
                .flat_map(|dr| dr.values.iter())
                .any(|value| basic_value_matches(kind, value, arn))
        }),
        _ => false,
    }
}

/// S3 values and "all of a type" values are ARN prefixes; a Lambda function or DynamoDB table
/// must be named exactly (`…:function:helloworld` does not select `helloworld2`).
pub(crate) fn basic_value_matches(resource_type: &str, value: &str, arn: &str) -> bool {
    match basic_value_kind(resource_type, value) {
        Some(BasicValue::AllOfType) => arn.starts_with(value),
        Some(BasicValue::Specific) if resource_type == "AWS::S3::Object" => arn.starts_with(value),
        Some(BasicValue::Specific) => arn == value,
        None => false,
    }
}

fn advanced_matches(selector: &AdvancedSelector, record: &Record<'_>) -> bool {
    let selected_types: Vec<&str> = selector
        .field_selectors
        .iter()
        .filter(|fs| fs.field == Field::ResourcesType.as_str())
        .flat_map(|fs| fs.values(super::fields::Operator::Equals).unwrap_or(&[]))
        .map(String::as_str)
        .collect();
    selector
        .field_selectors
        .iter()
        .all(|fs| field_selector_passes(fs, record, &selected_types))
}

fn field_selector_passes(fs: &FieldSelector, record: &Record<'_>, selected_types: &[&str]) -> bool {
    let Some(field) = Field::parse(&fs.field) else {
        return false;
    };
    let resources = record.fields.resources.iter().flatten();
    let values: Vec<&str> = match field {
        Field::ResourcesType => resources
            .filter_map(|r| r.resource_type.as_deref())
            .collect(),
        Field::ResourcesArn => resources
            .filter(|r| {
                selected_types.is_empty()
                    || r.resource_type
                        .as_deref()
                        .is_some_and(|t| selected_types.contains(&t))
            })
            .filter_map(resource_arn)
            .collect(),
        scalar => scalar_value(record, scalar).into_iter().collect(),
    };
    let has_select = fs.conditions().any(|(op, _)| !op.is_negative());
    let hits = |negative: bool, value: &str| {
        fs.conditions()
            .filter(|(op, _)| op.is_negative() == negative)
            .any(|(op, patterns)| patterns.iter().any(|p| op.compares(value, p)))
    };
    field_passes(values, has_select, |v| hits(false, v), |v| hits(true, v))
}
