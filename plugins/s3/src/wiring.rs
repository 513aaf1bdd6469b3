//! pod-wiring: the sidecar's env vars and the secret volume, and the check
//! of a store secret's key names.

use druid_plugin_sdk::wiring::{SidecarConfig, StoreSpec};

use crate::config::{Family, UNSUPPORTED_KEYS};

/// The sidecar configuration for `spec`: the store Secret mounted and
/// named by `<P>_APPLICATION_CREDENTIALS`; for the AWS family without a
/// Secret, only the container (the pod's web identity signs).
pub fn pod_config(spec: &StoreSpec) -> Result<SidecarConfig, String> {
    let family = Family::require(&spec.provider)?;
    let no_secret = spec
        .secret_name
        .as_deref()
        .is_none_or(|s| s.trim().is_empty());
    if family == Family::Aws && no_secret && !spec.container.trim().is_empty() {
        // The pod's own web identity: the variables EKS's pod identity
        // webhook injects (see config::POD_IDENTITY_VARIABLES); nothing to
        // mount.
        return Ok(SidecarConfig {
            env: vec![druid_plugin_sdk::wiring::EnvVar {
                name: "STORAGE_CONTAINER".into(),
                value: spec.container.clone(),
            }],
            volumes: Vec::new(),
        });
    }
    druid_plugin_sdk::secret_store_wiring(
        spec,
        family.env_prefix(),
        "bucket",
        "the store's credentials",
    )
}

/// Checks a store secret's key names for `provider`: one problem per
/// missing or unsupported key.
pub fn check_secret(provider: &str, keys: &[String]) -> Result<(), Vec<String>> {
    let family = Family::require(provider).map_err(|e| vec![e])?;
    let has = |k: &str| keys.iter().any(|key| key == k);

    // The JSON form of the secret (e.g. `credentials.json`): its fields are
    // not visible here, so it is accepted as it is.
    let json_form = keys.iter().any(|k| k.ends_with(".json"));
    let plain_keys = family
        .known_keys()
        .iter()
        .chain(UNSUPPORTED_KEYS.iter().flat_map(|(ks, _)| ks.iter()))
        .any(|k| has(k));
    if json_form && !plain_keys {
        return Ok(());
    }

    let mut problems = Vec::new();
    // Web identity (`roleARN` + `token`, upstream's keys) instead of an
    // access key: AWS family only.
    let web_identity = ["roleARN", "token", "tokenPath"].iter().any(|k| has(k));
    if web_identity && family != Family::Aws {
        problems.push(format!(
            "the {provider} store secret has `roleARN`/`token`: web identity credentials are \
             served for providers S3, aws and stackit only; use `accessKeyID` and \
             `secretAccessKey`"
        ));
    }
    let required: &[&[&str]] = if web_identity && family == Family::Aws {
        &[&["region"], &["roleARN"], &["token"]]
    } else {
        family.required_keys()
    };
    for names in required {
        if names.iter().any(|n| has(n)) {
            continue;
        }
        match names {
            [one] => problems.extend(druid_plugin_sdk::missing_keys(keys, &[one], provider)),
            _ => {
                let alternatives = names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                problems.push(format!(
                    "the {provider} store secret has no {alternatives}: add it to the secret"
                ));
            }
        }
    }

    let access = required.iter().find(|n| n.contains(&"accessKeyID"));
    let secret = required.iter().find(|n| n.contains(&"secretAccessKey"));
    if let (Some(access), Some(secret)) = (access, secret) {
        let has_access = access.iter().any(|n| has(n));
        let has_secret = secret.iter().any(|n| has(n));
        if has_access != has_secret {
            let (present, absent) = if has_access {
                ("accessKeyID", "secretAccessKey")
            } else {
                ("secretAccessKey", "accessKeyID")
            };
            problems.push(format!(
                "the {provider} store secret has `{present}` but no `{absent}`: an access key \
                 needs both"
            ));
        }
    }

    for (unsupported, why) in UNSUPPORTED_KEYS {
        let present: Vec<String> = unsupported
            .iter()
            .filter(|k| has(k))
            .map(|k| format!("`{k}`"))
            .collect();
        if !present.is_empty() {
            problems.push(format!(
                "the {provider} store secret has {}: {why}",
                present.join(", ")
            ));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
