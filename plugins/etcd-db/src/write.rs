//! Writing a fresh bbolt database, streaming: buckets are built bottom-up
//! from entries given in key order, so the writer holds one page per tree
//! level, never the database.
//!
//! Layout of the file: page 0 and 1 are the meta pages, page 2 an empty
//! freelist, then the buckets' pages in the order they are written, the
//! root bucket's page(s) last. Every page below the high-water mark is
//! reachable, so nothing is free. Pages are filled up to the page size; an
//! entry larger than a page gets a leaf of its own with overflow pages, as
//! bbolt does. Pages are written in batches; the meta pages are written at
//! the end, when the root is known, and the SHA-256 trailer of a snapshot
//! stream is computed by reading the file back.

use crate::page::{
    BRANCH_PAGE, BUCKET_HEADER_LEN, BUCKET_LEAF_FLAG, ELEMENT_LEN, FREELIST_PAGE, LEAF_PAGE, MAGIC,
    META_PAGE, PAGE_HEADER_LEN, VERSION, fnv1a64,
};
use crate::{Error, ReadAt, hex};

/// A random-access destination the writer writes to and reads back from
/// (the output file, or scratch space for spills).
pub trait Sink: ReadAt {
    /// Writes `data` at `offset`, extending the destination as needed.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error>;
}

impl Sink for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let start = usize::try_from(offset).map_err(|_| Error::Io {
            offset,
            len: data.len(),
            source: std::io::Error::other("offset does not fit in memory"),
        })?;
        let end = start + data.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(data);
        Ok(())
    }
}

impl<T: Sink + ?Sized> Sink for &mut T {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        (**self).write_at(offset, data)
    }
}

impl<T: Sink + ?Sized> Sink for Box<T> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        (**self).write_at(offset, data)
    }
}

#[cfg(unix)]
impl Sink for std::fs::File {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        self.write_all_at(data, offset).map_err(|source| Error::Io {
            offset,
            len: data.len(),
            source,
        })
    }
}

/// The page size the writer uses (etcd's, on every platform it runs on).
pub const WRITE_PAGE_SIZE: usize = 4096;
/// Bytes gathered before one write to the sink.
const BATCH: usize = 1 << 20;
/// The first page id after the two metas and the freelist.
const FIRST_DATA_PAGE: u64 = 3;
const FREELIST_PAGE_ID: u64 = 2;

/// What the writer wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The database's size in bytes (without the trailer).
    pub db_bytes: u64,
    /// The SHA-256 of the database, appended after it as etcd's snapshot
    /// stream does.
    pub sha256: [u8; 32],
    /// Pages written (the high-water mark).
    pub pages: u64,
    /// Entries written, buckets' entries in the root included.
    pub entries: u64,
}

/// One tree being built, bottom-up.
#[derive(Default)]
struct TreeBuilder {
    /// Elements of the leaf being filled: flags, key, value.
    leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
    /// Bytes the leaf would take (header, elements, keys, values).
    leaf_size: usize,
    /// Branch levels: `levels[0]` holds (first key, page id) of the leaves
    /// not yet under a branch page, `levels[1]` of level-1 branches, ...
    levels: Vec<Vec<(Vec<u8>, u64)>>,
    last_key: Option<Vec<u8>>,
    entries: u64,
}

/// Writes a bbolt database (see the module docs).
///
/// ```
/// use druid_etcd_db::{Db, DbWriter};
/// let mut out = Vec::new();
/// let mut w = DbWriter::new(&mut out);
/// w.begin_bucket(b"key", 0)?;
/// w.put(b"a", b"1")?;
/// w.end_bucket()?;
/// let written = w.finish(0)?;
/// let db = Db::open(&out[..written.db_bytes as usize])?;
/// db.check()?;
/// # Ok::<(), druid_etcd_db::Error>(())
/// ```
pub struct DbWriter<S: Sink> {
    sink: S,
    page_size: usize,
    next_page: u64,
    buf: Vec<u8>,
    buf_start: u64,
    current: Option<(Vec<u8>, u64, TreeBuilder)>,
    /// Buckets written: name, root page id, sequence.
    buckets: Vec<(Vec<u8>, u64, u64)>,
    entries: u64,
}

impl<S: Sink> std::fmt::Debug for DbWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbWriter")
            .field("next_page", &self.next_page)
            .field("buckets", &self.buckets.len())
            .finish_non_exhaustive()
    }
}

fn misuse(reason: impl Into<String>) -> Error {
    Error::Write {
        reason: reason.into(),
    }
}

