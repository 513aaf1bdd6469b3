//! Compression rates of snapshot objects: gzip on one core as upstream
//! does (at the default level 6, and at each level) against the sidecar's
//! parallel gzip (`gzip_parallel`, one member per 4 MiB block on every
//! core), plus zlib and lzw (single-threaded), in MB/s of uncompressed
//! input and the compressed size.
//!
//! Run: `cargo bench -p druid-backup-restore --bench compression`.
//! `DRUID_BENCH_COMPRESSION_MIB` (default 256) MiB of each corpus:
//! - `etcd-like`: what an etcd database of Kubernetes objects looks like to
//!   a compressor (keys under `/registry/`, JSON-like values with repeated
//!   field names and random identifiers);
//! - `random`: incompressible 64 KiB values, as the upload bench writes.
//!
//! The figures are CPU only (memory to memory); the upload bench
//! (`--bench sidecar`, `DRUID_BENCH=upload`) measures a snapshot end to
//! end into MinIO.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "bench"
)]

use std::io::Write as _;
use std::time::Instant;

use druid_backup_restore::formats::compression::{
    Compression, GZIP_LEVEL, compress_stream, gzip_parallel, worker_threads,
};
use flate2::write::GzEncoder;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn etcd_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4096);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut n = 0u64;
    while out.len() < len {
        n += 1;
        let id: String = (0..12)
            .map(|_| char::from(b'a' + (xorshift(&mut s) % 26) as u8))
            .collect();
        let _ = write!(
            out,
            "/registry/pods/ns-{}/pod-{id}{{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{{\"name\":\"pod-{id}\",\"uid\":\"{:016x}-{:08x}\",\"resourceVersion\":\"{n}\",\"labels\":{{\"app\":\"web-{}\"}}}},\"spec\":{{\"containers\":[{{\"name\":\"main\",\"image\":\"registry.example/web:{}\",\"resources\":{{\"requests\":{{\"cpu\":\"100m\",\"memory\":\"128Mi\"}}}}}}]}},\"status\":{{\"phase\":\"Running\",\"podIP\":\"10.{}.{}.{}\"}}}}",
            n % 97,
            xorshift(&mut s),
            xorshift(&mut s) as u32,
            n % 13,
            n % 7,
            n % 256,
            xorshift(&mut s) % 256,
            xorshift(&mut s) % 256,
        );
    }
    out.truncate(len);
    out
}

fn random(len: usize) -> Vec<u8> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&xorshift(&mut s).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn rate(bytes: usize, f: impl FnOnce() -> usize) -> (f64, usize) {
    let start = Instant::now();
    let out = f();
    let secs = start.elapsed().as_secs_f64();
    (bytes as f64 / 1e6 / secs, out)
}

fn one_core_gzip(data: &[u8], level: u32) -> usize {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap().len()
}

fn main() {
    let mib: usize = std::env::var("DRUID_BENCH_COMPRESSION_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let threads = worker_threads();
    println!("compression: {mib} MiB per corpus, {threads} cores, snapshot level {GZIP_LEVEL}");
    println!(
        "{:<10} {:<34} {:>9} {:>12} {:>7}",
        "corpus", "method", "MB/s", "bytes out", "ratio"
    );
    for (name, data) in [("etcd-like", etcd_like(len)), ("random", random(len))] {
        let mut rows: Vec<(String, (f64, usize))> = Vec::new();
        for level in [1, 3, 6] {
            rows.push((
                format!(
                    "gzip level {level}, one core{}",
                    if level == 6 { " (upstream)" } else { "" }
                ),
                rate(len, || one_core_gzip(&data, level)),
            ));
        }
        for level in [1, 2, 3, 6] {
            rows.push((
                format!("gzip_parallel level {level}, {threads} cores"),
                rate(len, || {
                    let mut out = Vec::new();
                    gzip_parallel(data.as_slice(), &mut out, level, threads).unwrap();
                    out.len()
                }),
            ));
        }
        for c in [Compression::Zlib, Compression::Lzw] {
            rows.push((
                format!("{c:?} (one core, as snapshots)"),
                rate(len, || {
                    let mut out = Vec::new();
                    compress_stream(c, data.as_slice(), &mut out).unwrap();
                    out.len()
                }),
            ));
        }
        for (method, (mbs, out)) in rows {
            println!(
                "{name:<10} {method:<34} {mbs:>9.1} {out:>12} {:>7.3}",
                out as f64 / len as f64
            );
        }
    }
}
