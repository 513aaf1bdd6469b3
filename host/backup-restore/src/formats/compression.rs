//! Compression of snapshot objects, as the upstream sidecar applies it.
//!
//! Full and delta snapshots are compressed as a whole before upload and the
//! algorithm is recorded only in the object name's suffix:
//!
//! | [`Compression`] | suffix  | policy name | format                                  |
//! |-----------------|---------|-------------|-----------------------------------------|
//! | `None`          | (none)  | (none)      | stored as is                            |
//! | `Gzip`          | `.gz`   | `gzip`      | RFC 1952 (the upstream default)         |
//! | `Zlib`          | `.zlib` | `zlib`      | RFC 1950                                |
//! | `Lzw`           | `.Z`    | `lzw`       | Go `compress/lzw`, LSB order, 8-bit literals |
//!
//! # LZW compatibility
//!
//! Go's `compress/lzw` in LSB order with 8-bit literals is the GIF flavour
//! of LZW: 9- to 12-bit codes packed least significant bit first, clear
//! code 256, end code 257, the code width grows when the next code no longer
//! fits (no "early change" as in TIFF), and the encoder sends a clear code
//! when the 12-bit table is full. [`weezl`] implements that flavour
//! (`BitOrder::Lsb`, size 8). The tests pin it against Go 1.26's
//! `compress/lzw`:
//!
//! - small inputs encode byte-identically (both writers start with a clear
//!   code);
//! - a 16 KiB Go stream that fills and resets the code table decodes;
//! - on that input `weezl`'s stream equals Go's up to the first table reset
//!   and then differs only in the moment the full table is reset; Go's
//!   reader decodes it (checked with Go when this was written; the test
//!   pins the stream's hash so that a `weezl` change is noticed);
//! - the older, clear-code-less vectors of Go's reader tests decode too.

use std::io::{self, BufReader, Read, Write};

use flate2::read::{MultiGzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};
use weezl::BitOrder;

/// Go's `compress/lzw` literal width used by upstream (`lzw.NewWriter(w, lzw.LSB, 8)`).
const LZW_LITERAL_WIDTH: u8 = 8;

/// How a snapshot object is compressed; the object name's suffix says which.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Stored uncompressed; the name has no compression suffix.
    #[default]
    None,
    /// gzip (`.gz`), the upstream default policy.
    Gzip,
    /// zlib (`.zlib`).
    Zlib,
    /// LZW as Go's `compress/lzw` writes it with LSB order and 8-bit
    /// literals (`.Z`).
    Lzw,
}

impl Compression {
    /// Every variant, for tests and for listing the supported suffixes.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Zlib,
        Compression::Lzw,
    ];

    /// The suffix this compression adds to an object name, with its dot
    /// (`""` for [`Compression::None`]).
    pub const fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zlib => ".zlib",
            Compression::Lzw => ".Z",
        }
    }

    /// The compression a name suffix (with its dot; `""` for none) stands
    /// for, or `None` for a suffix upstream never writes. Case-sensitive,
    /// as upstream.
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.suffix() == suffix)
    }

    /// The upstream `--compression-policy` value (`gzip`, `zlib`, `lzw`),
    /// or `None` for [`Compression::None`], which has no policy name.
    pub const fn policy(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zlib => Some("zlib"),
            Compression::Lzw => Some("lzw"),
        }
    }

    /// The compression an upstream `--compression-policy` value selects.
    pub fn from_policy(policy: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.policy() == Some(policy))
    }
}

/// Compresses everything `input` yields into `output`; returns the number
/// of uncompressed bytes read. The output is complete (trailers written)
/// when this returns `Ok`.
pub fn compress_stream<R: Read, W: Write>(
    compression: Compression,
    mut input: R,
    mut output: W,
) -> io::Result<u64> {
    match compression {
        Compression::None => {
            let n = io::copy(&mut input, &mut output)?;
            output.flush()?;
            Ok(n)
        }
        Compression::Gzip => gzip_parallel(input, output, GZIP_LEVEL, worker_threads()),
        Compression::Zlib => {
            let mut encoder = ZlibEncoder::new(output, flate2::Compression::default());
            let n = io::copy(&mut input, &mut encoder)?;
            encoder.finish()?.flush()?;
            Ok(n)
        }
        Compression::Lzw => {
            let mut encoder = weezl::encode::Encoder::new(BitOrder::Lsb, LZW_LITERAL_WIDTH);
            let result = encoder
                .into_stream(&mut output)
                .encode_all(BufReader::new(input));
            result.status.map_err(|e| lzw_error("compress", e))?;
            output.flush()?;
            Ok(result.bytes_read as u64)
        }
    }
}

