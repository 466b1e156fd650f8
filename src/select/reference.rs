//! Reference data embedded at build time: the valid `resources.type` values and the ARN
//! templates that `resources.ARN` Equals/NotEquals values must follow. Copies of
//! `shared/reference/cloudtrail-data-resource-types.txt` and
//! `cloudtrail-resource-arn-formats.tsv`, kept as data so they can be refreshed without code.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const RESOURCE_TYPES: &str = include_str!("data/cloudtrail-data-resource-types.txt");
const ARN_FORMATS: &str = include_str!("data/cloudtrail-resource-arn-formats.tsv");

/// The only `DataResources.Type` values basic event selectors accept.
pub const BASIC_RESOURCE_TYPES: [&str; 3] = [
    "AWS::S3::Object",
    "AWS::Lambda::Function",
    "AWS::DynamoDB::Table",
];

fn data_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Upstream spelling slips in the TSV, mapped to the form the type list (and CloudTrail) uses.
fn normalize_type(resource_type: &str) -> &str {
    match resource_type {
        "AWS::QApps:QApp" => "AWS::QApps::QApp",
        other => other,
    }
}

fn resource_types() -> &'static HashSet<&'static str> {
    static TYPES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    TYPES.get_or_init(|| data_lines(RESOURCE_TYPES).collect())
}

/// Whether `resources.type` names a data resource type CloudTrail knows.
pub fn is_known_resource_type(resource_type: &str) -> bool {
    resource_types().contains(resource_type)
}

fn arn_templates() -> &'static HashMap<&'static str, Vec<&'static str>> {
    static TEMPLATES: OnceLock<HashMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for line in data_lines(ARN_FORMATS) {
            if let Some((resource_type, template)) = line.split_once('\t') {
                map.entry(normalize_type(resource_type.trim()))
                    .or_default()
                    .push(template.trim());
            }
        }
        map
    })
}

/// The ARN templates known for a type (empty for types the TSV does not list).
pub fn arn_templates_for(resource_type: &str) -> &'static [&'static str] {
    arn_templates()
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether `value` is a full ARN of `resource_type`: it must fit one of the type's templates,
/// or, for types the TSV does not list (it stops at Sept 2024), have the general ARN shape
/// `arn:partition:service:region:account:resource`.
pub fn is_valid_arn_for(resource_type: &str, value: &str) -> bool {
    let templates = arn_templates_for(resource_type);
    if templates.is_empty() {
        return has_general_arn_shape(value);
    }
    templates.iter().any(|t| matches_template(t, value))
}

fn has_general_arn_shape(value: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && is_partition(parts[1])
        && !parts[2].is_empty()
        && !parts[5].is_empty()
}

fn is_partition(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece<'t> {
    Literal(&'t str),
    Placeholder(&'t str),
}

/// Splits a template into literals and `<placeholders>`; an unterminated `<` (an upstream typo)
/// runs to the end.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('<') {
            Some(0) => {
                let end = rest.find('>').unwrap_or(rest.len());
                out.push(Piece::Placeholder(&rest[1..end]));
                rest = &rest[(end + 1).min(rest.len())..];
            }
            Some(at) => {
                out.push(Piece::Literal(&rest[..at]));
                rest = &rest[at..];
            }
            None => {
                out.push(Piece::Literal(rest));
                rest = "";
            }
        }
    }
    out
}

fn matches_template(template: &str, value: &str) -> bool {
    let mut parts = pieces(template);
    // `…/<object_path>/` in the source means "an object path"; the final slash is not required.
    if let [.., Piece::Literal("/"), Piece::Placeholder(_), Piece::Literal("/")] = parts.as_slice()
    {
        if !value.ends_with('/') {
            parts.pop();
        }
    }
    match_pieces(&parts, value)
}

/// Backtracking match: a placeholder takes one or more characters; `partition`, `region` and
/// `account_ID` take their own shapes; other placeholders cannot span `:` or `/` unless they are
/// the last piece (object paths, topic names).
fn match_pieces(parts: &[Piece<'_>], value: &str) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return value.is_empty();
    };
    match *first {
        Piece::Literal(text) => value
            .strip_prefix(text)
            .is_some_and(|after| match_pieces(rest, after)),
        Piece::Placeholder(name) => {
            let last = rest.is_empty();
            let allowed = |c: char| match name {
                "partition" => c.is_ascii_lowercase() || c == '-',
                "region" => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
                "account_ID" => c.is_ascii_digit(),
                _ => last || (c != ':' && c != '/'),
            };
            for (at, c) in value.char_indices() {
                if !allowed(c) {
                    break;
                }
                let end = at + c.len_utf8();
                if match_pieces(rest, &value[end..]) && placeholder_length_ok(name, end) {
                    return true;
                }
            }
            false
        }
    }
}

fn placeholder_length_ok(name: &str, length: usize) -> bool {
    match name {
        "account_ID" => length == 12,
        _ => length >= 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_in_the_list_is_known_and_basic_types_are_among_them() {
        assert!(resource_types().len() >= 250, "{}", resource_types().len());
        for t in BASIC_RESOURCE_TYPES {
            assert!(is_known_resource_type(t), "{t}");
        }
        assert!(!is_known_resource_type("AWS::S3::Bucket"));
    }

    #[test]
    fn every_template_type_is_a_known_type() {
        for t in arn_templates().keys() {
            assert!(
                is_known_resource_type(t),
                "{t} in the TSV but not in the type list"
            );
        }
    }

    #[test]
    fn s3_object_arns_follow_the_templates() {
        assert!(is_valid_arn_for("AWS::S3::Object", "arn:aws:s3:::bucket/"));
        assert!(is_valid_arn_for(
            "AWS::S3::Object",
            "arn:aws:s3:::bucket/object1"
        ));
        assert!(is_valid_arn_for(
            "AWS::S3::Object",
            "arn:aws:s3:::bucket/a/b/c.txt"
        ));
        assert!(!is_valid_arn_for("AWS::S3::Object", "arn:aws:s3:::bucket"));
        assert!(!is_valid_arn_for("AWS::S3::Object", "bucket/object1"));
    }

    #[test]
    fn account_ids_must_have_twelve_digits() {
        let ok = "arn:aws:lambda:us-east-1:123456789012:function:helloworld";
        assert!(is_valid_arn_for("AWS::Lambda::Function", ok));
        let short = "arn:aws:lambda:us-east-1:1234:function:helloworld";
        assert!(!is_valid_arn_for("AWS::Lambda::Function", short));
        let table = "arn:aws:dynamodb:us-east-1:123456789012:function:x";
        assert!(!is_valid_arn_for("AWS::DynamoDB::Table", table));
    }

    #[test]
    fn empty_account_and_typo_templates_still_match() {
        let snap = "arn:aws:ec2:us-east-1::snapshot/snap-0123";
        assert!(is_valid_arn_for("AWS::EC2::Snapshot", snap));
        let dep = "arn:aws:greengrass:us-east-1:123456789012:deployments/abc";
        assert!(is_valid_arn_for("AWS::GreengrassV2::Deployment", dep));
        let qapp = "arn:aws:qapps:us-east-1:123456789012:application/a/qapp/b";
        assert!(is_valid_arn_for("AWS::QApps::QApp", qapp));
    }

    #[test]
    fn unlisted_types_need_the_general_arn_shape() {
        assert!(is_valid_arn_for(
            "AWS::XRay::Trace",
            "arn:aws:xray:us-east-1:123456789012:trace/1"
        ));
        assert!(!is_valid_arn_for("AWS::XRay::Trace", "trace/1"));
    }
}
