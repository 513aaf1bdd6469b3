//! bbolt's on-disk layout: page headers, elements, meta pages, bucket
//! values. Little-endian throughout; every access is bounds-checked.

use crate::{Error, hex};

/// Page header: id u64, flags u16, count u16, overflow u32.
pub(crate) const PAGE_HEADER_LEN: usize = 16;
/// Branch and leaf elements are both 16 bytes.
pub(crate) const ELEMENT_LEN: usize = 16;
/// The meta struct: magic, version, page size, flags, root bucket (root,
/// sequence), freelist, pgid, txid, checksum.
pub(crate) const META_LEN: usize = 64;
/// Offset of the checksum inside the meta struct (the bytes it covers).
const META_CHECKSUM_OFFSET: usize = 56;
/// Bucket value header: root pgid u64, sequence u64.
pub(crate) const BUCKET_HEADER_LEN: usize = 16;

pub(crate) const BRANCH_PAGE: u16 = 0x01;
pub(crate) const LEAF_PAGE: u16 = 0x02;
pub(crate) const META_PAGE: u16 = 0x04;
pub(crate) const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a nested bucket.
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;

pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
/// The meta's freelist id when the freelist is not persisted.
pub(crate) const NO_FREELIST: u64 = u64::MAX;
/// Smallest and largest page size accepted.
pub(crate) const MIN_PAGE_SIZE: u32 = 512;
pub(crate) const MAX_PAGE_SIZE: u32 = 1 << 20;

pub(crate) fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// FNV-1a, 64 bits (bbolt's meta checksum).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Where a page lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    /// A page of the file, by id.
    Disk(u64),
    /// An inline bucket's page, inside a value on the given page (0 if
    /// unknown).
    Inline(u64),
}

impl Loc {
    pub(crate) fn err(self, reason: impl Into<String>) -> Error {
        let (page, inline) = match self {
            Loc::Disk(p) => (p, false),
            Loc::Inline(p) => (p, true),
        };
        Error::Corrupt {
            page,
            inline,
            reason: reason.into(),
        }
    }

    /// The page id to name in messages.
    pub(crate) fn id(self) -> u64 {
        match self {
            Loc::Disk(p) | Loc::Inline(p) => p,
        }
    }
}

/// Human name of a page type.
pub(crate) fn page_type(flags: u16) -> String {
    match flags {
        BRANCH_PAGE => "branch".into(),
        LEAF_PAGE => "leaf".into(),
        META_PAGE => "meta".into(),
        FREELIST_PAGE => "freelist".into(),
        f => format!("unknown type {f:#06x}"),
    }
}

/// One page (with its overflow pages) in memory.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) loc: Loc,
    /// The id in the header (0 for inline pages).
    pub(crate) id: u64,
    pub(crate) flags: u16,
    pub(crate) count: usize,
    pub(crate) overflow: u32,
    pub(crate) data: Vec<u8>,
}

/// A leaf element: flags, key and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeafElem<'a> {
    pub(crate) flags: u32,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

impl LeafElem<'_> {
    pub(crate) fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

/// A branch element: the first key of the child and the child's id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BranchElem<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) child: u64,
}

impl Page {
    /// Parses the header of `data` (which holds the whole page).
    pub(crate) fn parse(loc: Loc, data: Vec<u8>) -> Result<Page, Error> {
        let (Some(id), Some(flags), Some(count), Some(overflow)) = (
            le_u64(&data, 0),
            le_u16(&data, 8),
            le_u16(&data, 10),
            le_u32(&data, 12),
        ) else {
            return Err(loc.err(format!("{} bytes, shorter than a page header", data.len())));
        };
        Ok(Page {
            loc,
            id,
            flags,
            count: usize::from(count),
            overflow,
            data,
        })
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.flags == LEAF_PAGE
    }

