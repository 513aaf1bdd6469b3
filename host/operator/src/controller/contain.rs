//! Containment: a panic while reconciling one object fails that object's
//! reconcile (reported on the object, logged, retried with backoff) and
//! never the operator or the other objects.
//!
//! kube-runtime polls every reconcile inside the controller's own stream,
//! so an uncaught panic in one would end the controller for every Etcd.
//! The release profile keeps `panic = "unwind"` for this.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `f`, turning a panic into its message.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

/// Polls `f` to completion, turning a panic into its message.
///
/// Unwind safety: what a reconcile shares across calls (the context, its
/// caches and metrics) is only mutated behind locks or atomics, held for
/// short sections that do not panic (were one poisoned, the caches behind
/// it are skipped, which costs API calls, not correctness); a half-done
/// reconcile is repeated from the start, as after any error.
pub async fn catch_async<F: Future>(f: F) -> Result<F::Output, String> {
    AssertUnwindSafe(f)
        .catch_unwind()
        .await
        .map_err(|p| panic_message(p.as_ref()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic, reason = "tests of panic containment")]
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(
            catch(|| -> u8 { panic!("boom {}", 1) }),
            Err("boom 1".into())
        );
        assert_eq!(catch(|| -> u8 { panic!("static") }), Err("static".into()));
    }

    #[tokio::test]
    async fn a_panicking_future_becomes_its_message() {
        assert_eq!(catch_async(async { 7 }).await, Ok(7));
        let r = catch_async(async {
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            #[allow(clippy::indexing_slicing, reason = "the panic under test")]
            v[3]
        })
        .await;
        assert!(r.is_err_and(|m| m.contains("index out of bounds")));
    }
}
