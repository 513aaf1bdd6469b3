//! The kinds of object the operator writes for an Etcd, as one enum: the
//! component table (`table.rs`) holds builders of different kinds,
//! and the controller applies or deletes any of them through
//! [`super::apply`] and [`super::delete_if_exists`].

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

/// Declares [`Object`] and [`Kind`] with one variant per Kubernetes type.
macro_rules! kinds {
    ($($kind:ident),+ $(,)?) => {
        /// An object a builder made, ready to be applied (boxed: a
        /// StatefulSet is ten times the size of the others).
        #[derive(Debug, Clone)]
        pub(crate) enum Object {
            $($kind(Box<$kind>),)+
        }

        /// The Kubernetes type of an [`Object`], to delete or list objects
        /// by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Kind {
            $($kind,)+
        }

        $(impl From<$kind> for Object {
            fn from(o: $kind) -> Self {
                Self::$kind(Box::new(o))
            }
        })+

        impl Object {
            /// The object's name.
            pub(crate) fn name(&self) -> String {
                match self {
                    $(Self::$kind(o) => o.name_any(),)+
                }
            }

            /// Writes the object with server-side apply; returns what the
            /// API server stored.
            pub(crate) async fn apply(&self, client: &Client) -> Result<Self, kube::Error> {
                match self {
                    $(Self::$kind(o) => super::apply(client, o.as_ref()).await.map(|o| Self::$kind(Box::new(o))),)+
                }
            }
        }

        impl Kind {
            /// The Kubernetes `kind` (`ConfigMap`, ...), for messages.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$kind => <$kind as k8s_openapi::Resource>::KIND,)+
                }
            }

            /// Deletes `namespace/name` if it exists; `Ok(true)` if it is
            /// gone (or was never there).
            pub(crate) async fn delete_if_exists(
                self,
                client: &Client,
                namespace: &str,
                name: &str,
            ) -> Result<bool, kube::Error> {
                match self {
                    $(Self::$kind => super::delete_if_exists::<$kind>(client, namespace, name).await,)+
                }
            }

            /// The names of the objects of this kind in `namespace` that
            /// match the label `selector`.
            pub(crate) async fn list_names(
                self,
                client: &Client,
                namespace: &str,
                selector: &str,
            ) -> Result<Vec<String>, kube::Error> {
                let params = ListParams::default().labels(selector);
                Ok(match self {
                    $(Self::$kind => Api::<$kind>::namespaced(client.clone(), namespace)
                        .list_metadata(&params)
                        .await?
                        .items
                        .iter()
                        .map(|o| o.name_any())
                        .collect(),)+
                })
            }
        }
    };
}

kinds!(
    ServiceAccount,
    Role,
    RoleBinding,
    Lease,
    PodDisruptionBudget,
    NetworkPolicy,
    Service,
    ConfigMap,
    StatefulSet,
);
