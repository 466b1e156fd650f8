//! A problem with a trail configuration: what reading ([`super::model`]) and validation
//! ([`super::validate`]) both report, so neither imports the other for it.

use std::fmt;

/// One thing wrong with a trail configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Path into the configuration, e.g. `AdvancedEventSelectors[0].FieldSelectors[2]`.
    pub location: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            location: location.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}
