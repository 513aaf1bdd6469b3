//! Checks of what an Etcd refers to, before anything is written: the store's
//! provider and Secret (through the provider plugin), and the TLS Secrets.
//! Each problem names the field and the fix; a spec with problems gets no
//! objects at all (no half-built StatefulSet).

use std::collections::BTreeSet;

use druid_api::model::Tls;
use druid_api::{Etcd, EtcdModel};
use druid_plugin_host::{CheckedWiring, WiringError, WiringRequest};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::Context;

/// Cached provider-plugin answers (bounded: cleared when large).
#[derive(Debug, Default)]
pub struct PluginAnswers {
    wiring: std::collections::HashMap<String, CheckedWiring>,
    good_secrets: BTreeSet<String>,
}

impl PluginAnswers {
    const MAX: usize = 10_000;

    fn bound(&mut self) {
        if self.wiring.len() + self.good_secrets.len() > Self::MAX {
            self.wiring.clear();
            self.good_secrets.clear();
        }
    }
}

/// One thing wrong with what a spec refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The condition reason (`UnknownProvider`, `StoreSecretMissing`, ...).
    pub reason: &'static str,
    /// The field(s) concerned.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The outcome of the checks.
pub enum Checked {
    /// Every reference checks out: what the build needs from them.
    Ok {
        /// The sidecar's store wiring (`None` without a store).
        wiring: Option<CheckedWiring>,
        /// The referenced Secrets that already carry the finalizer.
        protected: BTreeSet<String>,
    },
    /// What is wrong, for the `SpecValid` condition, the events and
    /// `lastErrors` (nothing is applied).
    Problems(Vec<Problem>),
}

