//! Files lent to a plugin as `blobs` handles (the compactor's inputs,
//! output and scratch file): reads bounded by the call's return limit,
//! writes capped at the handle's size, SHA-256 of a range hashed natively
//! and charged to the call's CPU budget.

use std::fs::File;
use std::os::unix::fs::FileExt as _;

use druid_etcd_db::ReadAt;
use wasmtime::component::Resource;

use super::HostState;
use super::bindings::compactor::druid::plugin::blobs;
use super::lent::{BlobReader, BlobWriter};

impl blobs::Host for HostState {}

impl blobs::HostReader for HostState {
    fn size(&mut self, this: Resource<BlobReader>) -> u64 {
        self.table.get(&this).map_or(0, |r| r.size)
    }

    fn read_at(
        &mut self,
        this: Resource<BlobReader>,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, String> {
        let max = self.max_read;
        let reader = self.table.get(&this).map_err(|e| e.to_string())?;
        read_file(&reader.file, reader.size, offset, len, max)
    }

    fn sha256(
        &mut self,
        this: Resource<BlobReader>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, String> {
        self.budget_left()?;
        let started = std::time::Instant::now();
        let reader = self.table.get(&this).map_err(|e| e.to_string())?;
        let hash = hash_file(&reader.file, reader.size, offset, len);
        self.charge(started.elapsed())?;
        hash
    }

    fn drop(&mut self, this: Resource<BlobReader>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl blobs::HostWriter for HostState {
    fn write_at(
        &mut self,
        this: Resource<BlobWriter>,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), String> {
        let writer = self.table.get(&this).map_err(|e| e.to_string())?;
        let end = offset.saturating_add(data.len() as u64);
        if end > writer.cap {
            return Err(format!(
                "write up to byte {end} is past the {} bytes this output may hold",
                writer.cap
            ));
        }
        writer
            .file
            .write_all_at(&data, offset)
            .map_err(|e| format!("write of {} bytes at {offset}: {e}", data.len()))
    }

    fn read_at(
        &mut self,
        this: Resource<BlobWriter>,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, String> {
        let max = self.max_read;
        let writer = self.table.get(&this).map_err(|e| e.to_string())?;
        let size = writer.file.metadata().map_err(|e| e.to_string())?.len();
        read_file(&writer.file, size, offset, len, max)
    }

    fn sha256(
        &mut self,
        this: Resource<BlobWriter>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, String> {
        self.budget_left()?;
        let started = std::time::Instant::now();
        let writer = self.table.get(&this).map_err(|e| e.to_string())?;
        let size = writer.file.metadata().map_err(|e| e.to_string())?.len();
        let hash = hash_file(&writer.file, size, offset, len);
        self.charge(started.elapsed())?;
        hash
    }

    fn drop(&mut self, this: Resource<BlobWriter>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// The SHA-256 of a range of `file` (etcd-db's chunked hash of a
/// [`ReadAt`] source, natively).
fn hash_file(file: &File, size: u64, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(format!(
            "hash of {len} bytes at {offset} is past the end of the {size}-byte blob"
        ));
    }
    file.sha256(offset, len)
        .map(|h| h.to_vec())
        .map_err(|e| e.to_string())
}

fn read_file(file: &File, size: u64, offset: u64, len: u32, max: usize) -> Result<Vec<u8>, String> {
    let len = len as usize;
    if len > max {
        return Err(format!(
            "read of {len} bytes is over the limit of {max} bytes"
        ));
    }
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(format!(
            "read of {len} bytes at {offset} is past the end of the {size}-byte blob"
        ));
    }
    let mut buf = vec![0u8; len];
    ReadAt::read_at(file, offset, &mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}