/// The gzip level of snapshots, chosen by measurement (`cargo bench -p
/// druid-backup-restore --bench compression`, 2 cores, zlib-rs): level 2
/// compresses etcd-like data 1.6× faster than the default level 6 for 9 %
/// more bytes (ratio 0.145 against 0.133), and incompressible data at
/// 115 MB/s without growing it. Level 1 is faster still but writes 50 %
/// more bytes of etcd-like data and grows incompressible data by 5.5 %.
pub const GZIP_LEVEL: u32 = 2;

/// The uncompressed size of one gzip member of [`gzip_parallel`]: large
/// enough that the members' headers and the lost cross-block matches cost
/// well under 1 % of the output, small enough that memory stays a few
/// blocks per core.
pub const GZIP_BLOCK: usize = 4 << 20;

/// The unit [`gzip_parallel`] deflates or stores: one gzip member each.
/// An etcd database mixes pages that compress (keys, branch pages) with
/// values that may not; 512 KiB keeps the decision local at an overhead of
/// 18 bytes per member (deflate's window is 32 KiB: nothing is lost to the
/// cut).
const GZIP_SEGMENT: usize = 512 << 10;

/// How much of a segment [`gzip_parallel`] looks at to tell whether it
/// compresses at all ([`looks_random`]).
const INCOMPRESSIBLE_PROBE: usize = 32 << 10;

/// Cores to compress on (one per core, at least one).
pub fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// gzip on `threads` cores: the input is cut into [`GZIP_BLOCK`] blocks,
/// each compressed on its own thread as gzip members of [`GZIP_SEGMENT`],
/// and the members are written in order (a multi-member gzip stream, RFC 1952 §2.2; Go's
/// reader, `gzip -d` and [`MultiGzDecoder`] read it whole). Reading the
/// next block and writing the finished members overlap the compression;
/// a segment whose first 32 KiB look random is stored (deflate's stored
/// blocks) instead of deflated. At most `threads` blocks are in flight, so
/// memory stays about
/// `2 × threads × GZIP_BLOCK` whatever the input's size. Returns the
/// number of uncompressed bytes read.
pub fn gzip_parallel<R: Read, W: Write>(
    mut input: R,
    mut output: W,
    level: u32,
    threads: usize,
) -> io::Result<u64> {
    let encode = |data: &[u8], level: u32| -> io::Result<Vec<u8>> {
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(data.len() / 2 + 64),
            flate2::Compression::new(level),
        );
        encoder.write_all(data)?;
        encoder.finish()
    };
    let member = |block: &[u8]| -> io::Result<Vec<u8>> {
        // Each segment is a member of its own, deflated or stored: a
        // segment whose start does not compress (encrypted values, already
        // compressed data) would cost the CPU time of deflating it to save
        // nothing.
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        for segment in block.chunks(GZIP_SEGMENT) {
            let probe = &segment[..segment.len().min(INCOMPRESSIBLE_PROBE)];
            if segment.len() > 2 * INCOMPRESSIBLE_PROBE && looks_random(probe) {
                out.extend_from_slice(&stored_member(segment));
            } else {
                out.extend_from_slice(&encode(segment, level)?);
            }
        }
        Ok(out)
    };
    let threads = threads.max(1);
    std::thread::scope(|scope| {
        let mut pending = std::collections::VecDeque::with_capacity(threads);
        let mut total = 0u64;
        loop {
            let block = read_block(&mut input, GZIP_BLOCK)?;
            if block.is_empty() {
                break;
            }
            total += block.len() as u64;
            pending.push_back(scope.spawn(move || member(&block)));
            if pending.len() >= threads
                && let Some(done) = pending.pop_front()
            {
                output.write_all(&joined(done)?)?;
            }
        }
        while let Some(done) = pending.pop_front() {
            output.write_all(&joined(done)?)?;
        }
        if total == 0 {
            // An empty input is still one (empty) gzip member.
            output.write_all(&encode(&[], level)?)?;
        }
        output.flush()?;
        Ok(total)
    })
}

