//! Connecting to etcd, and converting its watch events into the delta
//! format's types.

pub mod config;
pub mod cut_over;
pub mod etcdctl;
pub mod scale_in;
pub mod temp;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, Error as EtcdError, TlsOptions};

use crate::config::EtcdArgs;
use crate::formats::delta;

/// Excludes full snapshots and defragmentation from each other (both load
/// the leader's backend; a snapshot of a member being defragmented
/// stalls).
pub type MaintenanceLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not answer.
    #[error("cannot connect to etcd at {endpoints:?}: {source}")]
    Connect {
        /// The endpoints tried.
        endpoints: Vec<String>,
        /// The error.
        #[source]
        source: EtcdError,
    },
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Tls {
        path: path.to_path_buf(),
        source,
    })
}

/// Connection options from the flags.
pub fn options(args: &EtcdArgs, timeout: Duration) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10))
        // Snapshots of several GiB stream for minutes; requests carry no
        // overall deadline, each caller bounds its own call.
        .with_keep_alive_while_idle(true);
    if !args.etcd_username.is_empty() {
        options = options.with_user(
            args.etcd_username.clone(),
            args.etcd_password.expose().to_string(),
        );
    }
    if !args.insecure_transport || args.cacert.is_some() || args.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &args.cacert {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}

/// Connects to `endpoints`.
pub async fn connect(
    args: &EtcdArgs,
    endpoints: &[String],
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let opts = options(args, timeout)?;
    Client::connect(endpoints, Some(opts))
        .await
        .map_err(|source| ConnectError::Connect {
            endpoints: endpoints.to_vec(),
            source,
        })
}

/// Converts an etcd key-value into the delta format's.
pub fn key_value(kv: &etcd_client::KeyValue) -> delta::KeyValue {
    delta::KeyValue {
        key: kv.key().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        value: kv.value().to_vec(),
        lease: kv.lease(),
    }
}

/// Converts a watch event into the delta format's.
pub fn event(ev: &etcd_client::Event) -> Option<delta::Event> {
    let kind = match ev.event_type() {
        etcd_client::EventType::Put => delta::EventType::Put,
        etcd_client::EventType::Delete => delta::EventType::Delete,
    };
    Some(delta::Event {
        kind,
        kv: key_value(ev.kv()?),
    })
}

/// A client of the first of `endpoints` that answers a status call and is
/// a voting member. A client balanced over all endpoints would still send
/// some calls to a member that is down (the one being restored, for
/// instance), and a learner refuses most calls.
pub async fn connect_any(
    args: &EtcdArgs,
    endpoints: &[String],
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let mut last = None;
    for endpoint in endpoints {
        let one = std::slice::from_ref(endpoint);
        match connect(args, one, timeout).await {
            Ok(mut c) => match tokio::time::timeout(timeout, c.status()).await {
                Ok(Ok(s)) if !s.is_learner() => return Ok(c),
                Ok(Ok(_)) => {
                    last = Some(ConnectError::Connect {
                        endpoints: one.to_vec(),
                        source: EtcdError::InvalidArgs("the member is a learner".into()),
                    });
                }
                Ok(Err(source)) => {
                    last = Some(ConnectError::Connect {
                        endpoints: one.to_vec(),
                        source,
                    });
                }
                Err(_) => {
                    last = Some(ConnectError::Connect {
                        endpoints: one.to_vec(),
                        source: EtcdError::InvalidArgs(format!("no answer within {timeout:?}")),
                    });
                }
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::Connect {
        endpoints: Vec::new(),
        source: EtcdError::InvalidArgs("no endpoints".into()),
    }))
}
