//! What the cluster shows about an Etcd, read from the watch caches or the
//! API server: its StatefulSet, member and snapshot leases, whether its
//! data volume claims exist, and the warning events on them. With the
//! caches, a status sync of a ready Etcd sends no request at all.

use std::collections::BTreeMap;

use druid_api::{Etcd, EtcdModel};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use crate::controller::Caches;
use crate::names;

/// What the cluster shows about an Etcd.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The Etcd's StatefulSet, if it exists.
    pub statefulset: Option<StatefulSet>,
    /// Member leases by name.
    pub member_leases: BTreeMap<String, Lease>,
    /// The full snapshot lease.
    pub full_snapshot_lease: Option<Lease>,
    /// The delta snapshot lease.
    pub delta_snapshot_lease: Option<Lease>,
    /// Warning messages on the data volumes.
    pub volume_warnings: Vec<String>,
    /// Whether any data volume claim exists yet.
    pub claims_exist: bool,
    /// How the cut-over after joining an existing cluster went, when this
    /// reconcile asked for one.
    pub cut_over:
        Option<crate::controller::conditions::bootstrapped_with_existing_cluster::CutOver>,
    /// How this reconcile's scale-in step went, when one was due.
    pub scale_in: Option<crate::controller::scale_in::ScaleIn>,
    /// How this reconcile's roll of the members went, when one ran.
    pub roll: Option<crate::controller::conditions::all_members_updated::Roll>,
    /// How a quorum loss stands, when this reconcile looked at one.
    pub recovery: Option<crate::controller::conditions::quorum_lost::Recovery>,
}

/// Reads what [`super::compute`] needs.
pub async fn observe(
    client: &kube::Client,
    caches: Option<&Caches>,
    etcd: &Etcd,
    model: Option<&EtcdModel>,
) -> Result<Observed, kube::Error> {
    let ns = etcd.namespace().unwrap_or_default();
    let name = etcd.name_any();
    if let Some(c) = caches {
        c.ready().await;
    }
    // From the watch caches when the controllers run; else by name (a
    // label LIST scans every lease of the namespace).
    let statefulset = match caches {
        Some(c) => c.statefulset(&ns, &names::statefulset(&name)),
        None => {
            Api::<StatefulSet>::namespaced(client.clone(), &ns)
                .get_opt(&names::statefulset(&name))
                .await?
        }
    };
    let lease = |lname: String| {
        let ns = ns.clone();
        async move { crate::controller::read_lease(client, caches, &ns, &lname).await }
    };
    let mut member_leases = BTreeMap::new();
    if let Some(model) = model {
        for i in 0..model.replicas {
            let member = names::member(model, i);
            if let Some(l) = lease(member.clone()).await? {
                member_leases.insert(member, l);
            }
        }
    }
    let full_snapshot_lease = lease(names::full_snapshot_lease(&name)).await?;
    let delta_snapshot_lease = lease(names::delta_snapshot_lease(&name)).await?;

    // Warning events of the data volumes: only looked at while the
    // StatefulSet is not ready and its claims exist (events are not
    // indexed, so a list costs as much as the namespace has events).
    let mut volume_warnings = Vec::new();
    let mut claims_exist = false;
    if let Some(sts) = &statefulset {
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let claims: Vec<String> = sts
            .spec
            .iter()
            .flat_map(|s| s.volume_claim_templates.iter().flatten())
            .flat_map(|t| {
                let tname = t.name_any();
                (0..replicas).map(move |i| format!("{tname}-{}-{i}", sts.name_any()))
            })
            .collect();
        let ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            >= replicas;
        // The claims carry the StatefulSet's selector labels; only a
        // selector with the managed-by label (every StatefulSet this
        // operator or a recent Go operator built) puts them in the cache.
        let cached_claims = caches.filter(|_| {
            sts.spec
                .as_ref()
                .and_then(|s| s.selector.match_labels.as_ref())
                .is_some_and(|l| {
                    l.get(names::label::MANAGED_BY).map(String::as_str) == Some(names::MANAGED_BY)
                })
        });
        claims_exist = match cached_claims {
            Some(c) => claims.iter().any(|claim| c.claim_exists(&ns, claim)),
            None => {
                let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), &ns);
                let mut found = false;
                for claim in &claims {
                    if pvcs.get_metadata_opt(claim).await?.is_some() {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if claims_exist && !ready {
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            let lp = ListParams::default()
                .fields("involvedObject.kind=PersistentVolumeClaim,type=Warning");
            for ev in events.list(&lp).await?.items {
                if ev
                    .involved_object
                    .name
                    .as_ref()
                    .is_some_and(|n| claims.contains(n))
                    && let Some(m) = ev.message
                {
                    volume_warnings.push(m);
                }
            }
        }
    }
    Ok(Observed {
        claims_exist,
        statefulset,
        member_leases,
        full_snapshot_lease,
        delta_snapshot_lease,
        volume_warnings,
        cut_over: None,
        scale_in: None,
        roll: None,
        recovery: None,
    })
}
