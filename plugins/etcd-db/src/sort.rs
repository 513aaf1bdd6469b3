//! An external merge sort of byte records within a memory budget: records
//! are gathered in one arena; when the budget is reached they are sorted
//! and spilled as a run to scratch space; the runs are then merged with a
//! heap, each read through a small buffer. With no spill everything stays
//! in memory.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::{Error, Sink};

/// Scratch space shared by the sorters of one job: an append-only region
/// of a [`Sink`].
pub(crate) struct Scratch<S: Sink> {
    sink: S,
    end: u64,
}

impl<S: Sink> Scratch<S> {
    pub(crate) fn new(sink: S) -> Self {
        Self { sink, end: 0 }
    }

    /// Bytes spilled so far.
    pub(crate) fn spilled(&self) -> u64 {
        self.end
    }

    fn append(&mut self, data: &[u8]) -> Result<u64, Error> {
        let at = self.end;
        self.sink.write_at(at, data)?;
        self.end += data.len() as u64;
        Ok(at)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.sink.read_at(offset, buf)
    }
}

/// How records compare.
pub(crate) type Cmp = fn(&[u8], &[u8]) -> Ordering;

/// Memory counted per record besides its bytes (its index entry; 16 bytes
/// on 64-bit targets, counted the same on wasm32 so that the native and
/// the plugin build spill at the same points).
const INDEX_COST: usize = 16;
/// Largest piece written to scratch at once.
const SPILL_CHUNK: usize = 1 << 20;

/// Collects records, then yields them in order (see the module docs).
pub(crate) struct Sorter<'a, S: Sink> {
    scratch: &'a RefCell<Scratch<S>>,
    cmp: Cmp,
    arena: Vec<u8>,
    index: Vec<(usize, u32)>,
    budget: usize,
    runs: Vec<(u64, u64)>,
    records: u64,
    peak: usize,
}

impl<'a, S: Sink> Sorter<'a, S> {
    pub(crate) fn new(scratch: &'a RefCell<Scratch<S>>, cmp: Cmp, budget: usize) -> Self {
        Self {
            scratch,
            cmp,
            arena: Vec::new(),
            index: Vec::new(),
            budget: budget.max(1 << 10),
            runs: Vec::new(),
            records: 0,
            peak: 0,
        }
    }

    /// The largest memory the records took at once.
    pub(crate) fn peak_bytes(&self) -> usize {
        self.peak
    }

    fn used(&self) -> usize {
        self.arena.len() + self.index.len() * INDEX_COST
    }

    pub(crate) fn push(&mut self, record: &[u8]) -> Result<(), Error> {
        if !self.index.is_empty() && self.used() + record.len() + INDEX_COST > self.budget {
            self.spill()?;
        }
        let len = u32::try_from(record.len()).map_err(|_| Error::Write {
            reason: format!("sort record of {} bytes", record.len()),
        })?;
        self.index.push((self.arena.len(), len));
        self.arena.extend_from_slice(record);
        self.records += 1;
        self.peak = self.peak.max(self.used());
        Ok(())
    }

    fn sort_index(&mut self) {
        let (arena, cmp) = (&self.arena, self.cmp);
        self.index.sort_unstable_by(|a, b| {
            cmp(
                &arena[a.0..a.0 + a.1 as usize],
                &arena[b.0..b.0 + b.1 as usize],
            )
        });
    }

    fn spill(&mut self) -> Result<(), Error> {
        self.sort_index();
        let mut scratch = self.scratch.borrow_mut();
        let mut start = None;
        let mut total = 0u64;
        let mut chunk = Vec::with_capacity(SPILL_CHUNK + 1024);
        for &(at, len) in &self.index {
            chunk.extend(len.to_le_bytes());
            chunk.extend_from_slice(&self.arena[at..at + len as usize]);
            if chunk.len() >= SPILL_CHUNK {
                let off = scratch.append(&chunk)?;
                start.get_or_insert(off);
                total += chunk.len() as u64;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            let off = scratch.append(&chunk)?;
            start.get_or_insert(off);
            total += chunk.len() as u64;
        }
        if let Some(start) = start {
            self.runs.push((start, total));
        }
        self.arena.clear();
        self.index.clear();
        Ok(())
    }

    /// The records in order.
    pub(crate) fn finish(mut self) -> Result<Merge<'a, S>, Error> {
        if self.runs.is_empty() {
            self.sort_index();
            return Ok(Merge {
                inner: MergeInner::Memory {
                    arena: self.arena,
                    index: self.index,
                    pos: 0,
                },
            });
        }
        if !self.index.is_empty() {
            self.spill()?;
        }
        // Memory is shared between the runs' read buffers.
        let per_run = (self.budget / self.runs.len()).clamp(4 << 10, 1 << 20);
        let mut readers = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for (i, &(offset, len)) in self.runs.iter().enumerate() {
            let mut r = RunReader {
                offset,
                end: offset + len,
                buf: Vec::with_capacity(per_run),
                pos: 0,
                chunk: per_run,
            };
            if let Some(rec) = r.next(self.scratch)? {
                heap.push(Item {
                    rec,
                    run: i,
                    cmp: self.cmp,
                });
            }
            readers.push(r);
        }
        Ok(Merge {
            inner: MergeInner::Runs {
                scratch: self.scratch,
                readers,
                heap,
            },
        })
    }
}

