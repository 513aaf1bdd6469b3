//! Opening a database, buckets, lookups and iteration.

use crate::page::{
    Loc, MAX_PAGE_SIZE, META_LEN, MIN_PAGE_SIZE, NO_FREELIST, PAGE_HEADER_LEN, Page, RawMeta,
    le_u32, le_u64, parse_bucket_value, parse_meta,
};
use crate::{Error, ReadAt, hex};

/// Deepest B+tree the reader follows (per bucket). bbolt's trees are a few
/// levels deep; a deeper one is corrupt (or a cycle).
pub const MAX_DEPTH: usize = 64;

/// Largest page (with its overflow pages) the reader loads into memory:
/// 256 MiB. etcd's values are limited to a few MiB by its request size
/// limit and a freelist of an 8 GiB database is 16 MiB, so a larger page is
/// a corrupt overflow count rather than data.
pub const MAX_PAGE_BYTES: u64 = 256 << 20;

/// The meta page in use: the valid one of pages 0 and 1 with the highest
/// transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Which meta page (0 or 1) this is.
    pub page: u64,
    /// The page size of the file.
    pub page_size: u32,
    /// The meta's flags (unused by bbolt).
    pub flags: u32,
    /// Root page of the root bucket (which holds the top-level buckets).
    pub root: u64,
    /// The root bucket's sequence.
    pub sequence: u64,
    /// The freelist page, `None` when the freelist is not persisted
    /// (bbolt's `NoFreelistSync`).
    pub freelist: Option<u64>,
    /// The high-water mark: the number of pages in use, i.e. the database
    /// ends at `high_water_mark * page_size`.
    pub high_water_mark: u64,
    /// The id of the transaction that wrote this meta.
    pub txid: u64,
}

/// A read-only bbolt database.
pub struct Db<R> {
    reader: R,
    meta: Meta,
    size: u64,
    other_meta: Result<Meta, String>,
}

impl<R> std::fmt::Debug for Db<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("meta", &self.meta)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// A bucket: its root page (or, for an inline bucket, the page stored in
/// its value) and sequence. Cheap to clone for disk buckets; an inline
/// bucket carries its page (less than a quarter of a page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    root: u64,
    sequence: u64,
    inline: Option<Vec<u8>>,
    /// The page that holds the bucket's value (for messages).
    parent: u64,
}

impl Bucket {
    /// The root page id, `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        (self.inline.is_none()).then_some(self.root)
    }

    /// The bucket's sequence (bbolt's `NextSequence` counter).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Whether the bucket is stored inline in its parent's leaf.
    pub fn is_inline(&self) -> bool {
        self.inline.is_some()
    }

    /// Parses a bucket value as found in a leaf (an [`Entry`] with
    /// `is_bucket`): a 16-byte header `{root pgid, sequence}` followed, when
    /// root is 0, by the inline bucket's page.
    pub fn from_value(value: &[u8]) -> Result<Bucket, Error> {
        Self::parse(Loc::Inline(0), b"", value)
    }

    fn parse(loc: Loc, key: &[u8], value: &[u8]) -> Result<Bucket, Error> {
        let v = parse_bucket_value(loc, key, value)?;
        Ok(Bucket {
            root: v.root,
            sequence: v.sequence,
            inline: v.inline.map(<[u8]>::to_vec),
            parent: loc.id(),
        })
    }
}

/// A key and its value from a bucket's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: Vec<u8>,
    /// The value; for a nested bucket, the raw bucket value (see
    /// [`Bucket::from_value`]).
    pub value: Vec<u8>,
    /// Whether the value is a nested bucket.
    pub is_bucket: bool,
}