/// Checks the references of `etcd`. `Err` only for API failures (retried).
pub async fn references(
    ctx: &Context,
    etcd: &Etcd,
    model: &EtcdModel,
) -> Result<Checked, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &model.namespace);
    let mut problems = Vec::new();
    let mut wiring = None;
    let mut protected = BTreeSet::new();
    let mut note_protected = |secret: &Secret| {
        if secret
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| druid_api::is_druid_finalizer(f))
        {
            protected.insert(secret.metadata.name.clone().unwrap_or_default());
        }
    };

    if let Some(store) = &model.store {
        match ctx.registry.plugin_for(&store.provider) {
            Err(e) => problems.push(Problem {
                reason: "UnknownProvider",
                field: store.provider_field.into(),
                message: format!(
                    "{e}; fix the provider name, or add a plugin (.wasm) that serves it to the operator's plugins directory"
                ),
            }),
            Ok(_) => {
                let mut secret_ok = true;
                if let Some(name) = &store.secret {
                    match secrets.get_opt(name).await? {
                        None => {
                            secret_ok = false;
                            problems.push(Problem {
                                reason: "StoreSecretMissing",
                                field: store.secret_field.into(),
                                message: format!(
                                    "Secret {}/{name} does not exist: create it with the {} store's credentials",
                                    model.namespace, store.provider
                                ),
                            });
                        }
                        Some(secret) => {
                            note_protected(&secret);
                            let keys: Vec<String> = secret_keys(&secret).into_iter().collect();
                            let cache_key = format!("{}\n{}", store.provider, keys.join("\n"));
                            let known_good = ctx
                                .plugin_answers
                                .lock()
                                .is_ok_and(|a| a.good_secrets.contains(&cache_key));
                            let checked = if known_good {
                                Ok(())
                            } else {
                                ctx.registry.check_secret(&store.provider, &keys).await
                            };
                            if checked.is_ok()
                                && !known_good
                                && let Ok(mut a) = ctx.plugin_answers.lock()
                            {
                                a.bound();
                                a.good_secrets.insert(cache_key);
                            }
                            match checked {
                                Ok(()) => {}
                                Err(WiringError::Secret(missing)) => {
                                    secret_ok = false;
                                    problems.push(Problem {
                                        reason: "InvalidStoreSecret",
                                        field: store.secret_field.into(),
                                        message: format!(
                                            "Secret {}/{name} is not usable for provider {}: {}",
                                            model.namespace,
                                            store.provider,
                                            missing.join("; ")
                                        ),
                                    });
                                }
                                Err(e) => {
                                    secret_ok = false;
                                    problems.push(plugin_problem(store.provider_field, &e));
                                }
                            }
                        }
                    }
                }
                if secret_ok {
                    let cache_key = format!(
                        "{}\n{}\n{}\n{}",
                        store.provider,
                        store.container.as_deref().unwrap_or_default(),
                        store.prefix,
                        store.secret.as_deref().unwrap_or_default()
                    );
                    let cached = ctx.plugin_answers.lock().ok().and_then(|a| a.wiring.get(&cache_key).cloned());
                    if let Some(w) = cached {
                        wiring = Some(w);
                    } else {
                        match ctx
                            .registry
                            .pod_config(
                                &store.provider,
                                store.container.as_deref().unwrap_or_default(),
                                &store.prefix,
                                store.secret.as_deref(),
                            )
                            .await
                        {
                            Ok(asked) => match ctx.registry.contract(&store.provider) {
                                Err(e) => problems.push(plugin_problem(store.provider_field, &e.into())),
                                Ok(contract) => {
                                    let request = WiringRequest {
                                        container: store.container.as_deref().unwrap_or_default(),
                                        has_secret: store.secret.is_some(),
                                        contract,
                                    };
                                    match ctx.settings.wiring.check(request, &asked) {
                                        Ok(w) => {
                                            if let Ok(mut a) = ctx.plugin_answers.lock() {
                                                a.bound();
                                                a.wiring.insert(cache_key, w.clone());
                                            }
                                            wiring = Some(w);
                                        }
                                        Err(refused) => problems.push(Problem {
                                            reason: "PluginWiringRefused",
                                            field: store.provider_field.into(),
                                            message: format!(
                                                "the {} provider plugin asks for pod wiring the operator does not allow: {}; \
                                                 fix or replace the plugin (the SDK README, \"Pod wiring\", lists what is allowed)",
                                                store.provider,
                                                refused.join("; ")
                                            ),
                                        }),
                                    }
                                }
                            },
                            Err(e) => problems.push(plugin_problem(store.provider_field, &e)),
                        }
                    }
                }
            }
        }
    }

    let legacy_tls = etcd.spec.etcd.enable_tls == Some(true);
    let tls_planes: [(&Option<Tls>, [&str; 3]); 3] = [
        (
            &model.etcd.client_tls,
            if legacy_tls {
                [
                    "spec.tlsServerSecret",
                    "spec.tlsServerSecret",
                    "spec.tlsClientSecret",
                ]
            } else {
                [
                    "spec.etcd.clientUrlTls.tlsCASecretRef",
                    "spec.etcd.clientUrlTls.serverTLSSecretRef",
                    "spec.etcd.clientUrlTls.clientTLSSecretRef",
                ]
            },
        ),
        (
            &model.etcd.peer_tls,
            [
                "spec.etcd.peerUrlTls.tlsCASecretRef",
                "spec.etcd.peerUrlTls.serverTLSSecretRef",
                "spec.etcd.peerUrlTls.clientTLSSecretRef",
            ],
        ),
        (
            &model.backup.tls,
            [
                "spec.backup.tls.tlsCASecretRef",
                "spec.backup.tls.serverTLSSecretRef",
                "spec.backup.tls.clientTLSSecretRef",
            ],
        ),
    ];
    for (tls, [ca_field, server_field, client_field]) in tls_planes {
        let Some(tls) = tls else { continue };
        let mut wanted: Vec<(&str, &str, Vec<&str>)> = vec![
            (server_field, &tls.server_secret, vec!["tls.crt", "tls.key"]),
            (ca_field, &tls.ca_secret, vec![tls.ca_key.as_str()]),
        ];
        if let Some(client) = &tls.client_secret {
            wanted.push((client_field, client, vec!["tls.crt", "tls.key"]));
        }
        for (field, name, keys) in wanted {
            match secrets.get_opt(name).await? {
                None => problems.push(Problem {
                    reason: "TLSSecretMissing",
                    field: field.into(),
                    message: format!(
                        "Secret {}/{name} does not exist: create it with the keys {}",
                        model.namespace,
                        keys.join(", ")
                    ),
                }),
                Some(secret) => {
                    note_protected(&secret);
                    let have = secret_keys(&secret);
                    let missing: Vec<&str> = keys
                        .iter()
                        .copied()
                        .filter(|k| !have.contains(*k))
                        .collect();
                    if !missing.is_empty() {
                        problems.push(Problem {
                            reason: "TLSSecretInvalid",
                            field: field.into(),
                            message: format!(
                                "Secret {}/{name} lacks the key(s) {}: add them (PEM), e.g. kubectl create secret tls, plus {} for the CA",
                                model.namespace,
                                missing.join(", "),
                                tls.ca_key
                            ),
                        });
                    }
                }
            }
        }
    }

    // One problem per field and reason is enough (a Secret used twice).
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert((p.field.clone(), p.reason)));
    Ok(if problems.is_empty() {
        Checked::Ok { wiring, protected }
    } else {
        Checked::Problems(problems)
    })
}

fn secret_keys(secret: &Secret) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(secret.string_data.iter().flatten().map(|(k, _)| k.clone()));
    keys
}

fn plugin_problem(field: &str, e: &WiringError) -> Problem {
    match e {
        WiringError::Spec(msg) => Problem {
            reason: "InvalidStore",
            field: field.into(),
            message: msg.clone(),
        },
        WiringError::Secret(missing) => Problem {
            reason: "InvalidStoreSecret",
            field: field.into(),
            message: missing.join("; "),
        },
        WiringError::Plugin(e) => Problem {
            reason: "ProviderPluginFailed",
            field: field.into(),
            message: format!("the provider plugin failed: {e}"),
        },
    }
}
