//! The operator's Kubernetes client: kube's, with a client-side rate limit
//! (a token bucket: `qps` requests per second on average, bursts of up to
//! `burst`) shared by every controller, as client-go's QPS and burst.
//!
//! Requests beyond the limit wait their turn (first come, first served);
//! none is dropped. Every request is counted per method in
//! `druid_kube_api_requests_total`, and the time requests waited for the
//! limiter in `druid_kube_api_throttled_seconds_total`, so that a limit
//! that is too low for the fleet shows before the fleet slows down.
//!
//! Leader election uses its own client without this limit: a burst of
//! reconciles must never delay the lease renewal.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::client::{Body, ClientBuilder};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

/// Labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The HTTP method (`GET`, `PATCH`, ...).
    pub method: String,
}

/// The client's metrics.
#[derive(Clone, Default)]
pub struct ClientMetrics {
    /// Requests sent, per method.
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds requests waited for the rate limiter, summed.
    pub throttled_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
}

/// The client-side rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second on average; 0 turns the limit off.
    pub qps: u32,
    /// Requests that may go at once after a quiet spell (at least `qps`).
    pub burst: u32,
}

impl Default for RateLimit {
    /// The Go operator's defaults (its client connection's QPS 100 and
    /// burst 150), so that a switch in either direction keeps the load
    /// on the API server the same.
    fn default() -> Self {
        Self {
            qps: 100,
            burst: 150,
        }
    }
}

/// A client for `config` whose requests pass `limit`, counted in `metrics`.
pub fn client(
    config: kube::Config,
    limit: RateLimit,
    metrics: ClientMetrics,
) -> Result<kube::Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder
        .with_layer(&RateLimitLayer::new(limit, metrics))
        .build())
}

/// Waits for the limiter before each request and counts it.
#[derive(Clone)]
struct RateLimitLayer {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    metrics: ClientMetrics,
}

impl RateLimitLayer {
    /// The layer for `limit` (none for qps 0; a burst below qps is qps).
    fn new(limit: RateLimit, metrics: ClientMetrics) -> Self {
        let limiter = NonZeroU32::new(limit.qps).map(|qps| {
            let burst = NonZeroU32::new(limit.burst.max(limit.qps)).unwrap_or(qps);
            Arc::new(RateLimiter::direct(
                Quota::per_second(qps).allow_burst(burst),
            ))
        });
        Self { limiter, metrics }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
            metrics: self.metrics.clone(),
            permit: None,
            permitted: false,
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The service: ready only once the limiter grants the next request (kube
/// puts it behind a buffer, so callers queue in order while it waits).
struct RateLimited<S> {
    inner: S,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    metrics: ClientMetrics,
    permit: Option<(Wait, Instant)>,
    permitted: bool,
}

impl<S> Service<http::Request<Body>> for RateLimited<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permitted {
            if let Some(limiter) = &self.limiter {
                let (wait, since) = self.permit.get_or_insert_with(|| {
                    let limiter = limiter.clone();
                    (
                        Box::pin(async move { limiter.until_ready().await }),
                        Instant::now(),
                    )
                });
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let waited = since.elapsed().as_secs_f64();
                if waited > 0.0 {
                    self.metrics.throttled_seconds.inc_by(waited);
                }
                self.permit = None;
            }
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.permitted = false;
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                method: request.method().as_str().to_string(),
            })
            .inc();
        self.inner.call(request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use super::*;

    /// A service that answers at once: only the limiter can slow it.
    #[derive(Clone)]
    struct Echo;

    impl Service<http::Request<Body>> for Echo {
        type Response = ();
        type Error = Infallible;
        type Future = std::future::Ready<Result<(), Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    fn layer(qps: u32, burst: u32) -> (RateLimitLayer, ClientMetrics) {
        let metrics = ClientMetrics::default();
        let layer = RateLimitLayer::new(RateLimit { qps, burst }, metrics.clone());
        (layer, metrics)
    }

    /// Sends `n` requests one after the other; how long they took.
    async fn send(svc: &mut RateLimited<Echo>, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
            svc.call(http::Request::get("/api").body(Body::empty()).unwrap())
                .await
                .unwrap();
        }
        start.elapsed()
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        // A burst below the rate is raised to it: ten at once, then one
        // per 100 ms, so the other three cannot have gone in less than
        // 300 ms (a lower bound the limiter guarantees; a slow machine only
        // makes it longer).
        let (layer, metrics) = layer(10, 5);
        let mut svc = layer.layer(Echo);
        let took = send(&mut svc, 13).await;
        assert!(
            took >= Duration::from_millis(290),
            "13 requests at qps 10, burst 10 went in {took:?}"
        );
        let counted = metrics
            .requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
            })
            .get();
        assert_eq!(counted, 13);
        assert!(metrics.throttled_seconds.get() > 0.2);
    }

    #[tokio::test]
    async fn qps_zero_is_no_limit() {
        let (layer, metrics) = layer(0, 0);
        let mut svc = layer.layer(Echo);
        send(&mut svc, 1000).await;
        assert_eq!(metrics.throttled_seconds.get(), 0.0);
        let counted = metrics
            .requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
            })
            .get();
        assert_eq!(counted, 1000);
    }
}
