//! The druid operator: runs etcd clusters from `Etcd` resources.
//!
//! - [`names`]: names and labels of everything created per Etcd.
//! - [`components`]: one pure builder per Kubernetes object, plus the thin
//!   server-side-apply step.
//! - [`controller`]: the etcd, snapshot compaction and secret controllers.
//! - [`metrics`]: Prometheus metrics and the health endpoints.

pub mod components;
pub mod controller;
pub mod kube_client;
pub mod metrics;
pub mod names;
