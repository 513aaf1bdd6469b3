//! `Check`: collects every error and warning while a spec is normalized,
//! and parses single fields into them, so one pass reports all that is
//! wrong.

use std::time::Duration;

use crate::etcd::SecretReference;
use crate::quantity::parse_quantity;

use super::FieldError;
use super::parse::{parse_cron, parse_duration};

/// Collects errors while the model is built.
#[derive(Default)]
pub(super) struct Check {
    pub(super) errors: Vec<FieldError>,
    pub(super) warnings: Vec<FieldError>,
}

impl Check {
    pub(super) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(super) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// One setting with two names: the value of whichever is set; an error
    /// naming both when they disagree (as decided by `same`).
    pub(super) fn alias<T: Clone>(
        &mut self,
        (a_field, a): (&str, Option<&T>),
        (b_field, b): (&str, Option<&T>),
        same: impl Fn(&T, &T) -> bool,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        match (a, b) {
            (Some(x), Some(y)) if !same(x, y) => {
                self.error(
                    format!("{a_field}, {b_field}"),
                    format!(
                        "both name one setting but disagree ({} vs {}): set only {a_field}",
                        show(x),
                        show(y)
                    ),
                );
                Some(x.clone())
            }
            (Some(x), _) => Some(x.clone()),
            (None, y) => y.cloned(),
        }
    }

    pub(super) fn duration(&mut self, field: &str, value: Option<&str>, default: &str) -> Duration {
        let text = value.unwrap_or(default);
        match parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a duration such as 300s, 5m or 1h30m)"),
                );
                parse_duration(default).unwrap_or_default()
            }
        }
    }

    pub(super) fn optional_duration(
        &mut self,
        field: &str,
        value: Option<&str>,
    ) -> Option<Duration> {
        let text = value?;
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a duration such as 300s, 5m or 1h30m)"),
                );
                None
            }
        }
    }

    pub(super) fn bytes(&mut self, field: &str, value: Option<&str>, default: &str) -> i64 {
        let text = value.unwrap_or(default);
        match parse_quantity(text) {
            Ok(b) if b > 0 => b,
            Ok(_) => {
                self.error(field, format!("'{text}' must be positive"));
                0
            }
            Err(e) => {
                self.error(
                    field,
                    format!("{e} (write a quantity such as 8Gi or 512Mi)"),
                );
                0
            }
        }
    }

    pub(super) fn cron(&mut self, field: &str, value: &str) {
        if let Err(e) = parse_cron(value) {
            self.error(
                field,
                format!("'{value}' is not a valid cron schedule: {e} (five fields: minute hour day-of-month month day-of-week, e.g. '0 */24 * * *')"),
            );
        }
    }

    pub(super) fn same_namespace(
        &mut self,
        field: &str,
        r: &SecretReference,
        namespace: &str,
    ) -> String {
        if let Some(ns) = &r.namespace
            && ns != namespace
        {
            self.error(
                format!("{field}.namespace"),
                format!("the Secret must be in the Etcd's namespace '{namespace}' (pods cannot mount Secrets of namespace '{ns}'): copy it there"),
            );
        }
        r.name.clone()
    }
}
