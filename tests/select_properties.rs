//! Invariants of selection over random valid selectors and real records:
//! - the compiled matcher decides exactly as the reference interpreter;
//! - a condition and its logical negation split what the rest of the selector keeps;
//! - adding a NotEquals value never makes a trail keep more.

#[path = "support/select_data.rs"]
mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};
use trailwatch::record::Record;
use trailwatch::select::{interpret, TrailConfig};

/// A sample of real records (all data and network activity ones, every 7th of the rest) and
/// data-event variants of real records, so Data conditions meet real names and identities.
fn records() -> &'static [Record<'static>] {
    static RECORDS: OnceLock<Vec<Record<'static>>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        let real = support::real_records();
        let pool = pools();
        let mut texts: Vec<String> = Vec::new();
        for (i, r) in real.iter().enumerate() {
            let category = r.value.get("eventCategory").and_then(Value::as_str);
            if i % 7 == 0 || matches!(category, Some("Data" | "NetworkActivity")) {
                texts.push(r.text.clone());
            }
            if i % 11 == 0 {
                // The same call as a data event on one or two resources.
                let mut v = r.value.clone();
                v["eventCategory"] = json!("Data");
                v["managementEvent"] = json!(false);
                let object = &pool.object_arns[i % pool.object_arns.len()];
                let mut resources = vec![json!({"type": "AWS::S3::Object", "ARN": object})];
                if i % 2 == 0 {
                    let other = &pool.object_arns[(i / 2) % pool.object_arns.len()];
                    resources.push(json!({"type": "AWS::S3::Object", "ARN": other}));
                    resources.push(json!({"type": "AWS::Lambda::Function",
                        "ARN": format!("arn:aws:lambda:us-east-1:123456789012:function:f{}", i % 5)}));
                }
                v["resources"] = Value::Array(resources);
                if i % 3 == 0 {
                    v["sessionCredentialFromConsole"] = json!("true");
                }
                texts.push(v.to_string());
            }
        }
        texts
            .into_iter()
            .filter_map(|t| Record::parse(Box::leak(t.into_boxed_str())).ok())
            .collect()
    })
}

/// Values seen in the real records, to build conditions that sometimes match.
struct Pools {
    event_names: Vec<String>,
    event_sources: Vec<String>,
    identities: Vec<String>,
    object_arns: Vec<String>,
    endpoints: Vec<String>,
}

