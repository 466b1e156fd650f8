//! The compiled matcher: selectors turned once into hash sets (exact values), hash probes by
//! length (prefixes and suffixes of at most 8 distinct lengths: one probe per length) and
//! otherwise anchored Aho-Corasick automata (suffixes by walking the value backwards), so that
//! the cost of a field test does not grow with the number of configured values (flat up to the
//! 500-value limit). An advanced selector's conditions run cheapest first.

mod affix;
mod value_set;

use crate::record::{EventCategory, Record};

use super::fields::{
    field_passes, read_only_value, resource_arn, scalar_value, Field, Operator, SelectorCategory,
};
use super::model::{AdvancedSelector, BasicSelector, ReadWriteType, Selectors};
use super::reference::BASIC_RESOURCE_TYPES;
use super::validate::{basic_value_kind, BasicValue};
use super::{DropReason, Verdict};
use value_set::{ValueSet, ValueSetBuilder};

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// The default trail's implicit selector has no index.
    default_trail: bool,
    selectors: CompiledSelectors,
}

#[derive(Debug, Clone)]
enum CompiledSelectors {
    Basic(Vec<CompiledBasic>),
    Advanced(Vec<CompiledAdvanced>),
}

impl Compiled {
    pub(crate) fn new(selectors: &Selectors) -> Compiled {
        match selectors {
            Selectors::Default => Compiled {
                default_trail: true,
                selectors: CompiledSelectors::Basic(vec![CompiledBasic::new(
                    &BasicSelector::default(),
                )]),
            },
            Selectors::Basic(list) => Compiled {
                default_trail: false,
                selectors: CompiledSelectors::Basic(list.iter().map(CompiledBasic::new).collect()),
            },
            Selectors::Advanced(list) => Compiled {
                default_trail: false,
                selectors: CompiledSelectors::Advanced(
                    list.iter().map(CompiledAdvanced::new).collect(),
                ),
            },
        }
    }