impl<S: Sink> DbWriter<S> {
    /// A writer of a new database into `sink` (which should be empty).
    pub fn new(sink: S) -> Self {
        let page_size = WRITE_PAGE_SIZE;
        Self {
            sink,
            page_size,
            next_page: FIRST_DATA_PAGE,
            buf: Vec::with_capacity(BATCH + page_size),
            buf_start: FIRST_DATA_PAGE * page_size as u64,
            current: None,
            buckets: Vec::new(),
            entries: 0,
        }
    }

    /// Bytes written so far (pages allocated).
    pub fn bytes_so_far(&self) -> u64 {
        self.next_page * self.page_size as u64
    }

    /// Starts a top-level bucket; its entries follow in key order. Buckets
    /// may come in any order, each name once.
    pub fn begin_bucket(&mut self, name: &[u8], sequence: u64) -> Result<(), Error> {
        if let Some((open, ..)) = &self.current {
            return Err(misuse(format!(
                "bucket {} begun while bucket {} is open",
                hex(name),
                hex(open)
            )));
        }
        if name.is_empty() || self.buckets.iter().any(|(n, ..)| n == name) {
            return Err(misuse(format!(
                "bucket name {} is empty or used twice",
                hex(name)
            )));
        }
        self.current = Some((name.to_vec(), sequence, TreeBuilder::default()));
        Ok(())
    }