impl Entry {
    /// The nested bucket, if this entry is one.
    pub fn bucket(&self) -> Result<Option<Bucket>, Error> {
        if self.is_bucket {
            Bucket::parse(Loc::Inline(0), &self.key, &self.value).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn read_meta<R: ReadAt>(reader: &R, size: u64, page_size: u64, id: u64) -> Result<RawMeta, String> {
    let offset = page_size * id;
    let len = (PAGE_HEADER_LEN + META_LEN) as u64;
    if offset.saturating_add(len) > size {
        return Err(format!(
            "the {size}-byte file ends before offset {}",
            offset.saturating_add(len)
        ));
    }
    let mut buf = [0u8; PAGE_HEADER_LEN + META_LEN];
    reader
        .read_at(offset, &mut buf)
        .map_err(|e| e.to_string())?;
    parse_meta(&buf, id)
}

fn to_meta(raw: RawMeta, page: u64) -> Meta {
    Meta {
        page,
        page_size: raw.page_size,
        flags: raw.flags,
        root: raw.root,
        sequence: raw.sequence,
        freelist: (raw.freelist != NO_FREELIST).then_some(raw.freelist),
        high_water_mark: raw.pgid,
        txid: raw.txid,
    }
}

impl<R: ReadAt> Db<R> {
    /// Opens the database in `reader`: reads both meta pages (page 1 at the
    /// page size meta 0 names, or, if meta 0 is damaged, at the page size
    /// that makes meta 1 valid) and uses the valid one with the highest
    /// transaction id, as bbolt does.
    ///
    /// Errors: no valid meta page ([`Error::NoValidMeta`]), or a source
    /// shorter than the pages the meta counts ([`Error::TooShort`]). Bytes
    /// after the last page (a snapshot's SHA-256 trailer, a live file's
    /// preallocated space) are ignored.
    pub fn open(reader: R) -> Result<Self, Error> {
        let size = reader.size()?;
        let needed = (PAGE_HEADER_LEN + META_LEN) as u64;
        if size < needed {
            return Err(Error::TooShort {
                len: size,
                needed,
                what: "the first meta page".into(),
            });
        }
        let m0 = read_meta(&reader, size, 0, 0);
        let m1 = match &m0 {
            Ok(m) => read_meta(&reader, size, u64::from(m.page_size), 1).and_then(|m1| {
                if m1.page_size == m.page_size {
                    Ok(m1)
                } else {
                    Err(format!(
                        "page size {} differs from meta 0's {}",
                        m1.page_size, m.page_size
                    ))
                }
            }),
            Err(_) => {
                // As bbolt: find the page size at which meta 1 is valid.
                let mut ps = MIN_PAGE_SIZE;
                let mut found = Err(format!(
                    "no valid meta at any page size {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}"
                ));
                while ps <= MAX_PAGE_SIZE {
                    if let Ok(m) = read_meta(&reader, size, u64::from(ps), 1)
                        && m.page_size == ps
                    {
                        found = Ok(m);
                        break;
                    }
                    ps *= 2;
                }
                found
            }
        };
        let (meta, other) = match (m0, m1) {
            (Ok(a), Ok(b)) if b.txid > a.txid => (to_meta(b, 1), Ok(to_meta(a, 0))),
            (Ok(a), Ok(b)) => (to_meta(a, 0), Ok(to_meta(b, 1))),
            (Ok(a), Err(e)) => (to_meta(a, 0), Err(e)),
            (Err(e), Ok(b)) => (to_meta(b, 1), Err(e)),
            (Err(meta0), Err(meta1)) => return Err(Error::NoValidMeta { meta0, meta1 }),
        };
        let needed = meta
            .high_water_mark
            .saturating_mul(u64::from(meta.page_size));
        if needed > size {
            return Err(Error::TooShort {
                len: size,
                needed,
                what: format!(
                    "meta page {} (txid {}), counting {} pages of {} bytes,",
                    meta.page, meta.txid, meta.high_water_mark, meta.page_size
                ),
            });
        }
        if meta.high_water_mark < 2 {
            return Err(Loc::Disk(meta.page).err(format!(
                "high-water mark {} is below the two meta pages",
                meta.high_water_mark
            )));
        }
        Ok(Self {
            reader,
            meta,
            size,
            other_meta: other,
        })
    }

    /// The meta page in use.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The other meta page: the older one, or why it is invalid.
    pub fn other_meta(&self) -> Result<&Meta, &str> {
        self.other_meta.as_ref().map_err(String::as_str)
    }

    /// The page size.
    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// The length of the database in bytes: high-water mark times page
    /// size (the source may be longer).
    pub fn len_bytes(&self) -> u64 {
        self.meta.high_water_mark * u64::from(self.meta.page_size)
    }

    /// The size of the source the database was opened on.
    pub fn source_size(&self) -> u64 {
        self.size
    }

    /// The source.
    pub fn reader(&self) -> &R {
        &self.reader
    }

    /// Gives the source back.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Reads page `id` and its overflow pages, checking that it lies below
    /// the high-water mark and that its header carries its id.
    pub(crate) fn read_page(&self, id: u64) -> Result<Page, Error> {
        let loc = Loc::Disk(id);
        let hwm = self.meta.high_water_mark;
        if id < 2 {
            return Err(loc.err("a meta page is referenced as a data page"));
        }
        if id >= hwm {
            return Err(loc.err(format!("beyond the high-water mark {hwm}")));
        }
        let ps = u64::from(self.meta.page_size);
        let mut data = vec![0u8; self.meta.page_size as usize];
        self.reader.read_at(id * ps, &mut data)?;
        let overflow = le_u32(&data, 12).unwrap_or(0);
        let end = id.saturating_add(u64::from(overflow)).saturating_add(1);
        if end > hwm {
            return Err(loc.err(format!(
                "{overflow} overflow pages run past the high-water mark {hwm}"
            )));
        }
        if overflow > 0 {
            let total = (u64::from(overflow) + 1) * ps;
            let total = usize::try_from(total)
                .ok()
                .filter(|_| total <= MAX_PAGE_BYTES)
                .ok_or_else(|| {
                    loc.err(format!(
                        "{overflow} overflow pages make {total} bytes, more than the \
                         reader's limit of {MAX_PAGE_BYTES}"
                    ))
                })?;
            data.resize(total, 0);
            let first = self.meta.page_size as usize;
            self.reader.read_at((id + 1) * ps, &mut data[first..])?;
        }
        let page = Page::parse(loc, data)?;
        if page.id != id {
            return Err(loc.err(format!("page header carries id {}", page.id)));
        }
        Ok(page)
    }

    /// Loads a node page of a bucket tree: `id` is on no page of `path`
    /// (no cycle), `path` is shorter than [`MAX_DEPTH`], the page is a
    /// branch or leaf page whose element array fits, and a page below the
    /// root has at least one element.
    fn read_node(&self, id: u64, path: &[u64]) -> Result<Page, Error> {
        if path.contains(&id) {
            return Err(Loc::Disk(id).err(format!(
                "cycle: the page is its own ancestor (path {path:?})"
            )));
        }
        if path.len() >= MAX_DEPTH {
            return Err(Loc::Disk(id).err(format!("tree deeper than {MAX_DEPTH} levels")));
        }
        let page = self.read_page(id)?;
        page.check_node()?;
        if page.count == 0 && !path.is_empty() {
            return Err(page.err(format!(
                "empty page below the root (referenced from page {})",
                path.last().copied().unwrap_or_default()
            )));
        }
        Ok(page)
    }

    /// The root page of `bucket`.
    fn bucket_root(&self, bucket: &Bucket) -> Result<Page, Error> {
        match &bucket.inline {
            Some(bytes) => {
                let page = Page::parse(Loc::Inline(bucket.parent), bytes.clone())?;
                page.check_node()?;
                if !page.is_leaf() {
                    return Err(page.err("an inline bucket's page is not a leaf"));
                }
                Ok(page)
            }
            None => self.read_node(bucket.root, &[]),
        }
    }

    /// The root bucket, which holds the top-level buckets.
    pub fn root(&self) -> Bucket {
        Bucket {
            root: self.meta.root,
            sequence: self.meta.sequence,
            inline: None,
            parent: self.meta.page,
        }
    }

    /// The top-level bucket `name`; `None` if there is none (or `name` is a
    /// plain key).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket>, Error> {
        self.bucket_in(&self.root(), name)
    }

    /// The bucket `name` nested in `parent`; `None` if there is none (or
    /// `name` is a plain key).
    pub fn bucket_in(&self, parent: &Bucket, name: &[u8]) -> Result<Option<Bucket>, Error> {
        match self.find(parent, name)? {
            Some((page, i)) => {
                let e = page.leaf(i)?;
                if e.is_bucket() {
                    Bucket::parse(page.loc, e.key, e.value).map(Some)
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        }
    }

    /// The names of the buckets nested in `parent`, in order.
    pub fn bucket_names(&self, parent: &Bucket) -> Result<Vec<Vec<u8>>, Error> {
        let mut names = Vec::new();
        for entry in self.iter(parent) {
            let entry = entry?;
            if entry.is_bucket {
                names.push(entry.key);
            }
        }
        Ok(names)
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.bucket_names(&self.root())
    }

    /// The entry for `key` in `bucket` (a value or a nested bucket), if any.
    pub fn get(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<Entry>, Error> {
        match self.find(bucket, key)? {
            Some((page, i)) => {
                let e = page.leaf(i)?;
                Ok(Some(Entry {
                    key: e.key.to_vec(),
                    value: e.value.to_vec(),
                    is_bucket: e.is_bucket(),
                }))
            }
            None => Ok(None),
        }
    }

    /// Descends to the leaf that would hold `key`; the leaf and the index of
    /// `key` if it is there.
    fn find(&self, bucket: &Bucket, key: &[u8]) -> Result<Option<(Page, usize)>, Error> {
        let mut page = self.bucket_root(bucket)?;
        let mut path = Vec::new();
        loop {
            // First index whose key is >= `key`.
            let (mut lo, mut hi) = (0usize, page.count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if page.key(mid)? < key {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if page.is_leaf() {
                if lo < page.count && page.key(lo)? == key {
                    return Ok(Some((page, lo)));
                }
                return Ok(None);
            }
            // Branch: the child whose first key is the last one <= `key`.
            let exact = lo < page.count && page.key(lo)? == key;
            let index = if exact { lo } else { lo.saturating_sub(1) };
            if page.count == 0 {
                return Ok(None);
            }
            let child = page.branch(index)?.child;
            path.push(page.id);
            page = self.read_node(child, &path)?;
        }
    }

    /// The last (greatest) entry of `bucket`, `None` if it is empty.
    pub fn last(&self, bucket: &Bucket) -> Result<Option<Entry>, Error> {
        let mut page = self.bucket_root(bucket)?;
        let mut path = Vec::new();
        while page.is_branch() {
            let Some(last) = page.count.checked_sub(1) else {
                return Ok(None);
            };
            let child = page.branch(last)?.child;
            path.push(page.id);
            page = self.read_node(child, &path)?;
        }
        let Some(last) = page.count.checked_sub(1) else {
            return Ok(None);
        };
        let e = page.leaf(last)?;
        Ok(Some(Entry {
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            is_bucket: e.is_bucket(),
        }))
    }

    /// Iterates over `bucket`'s entries (values and nested buckets) in key
    /// order, streaming: it holds one root-to-leaf path of pages.
    ///
    /// The iterator checks as it goes that keys ascend strictly and that no
    /// page is visited more often than the database has pages (so a cycle
    /// or a shared subtree ends in an error, not a loop). After an error it
    /// ends.
    pub fn iter(&self, bucket: &Bucket) -> Iter<'_, R> {
        Iter {
            db: self,
            bucket: Some(bucket.clone()),
            stack: Vec::new(),
            last_key: None,
            visits: 0,
            done: false,
        }
    }

    /// Reads the freelist page: the ids it lists (unchecked) and the
    /// freelist page itself.
    pub(crate) fn read_freelist(&self, id: u64) -> Result<(Page, Vec<u64>), Error> {
        let page = self.read_page(id)?;
        if page.flags != crate::page::FREELIST_PAGE {
            return Err(page.err(format!(
                "the meta's freelist page is a {} page",
                crate::page::page_type(page.flags)
            )));
        }
        // A count of 0xFFFF means the real count is the first u64.
        let (count, start) = if page.count == 0xFFFF {
            let n = le_u64(&page.data, PAGE_HEADER_LEN)
                .ok_or_else(|| page.err("freelist count does not fit in the page"))?;
            (n, PAGE_HEADER_LEN + 8)
        } else {
            (page.count as u64, PAGE_HEADER_LEN)
        };
        let room = (page.data.len().saturating_sub(start) / 8) as u64;
        if count > room {
            return Err(page.err(format!(
                "freelist of {count} ids does not fit in the {}-byte page",
                page.data.len()
            )));
        }
        let ids = (0..count as usize)
            .map(|i| le_u64(&page.data, start + i * 8).unwrap_or(0))
            .collect();
        Ok((page, ids))
    }

    /// The high-water mark.
    pub(crate) fn hwm(&self) -> u64 {
        self.meta.high_water_mark
    }
}

/// A streaming iterator over a bucket's entries in key order (see
/// [`Db::iter`]).
pub struct Iter<'a, R> {
    db: &'a Db<R>,
    bucket: Option<Bucket>,
    stack: Vec<(Page, usize)>,
    last_key: Option<Vec<u8>>,
    visits: u64,
    done: bool,
}

impl<R> std::fmt::Debug for Iter<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter")
            .field("depth", &self.stack.len())
            .field("visits", &self.visits)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: ReadAt> Iter<'_, R> {
    fn visit(&mut self) -> Result<(), Error> {
        self.visits += 1;
        // A sound tree visits each of its pages once; an inline bucket has
        // one page.
        if self.visits > self.db.hwm().max(1) {
            let at = self
                .stack
                .last()
                .map(|(p, _)| p.loc)
                .unwrap_or(Loc::Disk(0));
            return Err(at.err(format!(
                "more page visits than the database has pages ({}): a cycle or shared pages",
                self.db.hwm()
            )));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>, Error> {
        if let Some(bucket) = self.bucket.take() {
            self.visit()?;
            let root = self.db.bucket_root(&bucket)?;
            self.stack.push((root, 0));
        }
        loop {
            let Some((page, index)) = self.stack.last_mut() else {
                return Ok(None);
            };
            if *index >= page.count {
                self.stack.pop();
                continue;
            }
            let i = *index;
            *index += 1;
            if page.is_leaf() {
                let e = page.leaf(i)?;
                if let Some(prev) = &self.last_key
                    && e.key <= prev.as_slice()
                {
                    return Err(page.err(format!(
                        "element {i}: key {} does not follow the previous key {} (keys out \
                         of order, or a page reached twice)",
                        hex(e.key),
                        hex(prev)
                    )));
                }
                let entry = Entry {
                    key: e.key.to_vec(),
                    value: e.value.to_vec(),
                    is_bucket: e.is_bucket(),
                };
                self.last_key = Some(entry.key.clone());
                return Ok(Some(entry));
            }
            let child = page.branch(i)?.child;
            let path: Vec<u64> = self.stack.iter().map(|(p, _)| p.id).collect();
            self.visit()?;
            let node = self.db.read_node(child, &path)?;
            self.stack.push((node, 0));
        }
    }
}

impl<R: ReadAt> Iterator for Iter<'_, R> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}