    pub(crate) fn is_branch(&self) -> bool {
        self.flags == BRANCH_PAGE
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> Error {
        self.loc.err(reason)
    }

    /// Checks that this is a branch or leaf page whose element array fits.
    pub(crate) fn check_node(&self) -> Result<(), Error> {
        if !self.is_leaf() && !self.is_branch() {
            return Err(self.err(format!(
                "expected a branch or leaf page, found {}",
                page_type(self.flags)
            )));
        }
        let end = PAGE_HEADER_LEN + self.count * ELEMENT_LEN;
        if end > self.data.len() {
            return Err(self.err(format!(
                "{} elements of {ELEMENT_LEN} bytes do not fit in a {}-byte page",
                self.count,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// The element array's entry `i` as (u32, u32, u32) words 0..3 and the
    /// element's offset.
    fn element(&self, i: usize) -> Result<(usize, [u32; 4]), Error> {
        let off = i
            .checked_mul(ELEMENT_LEN)
            .and_then(|o| o.checked_add(PAGE_HEADER_LEN))
            .filter(|_| i < self.count);
        let words = off.and_then(|off| {
            Some((
                off,
                [
                    le_u32(&self.data, off)?,
                    le_u32(&self.data, off + 4)?,
                    le_u32(&self.data, off + 8)?,
                    le_u32(&self.data, off + 12)?,
                ],
            ))
        });
        words.ok_or_else(|| {
            self.err(format!(
                "element {i} is outside the element array ({} elements, {} bytes)",
                self.count,
                self.data.len()
            ))
        })
    }

    /// The slice `pos..pos + len` relative to the element at `base`.
    fn span(&self, i: usize, base: usize, pos: u32, len: u32, what: &str) -> Result<&[u8], Error> {
        let start = base.checked_add(pos as usize);
        let end = start.and_then(|s| s.checked_add(len as usize));
        match (start, end) {
            (Some(s), Some(e)) if e <= self.data.len() => Ok(&self.data[s..e]),
            _ => Err(self.err(format!(
                "element {i}: {what} of {len} bytes at position {pos} from the element \
                 (offset {base}) lies outside the {}-byte page",
                self.data.len()
            ))),
        }
    }

    /// Leaf element `i`.
    pub(crate) fn leaf(&self, i: usize) -> Result<LeafElem<'_>, Error> {
        let (off, [flags, pos, ksize, vsize]) = self.element(i)?;
        let kv = self.span(i, off, pos, ksize.saturating_add(vsize), "key and value")?;
        if u64::from(ksize) + u64::from(vsize) > kv.len() as u64 {
            return Err(self.err(format!("element {i}: key and value sizes overflow")));
        }
        let (key, value) = kv.split_at(ksize as usize);
        Ok(LeafElem { flags, key, value })
    }

    /// Branch element `i`.
    pub(crate) fn branch(&self, i: usize) -> Result<BranchElem<'_>, Error> {
        let (off, [pos, ksize, lo, hi]) = self.element(i)?;
        let key = self.span(i, off, pos, ksize, "key")?;
        Ok(BranchElem {
            key,
            child: u64::from(lo) | (u64::from(hi) << 32),
        })
    }

    /// Key of element `i`, leaf or branch.
    pub(crate) fn key(&self, i: usize) -> Result<&[u8], Error> {
        if self.is_branch() {
            Ok(self.branch(i)?.key)
        } else {
            Ok(self.leaf(i)?.key)
        }
    }
}

/// A bucket value's header and, for an inline bucket, its page bytes.
pub(crate) struct BucketValue<'a> {
    pub(crate) root: u64,
    pub(crate) sequence: u64,
    pub(crate) inline: Option<&'a [u8]>,
}

/// Parses a bucket value (`root pgid u64, sequence u64`, then the inline
/// page when root is 0).
pub(crate) fn parse_bucket_value<'a>(
    loc: Loc,
    key: &[u8],
    value: &'a [u8],
) -> Result<BucketValue<'a>, Error> {
    let (Some(root), Some(sequence)) = (le_u64(value, 0), le_u64(value, 8)) else {
        return Err(loc.err(format!(
            "bucket {}: value of {} bytes is shorter than a bucket header",
            hex(key),
            value.len()
        )));
    };
    let inline = if root == 0 {
        let page = value.get(BUCKET_HEADER_LEN..).unwrap_or_default();
        if page.len() < PAGE_HEADER_LEN {
            return Err(loc.err(format!(
                "inline bucket {}: value of {} bytes has no room for its page",
                hex(key),
                value.len()
            )));
        }
        Some(page)
    } else {
        None
    };
    Ok(BucketValue {
        root,
        sequence,
        inline,
    })
}

/// A parsed meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMeta {
    pub(crate) page_size: u32,
    pub(crate) flags: u32,
    pub(crate) root: u64,
    pub(crate) sequence: u64,
    pub(crate) freelist: u64,
    pub(crate) pgid: u64,
    pub(crate) txid: u64,
}

