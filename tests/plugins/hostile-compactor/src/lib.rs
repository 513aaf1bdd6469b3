//! A hostile test compactor: it compacts its inputs correctly, then writes
//! a copy of the result without one live key (the middle one of the `key`
//! bucket) and reports the original's key count. The copy is a well-formed
//! etcd database at the right revision with a valid trailer, so only a
//! check of the content finds the loss. Never shipped (built to
//! `target/plugins/test-only/`).
//!
//! It reads its inputs whole into memory (test inputs are small).
//!
//! With a base named `hash-forever`, it instead asks the host to hash the
//! base again and again: host-side work the host must charge to the
//! call's CPU budget, or the call would run to its wall-clock limit.

use druid_etcd_db::{CompactOptions, Db, DbWriter, DeltaInput, KEY_BUCKET, SnapshotInfo};
use druid_plugin_sdk::compactor::druid::plugin::blobs::{Reader, Writer};
use druid_plugin_sdk::compactor::exports::druid::plugin::compaction as wit;
use druid_plugin_sdk::compactor::{Guest, PluginInfo};

/// The plugin.
pub struct HostileCompactor;

impl Guest for HostileCompactor {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-compactor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: druid_plugin_sdk::API_VERSION.into(),
            providers: Vec::new(),
        }
    }
}

/// A reader's bytes, whole.
fn read_all(r: &Reader) -> Result<Vec<u8>, String> {
    const PIECE: u64 = 4 << 20;
    let size = r.size();
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let len = (size - at).min(PIECE);
        out.extend(r.read_at(at, len as u32)?);
        at += len;
    }
    Ok(out)
}

fn info(s: wit::SnapshotInfo) -> SnapshotInfo {
    SnapshotInfo {
        name: s.name,
        start_revision: s.start_revision,
        last_revision: s.last_revision,
    }
}

/// `db` copied without the `key` bucket's middle entry.
fn without_a_key(db: &[u8]) -> Result<(Vec<u8>, druid_etcd_db::Written), String> {
    let db = Db::open(db).map_err(|e| e.to_string())?;
    let mut copy = Vec::new();
    let mut w = DbWriter::new(&mut copy);
    for name in db.buckets().map_err(|e| e.to_string())? {
        let Some(bucket) = db.bucket(&name).map_err(|e| e.to_string())? else {
            continue;
        };
        let drop_at = if name == KEY_BUCKET {
            Some(db.iter(&bucket).count() / 2)
        } else {
            None
        };
        w.begin_bucket(&name, bucket.sequence())
            .map_err(|e| e.to_string())?;
        for (i, entry) in db.iter(&bucket).enumerate() {
            let entry = entry.map_err(|e| e.to_string())?;
            if Some(i) != drop_at {
                w.put(&entry.key, &entry.value).map_err(|e| e.to_string())?;
            }
        }
        w.end_bucket().map_err(|e| e.to_string())?;
    }
    let written = w.finish(db.meta().sequence).map_err(|e| e.to_string())?;
    Ok((copy, written))
}

impl wit::Guest for HostileCompactor {
    fn compact(
        base: wit::SnapshotInfo,
        base_data: &Reader,
        deltas: Vec<wit::SnapshotInfo>,
        delta_data: Vec<Reader>,
        output: &Writer,
        _scratch: &Writer,
        options: wit::Options,
    ) -> Result<wit::Report, wit::CompactError> {
        let io = wit::CompactError::Io;
        if base.name == "hash-forever" {
            loop {
                if let Err(e) = base_data.sha256(0, base_data.size()) {
                    return Err(io(e));
                }
            }
        }
        let base_bytes = read_all(base_data).map_err(io)?;
        let mut inputs = Vec::new();
        for (i, r) in deltas.into_iter().zip(delta_data.iter()) {
            inputs.push(DeltaInput {
                info: info(i),
                data: read_all(r).map_err(io)?,
            });
        }
        let opts = CompactOptions {
            unknown_lease_ttl: options.unknown_lease_ttl,
            ..CompactOptions::default()
        };
        let mut honest = Vec::new();
        let r = druid_etcd_db::compact(
            &info(base),
            base_bytes.as_slice(),
            &inputs,
            &mut honest,
            Vec::new(),
            &opts,
        )
        .map_err(|e| wit::CompactError::InvalidInput(e.to_string()))?;
        let (lossy, written) = without_a_key(&honest).map_err(io)?;
        for (i, piece) in lossy.chunks(4 << 20).enumerate() {
            output.write_at((i * (4 << 20)) as u64, piece).map_err(io)?;
        }
        Ok(wit::Report {
            base_revision: r.base_revision,
            revision: r.revision,
            // The lie: the honest count.
            keys: r.keys,
            base_entries: r.base_entries,
            events: r.events,
            events_skipped: r.events_skipped,
            leases: r.leases,
            leases_recreated: r.leases_recreated,
            recreated_lease_ttl: r.recreated_lease_ttl,
            db_bytes: written.db_bytes,
            sha256: written.sha256.to_vec(),
            spilled_bytes: 0,
            sort_peak_bytes: 0,
        })
    }
}

// Exported only in the wasm build (see plugins/compactor).
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::compactor::export_compactor!(HostileCompactor);
