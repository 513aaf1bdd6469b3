//! Process and network metrics read from `/proc` at each scrape (see the
//! README): the names Go's Prometheus client exports by default, so
//! dashboards written for the Go operator and sidecar keep working.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// `process_*` metrics of this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// A snapshot of this process's figures; `None` where `/proc` could not
/// tell.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessFigures {
    /// User and system CPU time in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size in bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit of open file descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch in seconds.
    pub start_time_seconds: Option<f64>,
    /// Threads.
    pub threads: Option<u64>,
}

impl ProcessFigures {
    /// Reads this process's figures from `/proc/self`.
    pub fn read() -> Self {
        let Ok(me) = procfs::process::Process::myself() else {
            return ProcessFigures::default();
        };
        let stat = me.stat().ok();
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size();
        let boot = procfs::boot_time_secs().ok();
        ProcessFigures {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / ticks),
            resident_bytes: stat.as_ref().map(|s| s.rss.saturating_mul(page)),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            open_fds: me.fd_count().ok().map(|n| n as u64),
            max_fds: me
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    procfs::process::LimitValue::Value(v) => Some(v),
                    procfs::process::LimitValue::Unlimited => None,
                }),
            start_time_seconds: match (&stat, boot) {
                (Some(s), Some(boot)) => Some(boot as f64 + s.starttime as f64 / ticks),
                _ => None,
            },
            threads: stat
                .as_ref()
                .and_then(|s| u64::try_from(s.num_threads).ok()),
        }
    }
}

/// Encodes `metric` under `name`, if there is one.
fn emit(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: Option<impl EncodeMetric>,
) -> Result<(), std::fmt::Error> {
    let Some(metric) = metric else { return Ok(()) };
    let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let f = ProcessFigures::read();
        let e = &mut encoder;
        // Counters get `_total` from the encoder: process_cpu_seconds_total.
        emit(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            f.cpu_seconds.map(ConstCounter::new),
        )?;
        emit(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            f.resident_bytes.map(|v| ConstGauge::new(v as f64)),
        )?;
        emit(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            f.virtual_bytes.map(|v| ConstGauge::new(v as f64)),
        )?;
        emit(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            f.open_fds.map(|v| ConstGauge::new(v as f64)),
        )?;
        emit(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors",
            f.max_fds.map(|v| ConstGauge::new(v as f64)),
        )?;
        emit(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            f.start_time_seconds.map(ConstGauge::new),
        )?;
        emit(
            e,
            "process_threads",
            "Number of OS threads of the process",
            f.threads.map(|v| ConstGauge::new(v as f64)),
        )?;
        Ok(())
    }
}

/// Bytes sent and received on the network interfaces of this process's
/// network namespace, loopback left out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetworkFigures {
    /// Bytes sent.
    pub transmitted_bytes: u64,
    /// Bytes received.
    pub received_bytes: u64,
}

impl NetworkFigures {
    /// Reads `/proc/net/dev`; `None` when it cannot be read.
    pub fn read() -> Option<Self> {
        let devices = procfs::net::dev_status().ok()?;
        Some(devices.values().filter(|d| d.name != "lo").fold(
            NetworkFigures::default(),
            |acc, d| NetworkFigures {
                transmitted_bytes: acc.transmitted_bytes.saturating_add(d.sent_bytes),
                received_bytes: acc.received_bytes.saturating_add(d.recv_bytes),
            },
        ))
    }
}

/// `network_transmitted_bytes` and `network_received_bytes` (gauges, as
/// upstream's sidecar exports them), registered under the caller's prefix.
#[derive(Debug, Default)]
pub struct NetworkCollector;

impl Collector for NetworkCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(f) = NetworkFigures::read() else {
            return Ok(());
        };
        emit(
            &mut encoder,
            "network_transmitted_bytes",
            "Bytes sent on the pod's network interfaces (loopback left out)",
            Some(ConstGauge::new(f.transmitted_bytes as f64)),
        )?;
        emit(
            &mut encoder,
            "network_received_bytes",
            "Bytes received on the pod's network interfaces (loopback left out)",
            Some(ConstGauge::new(f.received_bytes as f64)),
        )
    }
}

/// Registers the process collector on `registry` (its root: the names
/// carry no prefix).
pub fn register_process_metrics(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    fn value(text: &str, name: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_process_metrics_follow_this_process() {
        let mut registry = Registry::default();
        register_process_metrics(&mut registry);
        let before = scrape(&registry);
        // Memory that is touched shows in the resident size.
        let block = vec![1u8; 64 << 20];
        let during = scrape(&registry);
        assert!(block.iter().all(|b| *b == 1));
        let rss_before = value(&before, "process_resident_memory_bytes");
        let rss_during = value(&during, "process_resident_memory_bytes");
        assert!(
            rss_during >= rss_before + f64::from(48u32 << 20),
            "{rss_before} -> {rss_during}"
        );
        drop(block);
        // A file that is opened shows in the descriptors.
        let fds = value(&during, "process_open_fds");
        let files: Vec<_> = (0..10)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = scrape(&registry);
        assert!(value(&after, "process_open_fds") >= fds + 10.0, "{after}");
        drop(files);
        assert!(value(&after, "process_cpu_seconds_total") > 0.0);
        let start = value(&after, "process_start_time_seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 3600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
        assert!(value(&after, "process_max_fds") >= 1.0);
        assert!(value(&after, "process_threads") >= 1.0);
        assert!(
            after.contains("# TYPE process_cpu_seconds counter"),
            "{after}"
        );
    }

    #[test]
    fn network_bytes_are_read_from_proc_net_dev() {
        let mut registry = Registry::default();
        registry
            .sub_registry_with_prefix("etcdbr")
            .register_collector(Box::new(NetworkCollector));
        let text = scrape(&registry);
        let sent = value(&text, "etcdbr_network_transmitted_bytes");
        let received = value(&text, "etcdbr_network_received_bytes");
        let f = NetworkFigures::read().unwrap();
        // The counters only grow between the scrape and the read.
        assert!(f.transmitted_bytes as f64 >= sent);
        assert!(f.received_bytes as f64 >= received);
    }
}