/// Whether `data` looks incompressible: its bytes' order-0 entropy is
/// above 7.5 bits (random or encrypted data is near 8; text, JSON,
/// protobuf and etcd's pages are well below). A histogram costs a small
/// fraction of deflating the probe; data it misjudges is stored, which is
/// never wrong, only larger.
fn looks_random(data: &[u8]) -> bool {
    let mut counts = [0u32; 256];
    for b in data {
        counts[usize::from(*b)] += 1;
    }
    let n = data.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum();
    bits > 7.5
}

/// `data` as one gzip member of deflate stored blocks (RFC 1951 §3.2.4):
/// a copy and a CRC-32, several times faster than zlib's level 0.
fn stored_member(data: &[u8]) -> Vec<u8> {
    const MAX_STORED: usize = 65_535;
    let blocks = data.len().div_ceil(MAX_STORED).max(1);
    let mut out = Vec::with_capacity(data.len() + blocks * 5 + 18);
    // Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    let mut chunks = data.chunks(MAX_STORED).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        // `chunk` is at most 65,535 bytes: its length fits in 16 bits.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
    out.extend_from_slice(&((data.len() & 0xffff_ffff) as u32).to_le_bytes());
    out
}

/// The result of a compression thread (a panic there is an I/O error here).
fn joined(handle: std::thread::ScopedJoinHandle<'_, io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    handle
        .join()
        .map_err(|_| io::Error::other("a compression thread panicked"))?
}

/// Reads up to `size` bytes (fewer only at the end of `input`).
fn read_block<R: Read>(input: &mut R, size: usize) -> io::Result<Vec<u8>> {
    let mut block = Vec::with_capacity(size);
    input.take(size as u64).read_to_end(&mut block)?;
    Ok(block)
}

/// Decompresses everything `input` yields into `output`; returns the number
/// of decompressed bytes written. Truncated or corrupt input is an error
/// (`UnexpectedEof` for a stream that ends early, `InvalidData` or
/// `InvalidInput` for corrupt data), never a silently short output.
pub fn decompress_stream<R: Read, W: Write>(
    compression: Compression,
    input: R,
    mut output: W,
) -> io::Result<u64> {
    match compression {
        Compression::None => {
            let mut input = input;
            let n = io::copy(&mut input, &mut output)?;
            output.flush()?;
            Ok(n)
        }
        // Go's gzip reader reads concatenated members by default; so does
        // `MultiGzDecoder`.
        Compression::Gzip => copy_flushed(&mut MultiGzDecoder::new(input), &mut output),
        Compression::Zlib => copy_flushed(&mut ZlibDecoder::new(input), &mut output),
        Compression::Lzw => {
            let mut decoder = weezl::decode::Decoder::new(BitOrder::Lsb, LZW_LITERAL_WIDTH);
            let result = decoder
                .into_stream(&mut output)
                .decode_all(BufReader::new(input));
            result.status.map_err(|e| lzw_error("decompress", e))?;
            // Go's reader fails with `io.ErrUnexpectedEOF` when the data ends
            // before the end code; do the same whatever `weezl` reports.
            if !decoder.has_ended() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "lzw: stream ended before its end code (truncated)",
                ));
            }
            output.flush()?;
            Ok(result.bytes_written as u64)
        }
    }
}

/// Compresses a buffer; see [`compress_stream`].
pub fn compress(compression: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    compress_stream(compression, data, &mut out)?;
    Ok(out)
}

/// Most bytes a delta snapshot may decompress to. Upstream cuts a delta
/// once its JSON reaches the delta memory limit (100 MB in its chart, but
/// any size a user set, 1Gi in our seed manifest) plus one watch response;
/// ours are cut at most at half of `--compaction-max-delta-size`. A delta
/// that decodes to more than 4 GiB is corrupt or hostile (a decompression
/// bomb), and decoding stops there instead of exhausting memory or disk.
pub const MAX_DECODED_DELTA: u64 = 4 << 30;

/// Decompresses a buffer (a delta) to at most [`MAX_DECODED_DELTA`] bytes;
/// see [`decompress_stream`].
pub fn decompress(compression: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
    decompress_bounded(compression, data, MAX_DECODED_DELTA)
}