/// Parses and validates meta page `id` from `buf` (page header plus meta
/// struct). The error is the reason the meta is invalid.
pub(crate) fn parse_meta(buf: &[u8], id: u64) -> Result<RawMeta, String> {
    let short = || format!("{} bytes, shorter than a meta page", buf.len());
    let page_id = le_u64(buf, 0).ok_or_else(short)?;
    let flags = le_u16(buf, 8).ok_or_else(short)?;
    let m = buf
        .get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + META_LEN)
        .ok_or_else(short)?;
    let word32 = |off| le_u32(m, off).ok_or_else(short);
    let word64 = |off| le_u64(m, off).ok_or_else(short);
    let magic = word32(0)?;
    if magic != MAGIC {
        return Err(format!(
            "magic {magic:#010x}, not a bbolt file ({MAGIC:#010x})"
        ));
    }
    let version = word32(4)?;
    if version != VERSION {
        return Err(format!("version {version}, not {VERSION}"));
    }
    let checksum = word64(META_CHECKSUM_OFFSET)?;
    let sum = fnv1a64(&m[..META_CHECKSUM_OFFSET]);
    if checksum != sum {
        return Err(format!(
            "checksum {checksum:#018x} does not match the meta's {sum:#018x}"
        ));
    }
    if flags & META_PAGE == 0 {
        return Err(format!("page type is {}, not meta", page_type(flags)));
    }
    if page_id != id {
        return Err(format!("page header says page {page_id}"));
    }
    let meta = RawMeta {
        page_size: word32(8)?,
        flags: word32(12)?,
        root: word64(16)?,
        sequence: word64(24)?,
        freelist: word64(32)?,
        pgid: word64(40)?,
        txid: word64(48)?,
    };
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&meta.page_size) {
        return Err(format!(
            "page size {} outside {MIN_PAGE_SIZE}..={MAX_PAGE_SIZE}",
            meta.page_size
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn leaf_page(elems: &[(u32, u32, u32, u32)], tail: &[u8]) -> Page {
        let mut data = vec![0u8; PAGE_HEADER_LEN];
        data[8..10].copy_from_slice(&LEAF_PAGE.to_le_bytes());
        data[10..12].copy_from_slice(&(elems.len() as u16).to_le_bytes());
        for (f, p, k, v) in elems {
            for w in [f, p, k, v] {
                data.extend(w.to_le_bytes());
            }
        }
        data.extend(tail);
        Page::parse(Loc::Disk(7), data).unwrap()
    }

    #[test]
    fn leaf_elements_are_bounds_checked() {
        // One element, key "ab" and value "c" right after the array.
        let p = leaf_page(&[(0, 16, 2, 1)], b"abc");
        p.check_node().unwrap();
        let e = p.leaf(0).unwrap();
        assert_eq!((e.key, e.value), (&b"ab"[..], &b"c"[..]));
        assert!(p.leaf(1).is_err());

        let p = leaf_page(&[(0, 16, 2, 2)], b"abc");
        let err = p.leaf(0).unwrap_err().to_string();
        assert!(err.contains("page 7") && err.contains("outside"), "{err}");

        let p = leaf_page(&[(0, u32::MAX, u32::MAX, u32::MAX)], b"abc");
        assert!(p.leaf(0).is_err());
        assert!(p.branch(0).is_err());
    }

    #[test]
    fn absurd_counts_are_rejected() {
        let mut p = leaf_page(&[], b"");
        p.count = 0xffff;
        let err = p.check_node().unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
        assert!(p.leaf(5).is_err());
    }

    #[test]
    fn short_pages_and_values_are_errors() {
        assert!(Page::parse(Loc::Disk(3), vec![0; 15]).is_err());
        assert!(parse_bucket_value(Loc::Disk(3), b"k", &[0; 15]).is_err());
        assert!(parse_bucket_value(Loc::Disk(3), b"k", &[0; 20]).is_err());
        let v = parse_bucket_value(Loc::Disk(3), b"k", &[0; 32]).unwrap();
        assert_eq!(v.inline.map(<[u8]>::len), Some(16));
    }
}
