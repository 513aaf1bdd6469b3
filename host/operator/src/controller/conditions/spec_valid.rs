//! `SpecValid`: whether the spec and the Secrets it refers to are valid.
//! Set by a reconcile that validated the spec; kept as it was by one that
//! did not (suspended, not requested, up to date, or failed to apply).

use druid_api::etcd::Condition;

use super::{Check, types};
use crate::controller::validate::Problem;

/// What this reconcile found out about the spec.
#[derive(Debug, Clone, Copy)]
pub enum Validated<'a> {
    /// Valid, and applied.
    Valid,
    /// Invalid: these problems (nothing was applied).
    Invalid(&'a [Problem]),
    /// Not validated this time (suspended, not requested, up to date, or
    /// the apply failed).
    NotChecked,
}

/// The condition after a reconcile that found `validated`; `previous` are
/// the conditions before it. `None` while the spec was never validated.
pub fn check(validated: Validated<'_>, previous: &[Condition]) -> Option<Check> {
    match validated {
        Validated::Invalid(problems) => Some(Check::new(
            "False",
            problems.first().map_or("InvalidSpec", |p| p.reason),
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
        Validated::Valid => Some(Check::new(
            "True",
            "Valid",
            "the spec and the Secrets it refers to are valid",
        )),
        Validated::NotChecked => previous
            .iter()
            .find(|c| c.type_ == types::SPEC_VALID)
            .map(|c| Check::new(&c.status, &c.reason, c.message.clone())),
    }
}