/// Decompresses a buffer to at most `max` bytes: more is an `InvalidData`
/// error that says so.
pub fn decompress_bounded(compression: Compression, data: &[u8], max: u64) -> io::Result<Vec<u8>> {
    let capacity = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .min(data.len().saturating_mul(2));
    let mut out = Bounded::new(Vec::with_capacity(capacity), max);
    decompress_stream(compression, data, &mut out)?;
    Ok(out.into_inner())
}

/// A writer that fails once more than its bound would be written.
#[derive(Debug)]
pub struct Bounded<W> {
    inner: W,
    max: u64,
    written: u64,
}

impl<W> Bounded<W> {
    /// Wraps `inner`, allowing at most `max` bytes through.
    pub fn new(inner: W, max: u64) -> Self {
        Self {
            inner,
            max,
            written: 0,
        }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written.saturating_add(len) > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "decompresses to more than {} bytes, the most a delta snapshot may hold: \
                     the object is corrupt or hostile (a decompression bomb)",
                    self.max
                ),
            ));
        }
        let n = self.inner.write(buf)?;
        self.written += u64::try_from(n).unwrap_or(u64::MAX);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn copy_flushed<R: Read, W: Write>(input: &mut R, output: &mut W) -> io::Result<u64> {
    let n = io::copy(input, output)?;
    output.flush()?;
    Ok(n)
}

