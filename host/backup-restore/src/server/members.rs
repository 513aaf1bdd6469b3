//! Member operations' answers, and
//! `POST /members/scale-in/{prepare,remove}?member=<name>[&peerUrls=<url>,…]`:
//! the steps of removing a member of this Etcd (`crate::etcd::scale_in`;
//! `peerUrls` finds it while it never started and has no name). 200 with
//! the report; 409 when refused (not a member of this Etcd, the last
//! member); 503 while another member is not a
//! healthy voting member (removing this one could cost the quorum); 500
//! when etcd refuses a call.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::state::AppState;
use crate::etcd::cut_over::CutOverError;
use crate::etcd::scale_in;

#[derive(Debug, Deserialize)]
pub(super) struct ScaleInQuery {
    /// The member that leaves.
    member: String,
    /// Its peer URLs, comma-separated (optional).
    #[serde(default, rename = "peerUrls")]
    peer_urls: String,
}

pub(super) async fn scale_in(
    State(state): State<Arc<AppState>>,
    Path(step): Path<String>,
    Query(q): Query<ScaleInQuery>,
) -> Response {
    let c = &state.config;
    let own = c.member_name();
    let endpoints = c.etcd.cluster_endpoints();
    let peer_urls: Vec<String> = q
        .peer_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    let leaving = scale_in::Leaving {
        name: &q.member,
        peer_urls: &peer_urls,
    };
    let result = match step.as_str() {
        "prepare" => Box::pin(scale_in::prepare(&c.etcd, endpoints, &own, leaving)).await,
        "remove" => Box::pin(scale_in::remove(&c.etcd, endpoints, &own, leaving)).await,
        other => {
            return (
                StatusCode::NOT_FOUND,
                format!("unknown scale-in step {other:?}: use prepare or remove"),
            )
                .into_response();
        }
    };
    match result {
        Ok(report) => {
            tracing::info!(member = %report.member, step, outcome = report.outcome, leader = %report.leader, remaining = ?report.remaining, "scale-in step done");
            (StatusCode::OK, axum::Json(report)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %redacted(&e), member = %q.member, step, "scale-in step not done");
            refusal(&e)
        }
    }
}

/// A member operation's error without user information from the
/// endpoints' URLs (etcd errors may quote them).
pub(super) fn redacted(e: &CutOverError) -> String {
    druid_plugin_host::redact::redact_urls(&e.to_string()).into_owned()
}

/// The answer to a member operation that failed: 409 when refused, 503
/// while the cluster is not ready for it, 500 when etcd refused a call.
pub(super) fn refusal(e: &CutOverError) -> Response {
    let code = match e {
        CutOverError::Refused(_) => StatusCode::CONFLICT,
        CutOverError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        CutOverError::Etcd(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, redacted(e)).into_response()
}
