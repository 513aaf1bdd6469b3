//! `DataVolumesReady`: whether the data volumes' claims show warning
//! events (looked at only while the StatefulSet is not ready, see
//! `status::observe`).

use k8s_openapi::api::apps::v1::StatefulSet;

use super::Check;

/// The condition from the StatefulSet `name` (`None`: not there yet),
/// whether any of its claims exists, and the warnings on them.
pub fn check(
    name: &str,
    statefulset: Option<&StatefulSet>,
    claims_exist: bool,
    volume_warnings: &[String],
) -> Check {
    if statefulset.is_none() {
        Check::new(
            "Unknown",
            "StatefulSetNotFound",
            format!("StatefulSet {name} does not exist yet"),
        )
    } else if !claims_exist {
        Check::new(
            "Unknown",
            "NoClaimsYet",
            "the StatefulSet's volume claims do not exist yet",
        )
    } else if volume_warnings.is_empty() {
        Check::new(
            "True",
            "NoWarningsFoundForDataVolumes",
            "no warnings on the data volumes",
        )
    } else {
        let shown: Vec<&str> = volume_warnings.iter().take(2).map(String::as_str).collect();
        Check::new("False", "FoundWarningsForDataVolumes", shown.join("; "))
    }
}