fn pools() -> &'static Pools {
    static POOLS: OnceLock<Pools> = OnceLock::new();
    POOLS.get_or_init(|| {
        let real = support::real_records();
        let collect = |f: &dyn Fn(&Value) -> Option<String>| {
            let mut v: Vec<String> = real
                .iter()
                .filter_map(|r| f(&r.value))
                .filter(|s| !s.is_empty() && !s.contains('*') && s.len() <= 2048)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let get = |key: &'static str| move |r: &Value| r.get(key)?.as_str().map(str::to_string);
        let mut object_arns = collect(&|r| {
            r.get("resources")?
                .as_array()?
                .iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("AWS::S3::Object"))?
                .get("ARN")?
                .as_str()
                .map(str::to_string)
        });
        object_arns.extend(
            [
                "arn:aws:s3:::logs/2024/a.json",
                "arn:aws:s3:::logs/2024/b.csv",
                "arn:aws:s3:::secret/k",
            ]
            .map(String::from),
        );
        Pools {
            event_names: collect(&get("eventName")),
            event_sources: collect(&get("eventSource")),
            identities: collect(&|r| {
                r.get("userIdentity")?
                    .get("arn")?
                    .as_str()
                    .map(str::to_string)
            }),
            object_arns,
            endpoints: collect(&get("vpcEndpointId")),
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Whole,
    Prefix,
    Suffix,
}

/// A value from `pool`, whole or cut to a prefix or suffix (never empty).
fn value_from(pool: &'static [String], shape: Shape) -> impl Strategy<Value = String> {
    (select(pool), 1usize..40).prop_map(move |(v, n)| {
        let chars: Vec<char> = v.chars().collect();
        let n = n.min(chars.len()).max(1);
        match shape {
            Shape::Whole => v,
            Shape::Prefix => chars[..n].iter().collect(),
            Shape::Suffix => chars[chars.len() - n..].iter().collect(),
        }
    })
}

/// A value from `pool` cut to a prefix or suffix of one of `lengths` characters (never empty).
fn value_of_length(
    pool: &'static [String],
    shape: Shape,
    lengths: Vec<usize>,
) -> impl Strategy<Value = String> {
    (select(pool), select(lengths)).prop_map(move |(v, n)| {
        let chars: Vec<char> = v.chars().collect();
        let n = n.min(chars.len()).max(1);
        match shape {
            Shape::Whole => v,
            Shape::Prefix => chars[..n].iter().collect(),
            Shape::Suffix => chars[chars.len() - n..].iter().collect(),
        }
    })
}

/// The values of one operator: mostly a few, sometimes many — of lengths all different (the
/// compiled matcher's automata) or of a few lengths only (its hash probes by length).
fn operator_values(pool: &'static [String], shape: Shape) -> impl Strategy<Value = Vec<String>> {
    let few_lengths = prop::collection::vec(1usize..40, 1..5).prop_flat_map(move |lengths| {
        prop::collection::vec(value_of_length(pool, shape, lengths), 20..60)
    });
    prop_oneof![
        6 => prop::collection::vec(value_from(pool, shape), 1..4),
        1 => prop::collection::vec(value_from(pool, shape), 20..60),
        1 => few_lengths,
    ]
}

/// A positive condition (some of Equals/StartsWith/EndsWith) on one field, values from `pool`.
fn positive_condition(
    field: &'static str,
    pool: &'static [String],
) -> impl Strategy<Value = Value> {
    let values = |shape| operator_values(pool, shape);
    (
        prop::option::of(values(Shape::Whole)),
        prop::option::of(values(Shape::Prefix)),
        prop::option::of(values(Shape::Suffix)),
    )
        .prop_filter("at least one operator", |(a, b, c)| {
            a.is_some() || b.is_some() || c.is_some()
        })
        .prop_map(move |(equals, starts, ends)| {
            let mut fs = json!({"Field": field});
            if let Some(v) = equals {
                fs["Equals"] = json!(v);
            }
            if let Some(v) = starts {
                fs["StartsWith"] = json!(v);
            }
            if let Some(v) = ends {
                fs["EndsWith"] = json!(v);
            }
            fs
        })
}

/// The logical negation of a positive condition: each operator replaced by its Not form.
fn negate(condition: &Value) -> Value {
    let mut out = json!({"Field": condition["Field"].clone()});
    for (positive, negative) in [
        ("Equals", "NotEquals"),
        ("StartsWith", "NotStartsWith"),
        ("EndsWith", "NotEndsWith"),
    ] {
        if let Some(v) = condition.get(positive) {
            out[negative] = v.clone();
        }
    }
    out
}

/// Any condition (positive and negative operators mixed) on one field.
fn any_condition(field: &'static str, pool: &'static [String]) -> impl Strategy<Value = Value> {
    (
        positive_condition(field, pool),
        prop::option::of(positive_condition(field, pool)),
    )
        .prop_map(|(mut select, deselect)| {
            if let Some(deselect) = deselect {
                for (k, v) in negate(&deselect).as_object().into_iter().flatten() {
                    if k != "Field" {
                        select[k] = v.clone();
                    }
                }
            }
            select
        })
}

/// A scalar condition usable on data events, with a pool of values for it.
fn data_condition() -> impl Strategy<Value = Value> {
    let p = pools();
    prop_oneof![
        any_condition("eventName", &p.event_names),
        any_condition("eventSource", &p.event_sources),
        any_condition("userIdentity.arn", &p.identities),
        any_condition("resources.ARN", &p.object_arns),
        select(vec![
            json!(["true"]),
            json!(["false"]),
            json!(["true", "false"])
        ])
        .prop_map(|v| json!({"Field": "readOnly", "Equals": v})),
        select(vec!["Equals", "NotEquals"])
            .prop_map(|op| json!({"Field": "sessionCredentialFromConsole", op: ["true"]})),
    ]
}

fn selector() -> impl Strategy<Value = Value> {
    let p = pools();
    let data = (
        select(vec!["AWS::S3::Object", "AWS::Lambda::Function"]),
        prop::collection::vec(data_condition(), 0..4),
    )
        .prop_map(|(resource_type, conditions)| {
            let mut fs = vec![
                json!({"Field": "eventCategory", "Equals": ["Data"]}),
                json!({"Field": "resources.type", "Equals": [resource_type]}),
            ];
            fs.extend(conditions);
            json!({"FieldSelectors": fs})
        });
    let management = (
        prop::option::of(select(vec!["true", "false"])),
        prop::option::of(select(vec!["kms.amazonaws.com", "rdsdata.amazonaws.com"])),
    )
        .prop_map(|(read_only, excluded)| {
            let mut fs = vec![json!({"Field": "eventCategory", "Equals": ["Management"]})];
            if let Some(r) = read_only {
                fs.push(json!({"Field": "readOnly", "Equals": [r]}));
            }
            if let Some(e) = excluded {
                fs.push(json!({"Field": "eventSource", "NotEquals": [e]}));
            }
            json!({"FieldSelectors": fs})
        });
    let network = (
        select(p.event_sources.clone()),
        prop::option::of(any_condition("eventName", &p.event_names)),
        prop::option::of(any_condition("vpcEndpointId", &p.endpoints)),
    )
        .prop_map(|(source, name, endpoint)| {
            let mut fs = vec![
                json!({"Field": "eventCategory", "Equals": ["NetworkActivity"]}),
                json!({"Field": "eventSource", "Equals": [source]}),
            ];
            fs.extend(name);
            fs.extend(endpoint);
            json!({"FieldSelectors": fs})
        });
    prop_oneof![3 => data, 1 => management, 1 => network]
}

fn trail(selectors: &[Value]) -> Option<TrailConfig> {
    TrailConfig::from_value(&json!({"AdvancedEventSelectors": selectors})).ok()
}

fn kept(config: &TrailConfig) -> Vec<bool> {
    let matcher = config.compile();
    records()
        .iter()
        .map(|r| matcher.evaluate(r).is_keep())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compiled_matcher_decides_as_the_interpreter(selectors in prop::collection::vec(selector(), 1..4)) {
        let config = trail(&selectors);
        prop_assume!(config.is_some());
        let config = config.expect("checked");
        let matcher = config.compile();
        for record in records() {
            prop_assert_eq!(matcher.evaluate(record), interpret(&config, record), "record {}", record.raw());
        }
    }

    #[test]
    fn a_condition_and_its_negation_split_what_the_selector_keeps(
        base in prop::collection::vec(data_condition(), 0..2),
        condition in prop_oneof![
            positive_condition("eventName", &pools().event_names),
            positive_condition("eventSource", &pools().event_sources),
            positive_condition("userIdentity.arn", &pools().identities),
        ],
        resource_type in select(vec!["AWS::S3::Object", "AWS::Lambda::Function"]),
    ) {
        let selector = |extra: Option<Value>| {
            let mut fs = vec![
                json!({"Field": "eventCategory", "Equals": ["Data"]}),
                json!({"Field": "resources.type", "Equals": [resource_type]}),
            ];
            fs.extend(base.iter().cloned());
            fs.extend(extra);
            json!({"FieldSelectors": fs})
        };
        let (Some(without), Some(with), Some(negated)) = (
            trail(&[selector(None)]),
            trail(&[selector(Some(condition.clone()))]),
            trail(&[selector(Some(negate(&condition)))]),
        ) else {
            return Err(TestCaseError::reject("invalid combination"));
        };
        let (all, yes, no) = (kept(&without), kept(&with), kept(&negated));
        for i in 0..all.len() {
            prop_assert!(!(yes[i] && no[i]), "record {} kept by both", records()[i].raw());
            prop_assert_eq!(yes[i] || no[i], all[i], "record {}", records()[i].raw());
        }
    }

    #[test]
    fn adding_a_not_equals_never_keeps_more(
        selectors in prop::collection::vec(selector(), 1..4),
        target in 0usize..4,
        value in value_from(&pools().event_names, Shape::Whole),
    ) {
        let Some(before) = trail(&selectors) else {
            return Err(TestCaseError::reject("invalid selectors"));
        };
        let mut narrowed = selectors.clone();
        let i = target % narrowed.len();
        let category = narrowed[i]["FieldSelectors"][0]["Equals"][0].as_str().unwrap_or("").to_string();
        let added = match category.as_str() {
            "Management" => json!({"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}),
            _ => json!({"Field": "eventName", "NotEquals": [value]}),
        };
        if let Some(list) = narrowed[i]["FieldSelectors"].as_array_mut() {
            list.push(added);
        }
        let Some(after) = trail(&narrowed) else {
            return Err(TestCaseError::reject("narrowed selectors invalid"));
        };
        let (was, now) = (kept(&before), kept(&after));
        for k in 0..was.len() {
            prop_assert!(was[k] || !now[k], "record {} kept only after adding NotEquals", records()[k].raw());
        }
    }
}