    /// `category` is `record.category()`, computed once by the caller.
    pub(crate) fn evaluate(&self, record: &Record<'_>, category: EventCategory) -> Verdict {
        let kept_by = match &self.selectors {
            CompiledSelectors::Basic(list) => list.iter().position(|s| s.matches(record, category)),
            CompiledSelectors::Advanced(list) => {
                let Some(category) = SelectorCategory::of_record(category) else {
                    return Verdict::Drop(DropReason::NotSelected);
                };
                list.iter().position(|s| s.matches(record, category))
            }
        };
        match kept_by {
            Some(_) if self.default_trail => Verdict::Keep { selector: None },
            Some(i) => Verdict::Keep { selector: Some(i) },
            None => Verdict::Drop(DropReason::NotSelected),
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledBasic {
    read_write_type: ReadWriteType,
    include_management_events: bool,
    excluded_sources: Vec<Box<str>>,
    /// Per entry of `BASIC_RESOURCE_TYPES`: the values for that type, if any.
    data: [Option<ValueSet>; 3],
}

impl CompiledBasic {
    fn new(selector: &BasicSelector) -> CompiledBasic {
        let data = BASIC_RESOURCE_TYPES.map(|resource_type| {
            let mut builder = ValueSetBuilder::default();
            let values = selector
                .data_resources
                .iter()
                .filter(|dr| dr.resource_type == resource_type)
                .flat_map(|dr| dr.values.iter());
            for value in values {
                // S3 values and "all of a type" values are prefixes; functions and tables exact.
                match basic_value_kind(resource_type, value) {
                    Some(BasicValue::AllOfType) => builder.prefixes.push(value),
                    Some(BasicValue::Specific) if resource_type == "AWS::S3::Object" => {
                        builder.prefixes.push(value)
                    }
                    Some(BasicValue::Specific) => builder.exact.push(value),
                    None => {}
                }
            }
            builder.build()
        });
        CompiledBasic {
            read_write_type: selector.read_write_type,
            include_management_events: selector.include_management_events,
            excluded_sources: selector
                .exclude_management_event_sources
                .iter()
                .map(|s| s.as_str().into())
                .collect(),
            data,
        }
    }

    fn matches(&self, record: &Record<'_>, category: EventCategory) -> bool {
        if !self.read_write_type.accepts(read_only_value(record)) {
            return false;
        }
        match category {
            EventCategory::Management => {
                self.include_management_events
                    && !record
                        .event_source()
                        .is_some_and(|s| self.excluded_sources.iter().any(|e| &**e == s))
            }
            EventCategory::Data => record.fields.resources.iter().flatten().any(|resource| {
                let (Some(kind), Some(arn)) =
                    (resource.resource_type.as_deref(), resource_arn(resource))
                else {
                    return false;
                };
                BASIC_RESOURCE_TYPES
                    .iter()
                    .position(|t| *t == kind)
                    .and_then(|i| self.data[i].as_ref())
                    .is_some_and(|set| set.matches(arn))
            }),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledAdvanced {
    category: Option<SelectorCategory>,
    /// `resources.type` Equals values: `resources.ARN` is tested on resources of these types.
    resource_types: Vec<Box<str>>,
    conditions: Vec<CompiledCondition>,
}

#[derive(Debug, Clone)]
struct CompiledCondition {
    field: Field,
    has_select: bool,
    select: Option<ValueSet>,
    deselect: Option<ValueSet>,
}

impl CompiledCondition {
    /// A rank of how much a test costs: single-valued fields before the `resources` list
    /// (`resources.ARN` also filters by type), exact values before prefixes and suffixes.
    fn cost(&self) -> u8 {
        let field = match self.field {
            Field::ResourcesType => 2,
            Field::ResourcesArn => 4,
            _ => 0,
        };
        let affixes = [&self.select, &self.deselect]
            .into_iter()
            .flatten()
            .any(ValueSet::has_affixes);
        field + u8::from(affixes)
    }
}

impl CompiledAdvanced {
    fn new(selector: &AdvancedSelector) -> CompiledAdvanced {
        let mut category = None;
        let mut resource_types = Vec::new();
        let mut conditions = Vec::new();
        for fs in &selector.field_selectors {
            let Some(field) = Field::parse(&fs.field) else {
                // Validation refuses unknown fields; a condition nothing passes keeps the
                // compiled matcher equal to the interpreter if one ever got through.
                conditions.push(CompiledCondition {
                    field: Field::ResourcesType,
                    has_select: true,
                    select: None,
                    deselect: None,
                });
                continue;
            };
            if field == Field::EventCategory {
                // Decided once per selector by comparing categories, not as a condition.
                let values = fs.values(Operator::Equals).unwrap_or(&[]);
                category = values.first().and_then(|v| SelectorCategory::parse(v));
                continue;
            }
            if field == Field::ResourcesType {
                resource_types.extend(
                    fs.values(Operator::Equals)
                        .unwrap_or(&[])
                        .iter()
                        .map(|v| v.as_str().into()),
                );
            }
            let mut select = ValueSetBuilder::default();
            let mut deselect = ValueSetBuilder::default();
            for (op, values) in fs.conditions() {
                let builder = if op.is_negative() {
                    &mut deselect
                } else {
                    &mut select
                };
                let list = match op {
                    Operator::Equals | Operator::NotEquals => &mut builder.exact,
                    Operator::StartsWith | Operator::NotStartsWith => &mut builder.prefixes,
                    Operator::EndsWith | Operator::NotEndsWith => &mut builder.suffixes,
                };
                list.extend(values.iter().map(String::as_str));
            }
            conditions.push(CompiledCondition {
                field,
                has_select: fs.conditions().any(|(op, _)| !op.is_negative()),
                select: select.build(),
                deselect: deselect.build(),
            });
        }
        // All conditions must pass and each is a pure test of the record, so their order is
        // free: the cheapest go first, and the first that fails ends the selector.
        conditions.sort_by_key(CompiledCondition::cost);
        CompiledAdvanced {
            category,
            resource_types,
            conditions,
        }
    }

    fn matches(&self, record: &Record<'_>, category: SelectorCategory) -> bool {
        if self.category != Some(category) {
            return false;
        }
        self.conditions.iter().all(|c| self.passes(c, record))
    }

    fn passes(&self, condition: &CompiledCondition, record: &Record<'_>) -> bool {
        let select = |v: &str| condition.select.as_ref().is_some_and(|s| s.matches(v));
        let deselect = |v: &str| condition.deselect.as_ref().is_some_and(|s| s.matches(v));
        let resources = record.fields.resources.iter().flatten();
        match condition.field {
            Field::ResourcesType => field_passes(
                resources.filter_map(|r| r.resource_type.as_deref()),
                condition.has_select,
                select,
                deselect,
            ),
            Field::ResourcesArn => field_passes(
                resources
                    .filter(|r| {
                        self.resource_types.is_empty()
                            || r.resource_type
                                .as_deref()
                                .is_some_and(|t| self.resource_types.iter().any(|s| &**s == t))
                    })
                    .filter_map(resource_arn),
                condition.has_select,
                select,
                deselect,
            ),
            scalar => field_passes(
                scalar_value(record, scalar),
                condition.has_select,
                select,
                deselect,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_run_cheapest_first() {
        let selectors = crate::select::TrailConfig::from_json(
            r#"{"AdvancedEventSelectors": [{"FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::b/"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "userIdentity.arn", "NotEndsWith": ["/ci"]},
                {"Field": "eventName", "Equals": ["GetObject"]}
            ]}]}"#,
        )
        .expect("valid");
        let compiled = Compiled::new(selectors.selectors());
        let CompiledSelectors::Advanced(list) = &compiled.selectors else {
            panic!("advanced selectors");
        };
        let fields: Vec<Field> = list[0].conditions.iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                Field::EventName,
                Field::UserIdentityArn,
                Field::ResourcesType,
                Field::ResourcesArn
            ]
        );
    }
}