    /// Adds an entry to the open bucket; keys must ascend strictly.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        let Some((name, seq, mut tree)) = self.current.take() else {
            return Err(misuse("put without an open bucket"));
        };
        let result = self.tree_put(&mut tree, 0, key, value);
        self.current = Some((name, seq, tree));
        result
    }

    /// Ends the open bucket.
    pub fn end_bucket(&mut self) -> Result<(), Error> {
        let Some((name, seq, tree)) = self.current.take() else {
            return Err(misuse("end_bucket without an open bucket"));
        };
        self.entries += tree.entries;
        let root = self.tree_finish(tree)?;
        self.buckets.push((name, root, seq));
        Ok(())
    }

    /// Writes the root bucket, the freelist and the meta pages, then the
    /// SHA-256 trailer after the database. `root_sequence` is the root
    /// bucket's sequence (the source database's, usually 0).
    pub fn finish(mut self, root_sequence: u64) -> Result<Written, Error> {
        if self.current.is_some() {
            return Err(misuse("finish with a bucket still open"));
        }
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let mut tree = TreeBuilder::default();
        for (name, root, seq) in &buckets {
            let mut value = Vec::with_capacity(BUCKET_HEADER_LEN);
            value.extend(root.to_le_bytes());
            value.extend(seq.to_le_bytes());
            self.tree_put(&mut tree, BUCKET_LEAF_FLAG, name, &value)?;
        }
        self.entries += tree.entries;
        let root = self.tree_finish(tree)?;
        self.flush()?;
        let hwm = self.next_page;

        // The freelist: empty, every page is in use.
        let mut freelist = page_header(FREELIST_PAGE_ID, FREELIST_PAGE, 0, 0);
        freelist.resize(self.page_size, 0);
        self.sink
            .write_at(FREELIST_PAGE_ID * self.page_size as u64, &freelist)?;
        for (id, txid) in [(0u64, 0u64), (1, 1)] {
            let meta = self.meta_page(id, root, root_sequence, hwm, txid);
            self.sink.write_at(id * self.page_size as u64, &meta)?;
        }

        let db_bytes = hwm * self.page_size as u64;
        let sha256 = self.sink.sha256(0, db_bytes)?;
        self.sink.write_at(db_bytes, &sha256)?;
        Ok(Written {
            db_bytes,
            sha256,
            pages: hwm,
            entries: self.entries,
        })
    }

    fn meta_page(&self, id: u64, root: u64, root_seq: u64, hwm: u64, txid: u64) -> Vec<u8> {
        let mut page = page_header(id, META_PAGE, 0, 0);
        let start = page.len();
        page.extend(MAGIC.to_le_bytes());
        page.extend(VERSION.to_le_bytes());
        page.extend((self.page_size as u32).to_le_bytes());
        page.extend(0u32.to_le_bytes()); // flags
        page.extend(root.to_le_bytes());
        page.extend(root_seq.to_le_bytes());
        page.extend(FREELIST_PAGE_ID.to_le_bytes());
        page.extend(hwm.to_le_bytes());
        page.extend(txid.to_le_bytes());
        let checksum = fnv1a64(&page[start..]);
        page.extend(checksum.to_le_bytes());
        page.resize(self.page_size, 0);
        page
    }

    fn tree_put(
        &mut self,
        tree: &mut TreeBuilder,
        flags: u32,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), Error> {
        if key.is_empty() {
            return Err(misuse("empty key"));
        }
        if let Some(last) = &tree.last_key
            && key <= last.as_slice()
        {
            return Err(misuse(format!(
                "key {} does not follow key {} (keys must ascend)",
                hex(key),
                hex(last)
            )));
        }
        let size = ELEMENT_LEN + key.len() + value.len();
        if !tree.leaf.is_empty() && tree.leaf_size + size > self.page_size {
            self.flush_leaf(tree)?;
        }
        if tree.leaf.is_empty() {
            tree.leaf_size = PAGE_HEADER_LEN;
        }
        tree.leaf.push((flags, key.to_vec(), value.to_vec()));
        tree.leaf_size += size;
        tree.last_key = Some(key.to_vec());
        tree.entries += 1;
        Ok(())
    }

    fn flush_leaf(&mut self, tree: &mut TreeBuilder) -> Result<(), Error> {
        let elems = std::mem::take(&mut tree.leaf);
        let Some(first) = elems.first().map(|(_, k, _)| k.clone()) else {
            return Ok(());
        };
        let count = elems.len();
        let mut body = Vec::with_capacity(tree.leaf_size);
        let mut data_len = 0usize;
        let data_start = PAGE_HEADER_LEN + count * ELEMENT_LEN;
        let mut header = Vec::with_capacity(count * ELEMENT_LEN);
        for (i, (flags, k, v)) in elems.iter().enumerate() {
            let elem_at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
            let pos = data_start + data_len - elem_at;
            for word in [*flags, to_u32(pos)?, to_u32(k.len())?, to_u32(v.len())?] {
                header.extend(word.to_le_bytes());
            }
            data_len += k.len() + v.len();
        }
        body.extend(header);
        for (_, k, v) in &elems {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
        }
        let id = self.write_node(LEAF_PAGE, count, body)?;
        tree.leaf_size = 0;
        self.add_child(tree, 0, first, id)
    }

    /// Records `(first key, page)` at branch level `level`, writing that
    /// level's branch page first if it is full.
    fn add_child(
        &mut self,
        tree: &mut TreeBuilder,
        level: usize,
        key: Vec<u8>,
        page: u64,
    ) -> Result<(), Error> {
        if tree.levels.len() <= level {
            tree.levels.push(Vec::new());
        }
        let size = |l: &Vec<(Vec<u8>, u64)>| {
            PAGE_HEADER_LEN + l.iter().map(|(k, _)| ELEMENT_LEN + k.len()).sum::<usize>()
        };
        let full = {
            let l = &tree.levels[level];
            !l.is_empty() && size(l) + ELEMENT_LEN + key.len() > self.page_size
        };
        if full {
            let children = std::mem::take(&mut tree.levels[level]);
            let (first, id) = self.write_branch(children)?;
            self.add_child(tree, level + 1, first, id)?;
        }
        tree.levels[level].push((key, page));
        Ok(())
    }

    fn write_branch(&mut self, children: Vec<(Vec<u8>, u64)>) -> Result<(Vec<u8>, u64), Error> {
        let first = children
            .first()
            .map(|(k, _)| k.clone())
            .ok_or_else(|| misuse("branch without children"))?;
        let count = children.len();
        let data_start = PAGE_HEADER_LEN + count * ELEMENT_LEN;
        let mut body = Vec::new();
        let mut data_len = 0usize;
        for (i, (k, child)) in children.iter().enumerate() {
            let elem_at = PAGE_HEADER_LEN + i * ELEMENT_LEN;
            body.extend(to_u32(data_start + data_len - elem_at)?.to_le_bytes());
            body.extend(to_u32(k.len())?.to_le_bytes());
            body.extend(child.to_le_bytes());
            data_len += k.len();
        }
        for (k, _) in &children {
            body.extend_from_slice(k);
        }
        let id = self.write_node(BRANCH_PAGE, count, body)?;
        Ok((first, id))
    }

    /// Ends a tree and returns its root page id.
    fn tree_finish(&mut self, mut tree: TreeBuilder) -> Result<u64, Error> {
        if tree.leaf.is_empty() && tree.levels.is_empty() {
            // An empty bucket: one empty leaf.
            return self.write_node(LEAF_PAGE, 0, Vec::new());
        }
        self.flush_leaf(&mut tree)?;
        let mut level = 0;
        loop {
            let top = level + 1 == tree.levels.len();
            let children = std::mem::take(&mut tree.levels[level]);
            if top && children.len() == 1 {
                return children
                    .first()
                    .map(|(_, id)| *id)
                    .ok_or_else(|| misuse("tree without a root"));
            }
            let (first, id) = self.write_branch(children)?;
            self.add_child(&mut tree, level + 1, first, id)?;
            level += 1;
        }
    }

    /// Writes one node (header + `body`), padded to whole pages, and
    /// returns its page id.
    fn write_node(&mut self, flags: u16, count: usize, body: Vec<u8>) -> Result<u64, Error> {
        let id = self.next_page;
        let len = PAGE_HEADER_LEN + body.len();
        let pages = len.div_ceil(self.page_size).max(1);
        let count =
            u16::try_from(count).map_err(|_| misuse("more than 65535 elements in a page"))?;
        let overflow = to_u32(pages - 1)?;
        self.buf.extend(page_header(id, flags, count, overflow));
        self.buf.extend(body);
        self.buf
            .resize(self.buf.len() + pages * self.page_size - len, 0);
        self.next_page += pages as u64;
        if self.buf.len() >= BATCH {
            self.flush()?;
        }
        Ok(id)
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.sink.write_at(self.buf_start, &self.buf)?;
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

fn to_u32(n: usize) -> Result<u32, Error> {
    u32::try_from(n).map_err(|_| misuse(format!("{n} does not fit in a page field")))
}

fn page_header(id: u64, flags: u16, count: u16, overflow: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAGE_HEADER_LEN);
    p.extend(id.to_le_bytes());
    p.extend(flags.to_le_bytes());
    p.extend(count.to_le_bytes());
    p.extend(overflow.to_le_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Db;
    use proptest::prelude::*;
    use sha2::{Digest as _, Sha256};

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(buckets: &[(&[u8], Entries)]) -> (Vec<u8>, Written) {
        let mut out = Vec::new();
        let mut w = DbWriter::new(&mut out);
        for (name, entries) in buckets {
            w.begin_bucket(name, 0).unwrap();
            for (k, v) in entries {
                w.put(k, v).unwrap();
            }
            w.end_bucket().unwrap();
        }
        let written = w.finish(0).unwrap();
        (out, written)
    }

    fn read_all(db: &Db<&[u8]>, name: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let b = db.bucket(name).unwrap().unwrap();
        db.iter(&b)
            .map(|e| e.map(|e| (e.key, e.value)).unwrap())
            .collect()
    }

    #[test]
    fn deep_trees_with_overflow_read_back_and_pass_the_check() {
        let many: Vec<_> = (0..20_000u32)
            .map(|i| {
                (
                    format!("key-{i:08}").into_bytes(),
                    vec![(i % 251) as u8; (i % 97) as usize],
                )
            })
            .collect();
        let big: Vec<_> = (0..5u8).map(|i| (vec![i + 1], vec![i; 70_000])).collect();
        let (out, written) = build(&[
            (b"key", many.clone()),
            (b"big", big.clone()),
            (b"empty", vec![]),
        ]);
        assert_eq!(out.len() as u64, written.db_bytes + 32);
        assert_eq!(
            &out[written.db_bytes as usize..],
            Sha256::digest(&out[..written.db_bytes as usize]).as_slice()
        );
        let db = Db::open(&out[..written.db_bytes as usize]).unwrap();
        let report = db.check().unwrap();
        assert_eq!(report.buckets, 3, "{report:?}");
        assert_eq!(report.keys, 20_005, "{report:?}");
        assert_eq!(
            (report.free_pages, report.unreachable_pages),
            (0, 0),
            "no page wasted: {report:?}"
        );
        assert_eq!(read_all(&db, b"key"), many);
        assert_eq!(read_all(&db, b"big"), big);
        assert!(read_all(&db, b"empty").is_empty());
        assert_eq!(
            db.buckets().unwrap(),
            vec![b"big".to_vec(), b"empty".to_vec(), b"key".to_vec()]
        );
        assert_eq!(
            db.get(&db.bucket(b"key").unwrap().unwrap(), b"key-00012345")
                .unwrap()
                .unwrap()
                .value,
            many[12345].1
        );
    }

    #[test]
    fn misuse_is_an_error() {
        let mut out = Vec::new();
        let mut w = DbWriter::new(&mut out);
        assert!(w.put(b"a", b"b").is_err());
        w.begin_bucket(b"x", 0).unwrap();
        assert!(w.begin_bucket(b"y", 0).is_err());
        w.put(b"b", b"1").unwrap();
        assert!(
            w.put(b"a", b"1")
                .unwrap_err()
                .to_string()
                .contains("ascend")
        );
        assert!(w.put(b"b", b"1").is_err());
        w.end_bucket().unwrap();
        assert!(w.begin_bucket(b"x", 0).is_err(), "a name twice");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        /// Whatever sorted entries go in come out, in a database that
        /// passes the same check bbolt does.
        #[test]
        fn written_databases_read_back(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..40),
                proptest::collection::vec(any::<u8>(), 0..6000),
                0..300,
            )
        ) {
            let entries: Vec<_> = entries.into_iter().collect();
            let (out, written) = build(&[(b"b", entries.clone())]);
            let db = Db::open(&out[..written.db_bytes as usize]).unwrap();
            prop_assert!(db.check().is_ok());
            prop_assert_eq!(read_all(&db, b"b"), entries);
        }
    }
}