fn lzw_error(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("lzw: failed to {what}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use sha2::{Digest as _, Sha256};

    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Bytes that compress somewhat, as an etcd database does.
    fn corpus(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                let r = xorshift(&mut state);
                if i % 64 < 40 {
                    b"/registry/pods/default/"[i % 23]
                } else {
                    b'a' + (r % 26) as u8
                }
            })
            .collect()
    }

    /// `gzip -dc` of `data` (a standard reader).
    fn gzip_d(data: Vec<u8>) -> Vec<u8> {
        let mut gzip = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = gzip.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let decoded = gzip.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(decoded.status.success(), "gzip -dc failed");
        decoded.stdout
    }

    #[test]
    fn parallel_gzip_writes_one_member_per_block_that_standard_readers_read_whole() {
        let data = corpus(3 * GZIP_BLOCK + 12_345);
        let mut out = Vec::new();
        let n = gzip_parallel(data.as_slice(), &mut out, GZIP_LEVEL, 2).unwrap();
        assert_eq!(n, data.len() as u64);
        // Four members: each starts with the gzip magic and deflate method.
        let members = out.windows(4).filter(|w| *w == [0x1f, 0x8b, 8, 0]).count();
        assert!(members >= 4, "{members} member headers");
        assert!(
            out.len() < data.len() / 2,
            "it compresses: {} bytes",
            out.len()
        );
        // Ours, and a standard reader (gzip(1)), give the input back.
        let mut back = Vec::new();
        decompress_stream(Compression::Gzip, out.as_slice(), &mut back).unwrap();
        assert!(back == data, "our reader");
        assert!(gzip_d(out) == data, "gzip -dc");
        // The same stream whatever the number of threads (members are cut
        // by size, not by thread).
        let mut one = Vec::new();
        gzip_parallel(data.as_slice(), &mut one, GZIP_LEVEL, 1).unwrap();
        let mut two = Vec::new();
        gzip_parallel(data.as_slice(), &mut two, GZIP_LEVEL, 2).unwrap();
        assert!(one == two);
    }

    #[test]
    fn incompressible_blocks_are_stored_not_deflated() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..GZIP_BLOCK + 1000)
            .map(|_| xorshift(&mut state) as u8)
            .collect();
        let mut out = Vec::new();
        gzip_parallel(random.as_slice(), &mut out, GZIP_LEVEL, 2).unwrap();
        // Stored blocks cost 5 bytes per 64 KiB plus the members' headers;
        // deflating random bytes at a low level grows them by percents.
        assert!(
            out.len() < random.len() + random.len() / 1000,
            "{} bytes",
            out.len()
        );
        let mut back = Vec::new();
        decompress_stream(Compression::Gzip, out.as_slice(), &mut back).unwrap();
        assert!(back == random);
        assert!(gzip_d(out) == random, "gzip -dc");
        assert!(gzip_d(stored_member(&[])).is_empty());
        // A compressible block after it is still deflated.
        let mixed = [random.as_slice(), corpus(GZIP_BLOCK).as_slice()].concat();
        let mut out = Vec::new();
        gzip_parallel(mixed.as_slice(), &mut out, GZIP_LEVEL, 2).unwrap();
        assert!(
            out.len() < random.len() + GZIP_BLOCK / 2,
            "{} bytes",
            out.len()
        );
    }

    #[test]
    fn parallel_gzip_of_nothing_is_one_empty_member() {
        let mut out = Vec::new();
        assert_eq!(gzip_parallel(&[][..], &mut out, GZIP_LEVEL, 2).unwrap(), 0);
        let mut back = Vec::new();
        assert_eq!(
            decompress_stream(Compression::Gzip, out.as_slice(), &mut back).unwrap(),
            0
        );
        assert!(out.starts_with(&[0x1f, 0x8b]));
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_bound() {
        // Concatenated gzip members: 64 MiB of zeros from 64 KB or so.
        let member = compress(Compression::Gzip, &vec![0u8; 1 << 20]).unwrap();
        let bomb: Vec<u8> = member.repeat(64);
        let e = decompress_bounded(Compression::Gzip, &bomb, 8 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("decompression bomb"), "{e}");
        // Within the bound, everything comes out.
        assert_eq!(
            decompress_bounded(Compression::Gzip, &bomb, 64 << 20)
                .unwrap()
                .len(),
            64 << 20
        );
        for c in [Compression::Zlib, Compression::Lzw, Compression::None] {
            let packed = compress(c, &vec![7u8; 3 << 20]).unwrap();
            let e = decompress_bounded(c, &packed, 1 << 20).unwrap_err();
            assert!(e.to_string().contains("decompression bomb"), "{c:?}: {e}");
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The deterministic input of the Go vectors: an LCG
    /// (`s = s*1103515245 + 12345`, seed 12345) choosing among 8 letters.
    fn lcg_input(len: usize) -> Vec<u8> {
        let mut s: u32 = 12345;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefgh"[((s >> 16) % 8) as usize]
            })
            .collect()
    }

    #[test]
    fn suffixes_and_policies() {
        for (c, suffix, policy) in [
            (Compression::None, "", None),
            (Compression::Gzip, ".gz", Some("gzip")),
            (Compression::Zlib, ".zlib", Some("zlib")),
            (Compression::Lzw, ".Z", Some("lzw")),
        ] {
            assert_eq!(c.suffix(), suffix);
            assert_eq!(Compression::from_suffix(suffix), Some(c));
            assert_eq!(c.policy(), policy);
            if let Some(p) = policy {
                assert_eq!(Compression::from_policy(p), Some(c));
            }
        }
        for bad in [".z", ".GZ", "gz", ".tmp", ".", ".final", ".bz2"] {
            assert_eq!(Compression::from_suffix(bad), None, "{bad}");
        }
        assert_eq!(Compression::from_policy("none"), None);
        assert_eq!(Compression::default(), Compression::None);
    }

    #[test]
    fn round_trips_every_compression() {
        let inputs: [&[u8]; 4] = [b"", b"a", b"TOBEORNOTTOBEORTOBEORNOT", &lcg_input(100_000)];
        for c in Compression::ALL {
            for input in inputs {
                let packed = compress(c, input).unwrap();
                assert_eq!(decompress(c, &packed).unwrap(), input, "{c:?}");
            }
        }
    }

    // Vectors written by Go 1.26 (`lzw.NewWriter(&b, lzw.LSB, 8)`), whose
    // writer starts with a clear code.
    const GO_LZW_EMPTY: &str = "000302";
    const GO_LZW_TOBE: &str = "00a93c1152e48914274fa80824687061c183090302";
    /// Go's stream for `lcg_input(16384)`: long enough to fill the 12-bit
    /// code table and reset it.
    const GO_LZW_16K: &[u8] = include_bytes!("testdata/go_lzw_16k.Z");
    /// Length and SHA-256 of `weezl`'s stream for `lcg_input(16384)`,
    /// which Go 1.26's `compress/lzw` reader decoded to the input.
    const OUR_LZW_16K_LEN: usize = 7534;
    const OUR_LZW_16K_SHA256: &str =
        "934660d84368de447be7ef19f8cf773313bdbeb0473ae7bb5d6024e0667f0237";
    /// Where the two 16 KiB streams first differ: the first table reset.
    const FIRST_TABLE_RESET_BYTE: usize = 5406;

    #[test]
    fn lzw_matches_go() {
        assert_eq!(
            compress(Compression::Lzw, b"").unwrap(),
            unhex(GO_LZW_EMPTY)
        );
        assert_eq!(
            compress(Compression::Lzw, b"TOBEORNOTTOBEORTOBEORNOT").unwrap(),
            unhex(GO_LZW_TOBE)
        );
        let input = lcg_input(16384);
        assert_eq!(decompress(Compression::Lzw, GO_LZW_16K).unwrap(), input);
        let ours = compress(Compression::Lzw, &input).unwrap();
        assert_eq!(
            ours[..FIRST_TABLE_RESET_BYTE],
            GO_LZW_16K[..FIRST_TABLE_RESET_BYTE]
        );
        assert_eq!(ours.len(), OUR_LZW_16K_LEN);
        let digest = Sha256::digest(&ours);
        assert_eq!(crate::formats::full::hex(&digest), OUR_LZW_16K_SHA256);
    }

    #[test]
    fn lzw_reads_go_streams_with_and_without_leading_clear_code() {
        assert_eq!(
            decompress(Compression::Lzw, &unhex(GO_LZW_EMPTY)).unwrap(),
            b""
        );
        assert_eq!(
            decompress(Compression::Lzw, &unhex(GO_LZW_TOBE)).unwrap(),
            b"TOBEORNOTTOBEORTOBEORNOT"
        );
        // Go's compress/lzw reader test vectors (LSB, 8), from writers that
        // did not send a leading clear code.
        assert_eq!(decompress(Compression::Lzw, &[0x01, 0x01]).unwrap(), b"");
        assert_eq!(
            decompress(
                Compression::Lzw,
                b"\x54\x9e\x08\x29\xf2\x44\x8a\x93\x27\x54\x04\x12\x34\xb8\xb0\xe0\xc1\x84\x01\x01"
            )
            .unwrap(),
            b"TOBEORNOTTOBEORTOBEORNOT"
        );
        assert_eq!(
            decompress(
                Compression::Lzw,
                b"\x00\x51\xfc\x1b\x28\x70\xa0\xc1\x83\x01\x01"
            )
            .unwrap(),
            b"\x28\xff\xff\xff\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        );
    }

    #[test]
    fn truncated_streams_are_errors() {
        // Go's "tobe-truncated" reader vector: no end code.
        let err = decompress(
            Compression::Lzw,
            b"\x54\x9e\x08\x29\xf2\x44\x8a\x93\x27\x54\x04",
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let input = lcg_input(100_000);
        for c in [Compression::Gzip, Compression::Zlib, Compression::Lzw] {
            let packed = compress(c, &input).unwrap();
            for cut in [0, 1, packed.len() / 2, packed.len() - 1] {
                let result = decompress(c, &packed[..cut]);
                assert!(result.is_err(), "{c:?} cut at {cut} decoded");
            }
        }
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let input = lcg_input(100_000);
        for c in [Compression::Gzip, Compression::Zlib] {
            let mut packed = compress(c, &input).unwrap();
            let mid = packed.len() / 2;
            packed[mid] ^= 0xff;
            assert!(decompress(c, &packed).is_err(), "{c:?}");
        }
        // gzip from Go 1.26 (`gzip.NewWriter`), checked byte by byte.
        let go_gzip = unhex("1f8b08000000000000ffca48cdc9c907040000ffff86a6103605000000");
        assert_eq!(decompress(Compression::Gzip, &go_gzip).unwrap(), b"hello");
        let go_zlib = unhex("789cca48cdc9c907040000ffff062c0215");
        assert_eq!(decompress(Compression::Zlib, &go_zlib).unwrap(), b"hello");
        let mut bad_crc = go_gzip.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 1;
        assert!(decompress(Compression::Gzip, &bad_crc).is_err());
        let mut bad_adler = go_zlib.clone();
        let last = bad_adler.len() - 1;
        bad_adler[last] ^= 1;
        assert!(decompress(Compression::Zlib, &bad_adler).is_err());
    }
}
