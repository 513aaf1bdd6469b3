//! Uploads: bytes collect into blocks of a fixed size; an object that fits
//! in one block is one Put Blob on `finish`, a larger one is staged block
//! by block (Put Block) and committed with Put Block List. At most one
//! block is held in memory. Staged blocks that are never committed are not
//! part of any blob and Azure drops them after a week, so an aborted
//! upload leaves nothing visible. The requests go through a [`Sink`], so
//! the sequence is tested natively with a fake one.

use std::cell::RefCell;

use druid_plugin_sdk::parts::PartBuffer;
use druid_plugin_sdk::store::{ObjectInfo, StoreError};

use crate::listing::block_id;

const MIB: u64 = 1 << 20;
/// The smallest block size used.
pub const MIN_BLOCK_SIZE: u64 = 8 * MIB;
/// The largest block size used (the service takes up to 4,000 MiB).
pub const MAX_BLOCK_SIZE: u64 = 512 * MIB;
/// The service's limit on the committed blocks of a blob.
pub const MAX_BLOCKS: usize = 50_000;

/// The block size for an object of about `size_hint` bytes: at least
/// 8 MiB, large enough for the object to fit in 45,000 blocks (room for a
/// hint that is a little low), rounded up to a MiB, at most 512 MiB.
pub fn block_size(size_hint: Option<u64>) -> usize {
    let wanted = size_hint.map_or(0, |s| s.div_ceil(45_000));
    let size = wanted
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE);
    usize::try_from(size).unwrap_or(usize::MAX)
}

/// The requests an upload makes, for one blob.
pub trait Sink {
    /// Stores the whole blob with one Put Blob.
    fn put_blob(&self, body: &[u8]) -> Result<(), StoreError>;
    /// Stages one block.
    fn put_block(&self, id: &str, body: &[u8]) -> Result<(), StoreError>;
    /// Commits the staged blocks, in order, as the blob.
    fn put_block_list(&self, ids: &[String]) -> Result<(), StoreError>;
}

#[derive(Debug)]
enum Phase {
    Open,
    Finished,
    Aborted,
    Failed(StoreError),
}

#[derive(Debug)]
struct State {
    buffer: PartBuffer,
    ids: Vec<String>,
    phase: Phase,
}

/// A blob being uploaded through a [`Sink`].
pub struct Uploader<S: Sink> {
    key: String,
    sink: S,
    state: RefCell<State>,
}

impl<S: Sink> Uploader<S> {
    /// An upload of `key` with blocks of `block_size` bytes.
    pub fn new(key: String, sink: S, block_size: usize) -> Self {
        Self {
            key,
            sink,
            state: RefCell::new(State {
                buffer: PartBuffer::new(block_size),
                ids: Vec::new(),
                phase: Phase::Open,
            }),
        }
    }

    /// The sink (for tests).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn check_open(&self, phase: &Phase) -> Result<(), StoreError> {
        match phase {
            Phase::Open => Ok(()),
            Phase::Finished => Err(StoreError::Other(format!(
                "upload of {:?}: already finished",
                self.key
            ))),
            Phase::Aborted => Err(StoreError::Other(format!(
                "upload of {:?}: already aborted",
                self.key
            ))),
            Phase::Failed(e) => Err(e.clone()),
        }
    }

    fn stage(sink: &S, key: &str, ids: &mut Vec<String>, block: &[u8]) -> Result<(), StoreError> {
        if ids.len() >= MAX_BLOCKS {
            return Err(StoreError::Other(format!(
                "upload of {key:?}: more than {MAX_BLOCKS} blocks of {} bytes: the object is \
                 larger than its size hint allowed for",
                block.len()
            )));
        }
        let id = block_id(ids.len());
        sink.put_block(&id, block)?;
        ids.push(id);
        Ok(())
    }

    /// Appends bytes; stages each block that fills.
    pub fn write(&self, chunk: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state.borrow_mut();
        self.check_open(&state.phase)?;
        let State { buffer, ids, .. } = &mut *state;
        let result = buffer.write(chunk, |block| {
            Self::stage(&self.sink, &self.key, ids, block)
        });
        if let Err(e) = &result {
            state.phase = Phase::Failed(e.clone());
        }
        result
    }

    /// Stores what is buffered and commits the blob.
    pub fn finish(&self) -> Result<ObjectInfo, StoreError> {
        let mut state = self.state.borrow_mut();
        self.check_open(&state.phase)?;
        let rest = state.buffer.take_rest();
        let size = state.buffer.total();
        let result = if state.ids.is_empty() {
            self.sink.put_blob(&rest)
        } else {
            let State { ids, .. } = &mut *state;
            let staged = if rest.is_empty() {
                Ok(())
            } else {
                Self::stage(&self.sink, &self.key, ids, &rest)
            };
            staged.and_then(|()| self.sink.put_block_list(ids))
        };
        match result {
            Ok(()) => {
                state.phase = Phase::Finished;
                Ok(ObjectInfo {
                    key: self.key.clone(),
                    size,
                    last_modified: None,
                })
            }
            Err(e) => {
                state.phase = Phase::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Gives up: nothing was committed, so nothing is visible; the staged
    /// blocks are left for the service to drop.
    pub fn abort(&self) -> Result<(), StoreError> {
        let mut state = self.state.borrow_mut();
        if !matches!(state.phase, Phase::Finished) {
            state.phase = Phase::Aborted;
            state.buffer.take_rest();
        }
        Ok(())
    }
}
