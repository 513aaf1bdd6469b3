//! The compaction plugin (world `compactor`): a full snapshot plus its
//! deltas into one compact etcd database, with `druid-etcd-db`.
//!
//! The plugin sees its inputs, output and scratch space only as the
//! `blobs` handles the host lends for the call; it has no network,
//! filesystem, clock or randomness. Everything it does is
//! [`druid_etcd_db::compact`]; this crate adapts the handles to that
//! function's traits and the result to the WIT types.

use druid_etcd_db::{CompactOptions, DeltaInput, ReadAt, Sink, SnapshotInfo};
use druid_plugin_sdk::compactor::druid::plugin::blobs::{Reader, Writer};
use druid_plugin_sdk::compactor::druid::plugin::logging::{Level, log};
use druid_plugin_sdk::compactor::exports::druid::plugin::compaction as wit;
use druid_plugin_sdk::compactor::{Guest, PluginInfo};

/// The plugin.
pub struct Compactor;

impl Guest for Compactor {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "compactor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: druid_plugin_sdk::API_VERSION.into(),
            providers: Vec::new(),
        }
    }
}

/// The largest piece read in one host call (the host's default return
/// limit is 16 MiB).
const READ_PIECE: usize = 8 << 20;

/// A host reader as a [`ReadAt`] source.
struct HostReader<'a>(&'a Reader);

/// A host writer as a [`Sink`].
struct HostWriter<'a>(&'a Writer);

fn io_error(offset: u64, len: usize, message: String) -> druid_etcd_db::Error {
    druid_etcd_db::Error::Io {
        offset,
        len,
        source: std::io::Error::other(message),
    }
}

fn copy_read(
    offset: u64,
    buf: &mut [u8],
    got: Result<Vec<u8>, String>,
) -> Result<(), druid_etcd_db::Error> {
    let bytes = got.map_err(|e| io_error(offset, buf.len(), e))?;
    if bytes.len() != buf.len() {
        return Err(io_error(
            offset,
            buf.len(),
            format!("the host returned {} bytes", bytes.len()),
        ));
    }
    buf.copy_from_slice(&bytes);
    Ok(())
}

fn len32(offset: u64, len: usize) -> Result<u32, druid_etcd_db::Error> {
    u32::try_from(len).map_err(|_| io_error(offset, len, "read larger than 4 GiB".into()))
}

fn hash(offset: u64, got: Result<Vec<u8>, String>) -> Result<[u8; 32], druid_etcd_db::Error> {
    let bytes = got.map_err(|e| io_error(offset, 0, e))?;
    bytes.as_slice().try_into().map_err(|_| {
        io_error(
            offset,
            0,
            format!("the host returned a {}-byte SHA-256", bytes.len()),
        )
    })
}

// The host hashes natively: SHA-256 in wasm is several times slower, and a
// compaction hashes every delta and the whole output.
impl ReadAt for HostReader<'_> {
    fn size(&self) -> Result<u64, druid_etcd_db::Error> {
        Ok(self.0.size())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), druid_etcd_db::Error> {
        // In pieces: the host bounds what one call may return.
        for (i, piece) in buf.chunks_mut(READ_PIECE).enumerate() {
            let at = offset + (i * READ_PIECE) as u64;
            let got = self.0.read_at(at, len32(at, piece.len())?);
            copy_read(at, piece, got)?;
        }
        Ok(())
    }

    fn sha256(&self, offset: u64, len: u64) -> Result<[u8; 32], druid_etcd_db::Error> {
        hash(offset, self.0.sha256(offset, len))
    }
}

impl ReadAt for HostWriter<'_> {
    fn size(&self) -> Result<u64, druid_etcd_db::Error> {
        Err(io_error(0, 0, "the size of an output is not known".into()))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), druid_etcd_db::Error> {
        let got = self.0.read_at(offset, len32(offset, buf.len())?);
        copy_read(offset, buf, got)
    }

    fn sha256(&self, offset: u64, len: u64) -> Result<[u8; 32], druid_etcd_db::Error> {
        hash(offset, self.0.sha256(offset, len))
    }
}

impl Sink for HostWriter<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), druid_etcd_db::Error> {
        self.0
            .write_at(offset, data)
            .map_err(|e| io_error(offset, data.len(), e))
    }
}

fn info(s: wit::SnapshotInfo) -> SnapshotInfo {
    SnapshotInfo {
        name: s.name,
        start_revision: s.start_revision,
        last_revision: s.last_revision,
    }
}

impl wit::Guest for Compactor {
    fn compact(
        base: wit::SnapshotInfo,
        base_data: &Reader,
        deltas: Vec<wit::SnapshotInfo>,
        delta_data: Vec<Reader>,
        output: &Writer,
        scratch: &Writer,
        options: wit::Options,
    ) -> Result<wit::Report, wit::CompactError> {
        if deltas.len() != delta_data.len() {
            return Err(wit::CompactError::InvalidInput(format!(
                "{} deltas named but {} delta payloads given",
                deltas.len(),
                delta_data.len()
            )));
        }
        let inputs: Vec<DeltaInput<HostReader<'_>>> = deltas
            .into_iter()
            .zip(delta_data.iter())
            .map(|(i, r)| DeltaInput {
                info: info(i),
                data: HostReader(r),
            })
            .collect();
        let base = info(base);
        let opts = CompactOptions {
            unknown_lease_ttl: options.unknown_lease_ttl,
            sort_memory_bytes: usize::try_from(options.sort_memory_bytes).unwrap_or(usize::MAX),
            max_delta_bytes: options.max_delta_bytes,
        };
        let result = druid_etcd_db::compact(
            &base,
            HostReader(base_data),
            &inputs,
            HostWriter(output),
            HostWriter(scratch),
            &opts,
        );
        match result {
            Ok(r) => {
                log(
                    Level::Info,
                    &format!(
                        "compacted {} and {} deltas: revision {}, {} keys, {} leases ({} recreated), {} bytes",
                        base.name,
                        inputs.len(),
                        r.revision,
                        r.keys,
                        r.leases,
                        r.leases_recreated,
                        r.db_bytes
                    ),
                );
                Ok(wit::Report {
                    base_revision: r.base_revision,
                    revision: r.revision,
                    keys: r.keys,
                    base_entries: r.base_entries,
                    events: r.events,
                    events_skipped: r.events_skipped,
                    leases: r.leases,
                    leases_recreated: r.leases_recreated,
                    recreated_lease_ttl: r.recreated_lease_ttl,
                    db_bytes: r.db_bytes,
                    sha256: r.sha256.to_vec(),
                    spilled_bytes: r.spilled_bytes,
                    sort_peak_bytes: r.sort_peak_bytes,
                })
            }
            Err(e) if e.is_io() => Err(wit::CompactError::Io(e.to_string())),
            Err(e) => Err(wit::CompactError::InvalidInput(e.to_string())),
        }
    }
}

// Exported only in the wasm build: the export names (`druid:plugin/...`) are
// not valid native symbol names, and native builds are for unit tests.
#[cfg(target_arch = "wasm32")]
druid_plugin_sdk::compactor::export_compactor!(Compactor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_serves_no_provider() {
        let info = Compactor::describe();
        assert_eq!(info.name, "compactor");
        assert!(info.providers.is_empty());
    }
}