/// A run being read back.
struct RunReader {
    offset: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl RunReader {
    /// Makes `n` bytes available at `pos`, reading more as needed.
    fn fill<S: Sink>(&mut self, scratch: &RefCell<Scratch<S>>, n: usize) -> Result<bool, Error> {
        if self.buf.len() - self.pos >= n {
            return Ok(true);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        while self.buf.len() < n {
            let left = self.end - self.offset;
            if left == 0 {
                return Ok(false);
            }
            let want = (n - self.buf.len()).max(self.chunk) as u64;
            let take = usize::try_from(left.min(want)).unwrap_or(self.chunk);
            let at = self.buf.len();
            self.buf.resize(at + take, 0);
            scratch.borrow().read_at(self.offset, &mut self.buf[at..])?;
            self.offset += take as u64;
        }
        Ok(true)
    }

    fn next<S: Sink>(&mut self, scratch: &RefCell<Scratch<S>>) -> Result<Option<Vec<u8>>, Error> {
        if !self.fill(scratch, 4)? {
            if self.buf.len() > self.pos {
                return Err(spill_damaged("a record's length is cut off"));
            }
            return Ok(None);
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.buf[self.pos..self.pos + 4]);
        let len = u32::from_le_bytes(len) as usize;
        self.pos += 4;
        if !self.fill(scratch, len)? {
            return Err(spill_damaged("a record is cut off"));
        }
        let rec = self.buf[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(Some(rec))
    }
}

fn spill_damaged(what: &str) -> Error {
    Error::Io {
        offset: 0,
        len: 0,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("scratch space returned different bytes than were spilled: {what}"),
        ),
    }
}

/// A run's head record in the merge heap (a min-heap by `cmp`, then run).
struct Item {
    rec: Vec<u8>,
    run: usize,
    cmp: Cmp,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (self.cmp)(&other.rec, &self.rec).then(other.run.cmp(&self.run))
    }
}

enum MergeInner<'a, S: Sink> {
    Memory {
        arena: Vec<u8>,
        index: Vec<(usize, u32)>,
        pos: usize,
    },
    Runs {
        scratch: &'a RefCell<Scratch<S>>,
        readers: Vec<RunReader>,
        heap: BinaryHeap<Item>,
    },
}

/// Sorted records, one at a time.
pub(crate) struct Merge<'a, S: Sink> {
    inner: MergeInner<'a, S>,
}

impl<S: Sink> Merge<'_, S> {
    pub(crate) fn next(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match &mut self.inner {
            MergeInner::Memory { arena, index, pos } => {
                let Some(&(at, len)) = index.get(*pos) else {
                    return Ok(None);
                };
                *pos += 1;
                Ok(Some(arena[at..at + len as usize].to_vec()))
            }
            MergeInner::Runs {
                scratch,
                readers,
                heap,
            } => {
                let Some(item) = heap.pop() else {
                    return Ok(None);
                };
                if let Some(reader) = readers.get_mut(item.run)
                    && let Some(rec) = reader.next(scratch)?
                {
                    heap.push(Item {
                        rec,
                        run: item.run,
                        cmp: item.cmp,
                    });
                }
                Ok(Some(item.rec))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sorted(records: &[Vec<u8>], budget: usize) -> (Vec<Vec<u8>>, u64) {
        let scratch = RefCell::new(Scratch::new(Vec::new()));
        let mut s = Sorter::new(&scratch, |a, b| a.cmp(b), budget);
        for r in records {
            s.push(r).unwrap();
        }
        let mut m = s.finish().unwrap();
        let mut out = Vec::new();
        while let Some(r) = m.next().unwrap() {
            out.push(r);
        }
        let spilled = scratch.borrow().spilled();
        (out, spilled)
    }

    #[test]
    fn spills_beyond_the_budget_and_merges() {
        let records: Vec<Vec<u8>> = (0..50_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761).to_be_bytes().repeat(3))
            .collect();
        let (out, spilled) = sorted(&records, 64 << 10);
        assert!(spilled > 0, "a 64 KiB budget must spill");
        let mut expected = records.clone();
        expected.sort();
        assert_eq!(out, expected);
        let (out, spilled) = sorted(&records, 64 << 20);
        assert_eq!(spilled, 0);
        assert_eq!(out, expected);
    }

    proptest! {
        #[test]
        fn sorts_like_sort(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..200)) {
            let mut expected = records.clone();
            expected.sort();
            prop_assert_eq!(sorted(&records, 1).0, expected);
        }
    }
}
