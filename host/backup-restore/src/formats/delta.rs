//! Delta snapshots in the sidecar: building them while events arrive
//! ([`DeltaBuilder`], [`DeltaStream`]), compressing and decompressing
//! them (see [`crate::formats::compression`]), and the times of events.
//!
//! The format itself (a JSON array of `{"etcdEvent": <mvccpb.Event>,
//! "time": ...}` as Go's `encoding/json` writes it, followed by the
//! SHA-256 of the JSON) has one owner, `druid_etcd_db::delta`: its
//! `write_entry` writes each element here, and its decoder reads them
//! back; the events are its types. What this module adds is the time:
//! Go's `RFC3339Nano` text ([`go_rfc3339_nano`]) written, and parsed into
//! a [`DateTime`] on decoding.

use std::io;

use chrono::{DateTime, FixedOffset, Timelike as _, Utc};
use sha2::{Digest as _, Sha256};

use crate::formats::compression::{self, Compression};

/// Length of the SHA-256 that follows the JSON (the one snapshot hash
/// length, shared with the full snapshot's trailer).
pub const HASH_LEN: usize = druid_etcd_db::SNAPSHOT_HASH_LEN;

/// etcd's `mvccpb.Event` (PUT or DELETE and the key-value), its parts,
/// and their JSON: etcd-db's, shared with the compactor.
pub use druid_etcd_db::{Event, EventType, KeyValue};

/// One element of a delta: an event and when the sidecar received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEvent {
    /// The event.
    pub event: Event,
    /// The key before the event, if the watch asked for it (the sidecar's
    /// does not; a delta may carry it).
    pub prev_kv: Option<KeyValue>,
    /// When it was received (upstream writes the pod's local time).
    pub time: DateTime<FixedOffset>,
}

impl DeltaEvent {
    /// An event received at a UTC time.
    pub fn new(event: Event, time: DateTime<Utc>) -> Self {
        DeltaEvent {
            event,
            prev_kv: None,
            time: time.fixed_offset(),
        }
    }
}

/// Why a delta could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Compressing the payload failed.
    #[error("failed to compress delta snapshot with {compression:?}: {source}")]
    Compress {
        /// The compression in use.
        compression: Compression,
        /// The underlying error.
        source: io::Error,
    },
    /// Decompressing failed: the object is truncated, corrupt, or not
    /// compressed the way its name says.
    #[error(
        "failed to decompress delta snapshot as {compression:?} (truncated or corrupt?): {source}"
    )]
    Decompress {
        /// The compression in use.
        compression: Compression,
        /// The underlying error.
        source: io::Error,
    },
    /// The payload is too short to hold its hash, or the hash does not
    /// match the JSON (truncated or corrupt).
    #[error(transparent)]
    Payload(#[from] druid_etcd_db::DeltaError),
    /// An element is not a valid event.
    #[error("delta snapshot event #{index} is invalid: {reason}")]
    Event {
        /// Zero-based position in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing an event's JSON failed.
    #[error("failed to encode delta snapshot event: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Builds a delta's payload event by event, as the upstream snapshotter
/// does while watching, so the caller can watch its size against a memory
/// limit.
#[derive(Debug, Clone)]
pub struct DeltaBuilder {
    json: Vec<u8>,
    events: usize,
    last_mod_revision: Option<i64>,
}

impl Default for DeltaBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DeltaBuilder {
    /// An empty delta.
    pub fn new() -> Self {
        DeltaBuilder {
            json: b"[".to_vec(),
            events: 0,
            last_mod_revision: None,
        }
    }

    /// Appends an event.
    pub fn push(&mut self, event: &DeltaEvent) -> Result<(), DeltaError> {
        let mark = self.json.len();
        if self.events > 0 {
            self.json.push(b',');
        }
        if let Err(e) = write_entry(&mut self.json, event) {
            self.json.truncate(mark);
            return Err(DeltaError::Encode(e));
        }
        self.events += 1;
        self.last_mod_revision = Some(event.event.kv.mod_revision);
        Ok(())
    }

    /// How many events were pushed.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether no event was pushed.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Size of the JSON so far, in bytes.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }

    /// The `mod_revision` of the last event pushed: the delta's last
    /// revision, which its name carries.
    pub fn last_mod_revision(&self) -> Option<i64> {
        self.last_mod_revision
    }

    /// The uncompressed payload: the JSON array and its SHA-256.
    pub fn finish(mut self) -> Vec<u8> {
        self.json.push(b']');
        let digest = Sha256::digest(&self.json);
        self.json.extend_from_slice(&digest);
        self.json
    }

    /// The payload, compressed: the object to upload.
    pub fn finish_compressed(self, compression: Compression) -> Result<Vec<u8>, DeltaError> {
        let payload = self.finish();
        compression::compress(compression, &payload).map_err(|source| DeltaError::Compress {
            compression,
            source,
        })
    }
}

/// Where a [`DeltaStream`] writes: straight into a compressor (gzip,
/// zlib), or a plain buffer (no compression, and LZW, which is compressed
/// at the end).
enum Sink {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zlib(flate2::write::ZlibEncoder<Vec<u8>>),
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        match self {
            Sink::Plain(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            Sink::Gzip(e) => e.write_all(bytes),
            Sink::Zlib(e) => e.write_all(bytes),
        }
    }
}

/// Builds a delta object while events arrive, like [`DeltaBuilder`], but
/// the JSON goes through the SHA-256 and the compressor at once: memory
/// holds the compressed bytes, not the JSON. [`DeltaStream::json_len`]
/// still counts the uncompressed JSON, which is what the memory limit is
/// measured against (as upstream).
pub struct DeltaStream {
    sink: Sink,
    compression: Compression,
    hasher: Sha256,
    scratch: Vec<u8>,
    json_len: usize,
    events: usize,
    last_mod_revision: Option<i64>,
}

impl std::fmt::Debug for DeltaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaStream")
            .field("compression", &self.compression)
            .field("events", &self.events)
            .field("json_len", &self.json_len)
            .finish()
    }
}

impl DeltaStream {
    /// An empty delta compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        let level = flate2::Compression::default();
        let sink = match compression {
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Compression::Zlib => Sink::Zlib(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            Compression::None | Compression::Lzw => Sink::Plain(Vec::new()),
        };
        let mut stream = DeltaStream {
            sink,
            compression,
            hasher: Sha256::new(),
            scratch: Vec::new(),
            json_len: 0,
            events: 0,
            last_mod_revision: None,
        };
        stream.hasher.update(b"[");
        stream.json_len = 1;
        // Writing into memory cannot fail; a failure would show at finish.
        let _ = stream.sink.write(b"[");
        stream
    }

    fn compress_error(&self, source: io::Error) -> DeltaError {
        DeltaError::Compress {
            compression: self.compression,
            source,
        }
    }

    /// Appends an event.
    pub fn push(&mut self, event: &DeltaEvent) -> Result<(), DeltaError> {
        self.scratch.clear();
        if self.events > 0 {
            self.scratch.push(b',');
        }
        write_entry(&mut self.scratch, event).map_err(DeltaError::Encode)?;
        self.hasher.update(&self.scratch);
        if let Err(e) = self.sink.write(&self.scratch) {
            return Err(self.compress_error(e));
        }
        self.json_len += self.scratch.len();
        self.events += 1;
        self.last_mod_revision = Some(event.event.kv.mod_revision);
        Ok(())
    }

    /// How many events were pushed.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether no event was pushed.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Size of the uncompressed JSON so far, in bytes.
    pub fn json_len(&self) -> usize {
        self.json_len
    }

    /// The `mod_revision` of the last event pushed.
    pub fn last_mod_revision(&self) -> Option<i64> {
        self.last_mod_revision
    }

    /// The object to upload: `]`, the SHA-256 of the JSON, all compressed.
    pub fn finish(mut self) -> Result<Vec<u8>, DeltaError> {
        self.hasher.update(b"]");
        let digest = std::mem::take(&mut self.hasher).finalize();
        let compression = self.compression;
        let error = |source| DeltaError::Compress {
            compression,
            source,
        };
        self.sink.write(b"]").map_err(error)?;
        self.sink.write(&digest).map_err(error)?;
        match self.sink {
            Sink::Plain(payload) => compression::compress(compression, &payload).map_err(error),
            Sink::Gzip(e) => e.finish().map_err(error),
            Sink::Zlib(e) => e.finish().map_err(error),
        }
    }
}

/// Encodes events into a delta object (JSON, SHA-256, compressed).
pub fn encode(events: &[DeltaEvent], compression: Compression) -> Result<Vec<u8>, DeltaError> {
    let mut builder = DeltaBuilder::new();
    for event in events {
        builder.push(event)?;
    }
    builder.finish_compressed(compression)
}

/// Decodes a delta object: decompresses it, verifies the SHA-256 and
/// parses the events. Truncated or corrupt input is always an error.
pub fn decode(object: &[u8], compression: Compression) -> Result<Vec<DeltaEvent>, DeltaError> {
    let payload =
        compression::decompress(compression, object).map_err(|source| DeltaError::Decompress {
            compression,
            source,
        })?;
    decode_payload(&payload)
}

/// Decodes an uncompressed payload (JSON followed by its SHA-256).
pub fn decode_payload(payload: &[u8]) -> Result<Vec<DeltaEvent>, DeltaError> {
    let json = verify_payload(payload)?;
    druid_etcd_db::delta::parse_entries(json)?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let bad = |reason: String| DeltaError::Event { index, reason };
            let time = entry.time.ok_or_else(|| bad("it has no \"time\"".into()))?;
            let time = DateTime::parse_from_rfc3339(&time)
                .map_err(|e| bad(format!("\"time\" {time:?} is not an RFC 3339 time: {e}")))?;
            Ok(DeltaEvent {
                event: entry.event,
                prev_kv: entry.prev_kv,
                time,
            })
        })
        .collect()
}

/// Checks the trailing SHA-256 of a payload and returns the JSON part.
pub fn verify_payload(payload: &[u8]) -> Result<&[u8], DeltaError> {
    Ok(druid_etcd_db::verify_delta(payload)?)
}

/// Formats a time as Go's `time.Time` JSON (`RFC3339Nano`): fractional
/// seconds with trailing zeros removed (none if zero), `Z` for a zero
/// offset, else `±hh:mm`.
pub fn go_rfc3339_nano(time: &DateTime<FixedOffset>) -> String {
    let mut out = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    // chrono represents a leap second as nanos >= 1e9; Go has none.
    let nanos = time.nanosecond().min(999_999_999);
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    let offset = time.offset().local_minus_utc();
    if offset == 0 {
        out.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs() / 60;
        out.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    out
}

/// Appends `event` as one element of a delta's JSON array, with etcd-db's
/// encoder.
fn write_entry(out: &mut Vec<u8>, event: &DeltaEvent) -> Result<(), serde_json::Error> {
    druid_etcd_db::delta::write_entry(
        out,
        event.event.kind,
        &event.event.kv,
        event.prev_kv.as_ref(),
        &go_rfc3339_nano(&event.time),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_streamed_delta_decodes_like_a_built_one() {
        let time = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let events: Vec<DeltaEvent> = (0..500)
            .map(|i| {
                let mut e = put(
                    &format!("/k/{i}"),
                    &"v".repeat(i % 97),
                    i as i64 + 2,
                    i as i64 + 2,
                    1,
                    0,
                );
                if i % 7 == 0 {
                    e.kind = EventType::Delete;
                    e.kv.value.clear();
                }
                DeltaEvent::new(e, time)
            })
            .collect();
        for compression in Compression::ALL {
            let mut built = DeltaBuilder::new();
            let mut streamed = DeltaStream::new(compression);
            for e in &events {
                built.push(e).unwrap();
                streamed.push(e).unwrap();
            }
            assert_eq!(streamed.json_len(), built.json_len(), "{compression:?}");
            assert_eq!(streamed.len(), 500);
            assert_eq!(streamed.last_mod_revision(), Some(501));
            let object = streamed.finish().unwrap();
            let payload = compression::decompress(compression, &object).unwrap();
            assert_eq!(payload, built.finish(), "{compression:?}: same payload");
            assert_eq!(decode(&object, compression).unwrap(), events);
        }
    }

    #[test]
    fn an_empty_stream_is_an_empty_array() {
        let object = DeltaStream::new(Compression::Gzip).finish().unwrap();
        assert!(decode(&object, Compression::Gzip).unwrap().is_empty());
    }

    fn put(key: &str, value: &str, create: i64, modr: i64, version: i64, lease: i64) -> Event {
        Event {
            kind: EventType::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                create_revision: create,
                mod_revision: modr,
                version,
                value: value.as_bytes().to_vec(),
                lease,
            },
        }
    }

    fn delete(key: &str, modr: i64) -> Event {
        Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: modr,
                ..KeyValue::default()
            },
        }
    }

    fn at(secs: i64, nanos: u32) -> DateTime<FixedOffset> {
        Utc.timestamp_opt(secs, nanos).unwrap().fixed_offset()
    }

    fn with_hash(json: &[u8]) -> Vec<u8> {
        let mut payload = json.to_vec();
        payload.extend_from_slice(&Sha256::digest(json));
        payload
    }

    /// A delta shaped exactly as the upstream sidecar writes one, built by
    /// hand: the issue #287 shape (PUT without `type`, base64 key/value),
    /// a DELETE with `"type":1` and only key and mod_revision, an empty
    /// value (omitted), a lease, a local-time offset and trimmed fractions.
    const UPSTREAM_JSON: &str = concat!(
        r#"[{"etcdEvent":{"kv":{"key":"L3JlZ2lzdHJ5L2Zvbw==","create_revision":42004,"#,
        r#""mod_revision":69263102,"version":4511635,"value":"azhzAGRhdGE="}},"#,
        r#""time":"2023-11-14T22:13:20.123456789Z"},"#,
        r#"{"etcdEvent":{"type":1,"kv":{"key":"L3JlZ2lzdHJ5L2Zvbw==","mod_revision":69263103}},"#,
        r#""time":"2023-11-14T23:13:20.5+01:00"},"#,
        r#"{"etcdEvent":{"kv":{"key":"ZW1wdHk=","create_revision":69263104,"#,
        r#""mod_revision":69263104,"version":1,"lease":7587862744374425359}},"#,
        r#""time":"2023-11-14T22:13:21Z"}]"#
    );

    fn upstream_events() -> Vec<DeltaEvent> {
        let offset = FixedOffset::east_opt(3600).unwrap();
        vec![
            DeltaEvent {
                event: put(
                    "/registry/foo",
                    "k8s\0data",
                    42004,
                    69_263_102,
                    4_511_635,
                    0,
                ),
                prev_kv: None,
                time: at(1_700_000_000, 123_456_789),
            },
            DeltaEvent {
                event: delete("/registry/foo", 69_263_103),
                prev_kv: None,
                time: at(1_700_000_000, 500_000_000).with_timezone(&offset),
            },
            DeltaEvent {
                event: put(
                    "empty",
                    "",
                    69_263_104,
                    69_263_104,
                    1,
                    7_587_862_744_374_425_359,
                ),
                prev_kv: None,
                time: at(1_700_000_001, 0),
            },
        ]
    }

    #[test]
    fn decodes_a_hand_made_upstream_delta() {
        let payload = with_hash(UPSTREAM_JSON.as_bytes());
        let object = compression::compress(Compression::Gzip, &payload).unwrap();
        let events = decode(&object, Compression::Gzip).unwrap();
        assert_eq!(events, upstream_events());
        assert_eq!(events[1].time.offset().local_minus_utc(), 3600);
    }

    #[test]
    fn encodes_byte_identical_to_upstream() {
        let mut builder = DeltaBuilder::new();
        for event in upstream_events() {
            builder.push(&event).unwrap();
        }
        assert_eq!(builder.len(), 3);
        assert_eq!(builder.last_mod_revision(), Some(69_263_104));
        assert_eq!(builder.json_len(), UPSTREAM_JSON.len() - 1);
        assert_eq!(builder.finish(), with_hash(UPSTREAM_JSON.as_bytes()));
    }

    #[test]
    fn round_trips_every_compression() {
        let mut events = upstream_events();
        events.push(DeltaEvent {
            prev_kv: Some(KeyValue {
                key: vec![0, 255, 1],
                value: b"old".to_vec(),
                ..KeyValue::default()
            }),
            ..DeltaEvent::new(
                Event {
                    kind: EventType::Put,
                    kv: KeyValue {
                        key: vec![0, 255, 1],
                        create_revision: 1,
                        mod_revision: i64::MAX,
                        version: 3,
                        value: (0..=255).collect(),
                        lease: -1,
                    },
                },
                Utc.timestamp_opt(0, 1).unwrap(),
            )
        });
        for compression in Compression::ALL {
            let object = encode(&events, compression).unwrap();
            assert_eq!(
                decode(&object, compression).unwrap(),
                events,
                "{compression:?}"
            );
        }
        // No events: `[]` and its hash.
        let empty = encode(&[], Compression::None).unwrap();
        assert_eq!(empty, with_hash(b"[]"));
        assert!(decode(&empty, Compression::None).unwrap().is_empty());
        assert!(DeltaBuilder::default().is_empty());
    }

    #[test]
    fn writes_prev_kv_and_omits_zero_fields() {
        let event = DeltaEvent {
            event: Event {
                kind: EventType::Put,
                kv: KeyValue {
                    key: b"a".to_vec(),
                    mod_revision: 2,
                    ..KeyValue::default()
                },
            },
            prev_kv: Some(KeyValue::default()),
            time: at(1, 0),
        };
        let mut builder = DeltaBuilder::new();
        builder.push(&event).unwrap();
        builder.push(&event).unwrap();
        let payload = builder.finish();
        let json = std::str::from_utf8(&payload[..payload.len() - HASH_LEN]).unwrap();
        let one = r#"{"etcdEvent":{"kv":{"key":"YQ==","mod_revision":2},"prev_kv":{}},"time":"1970-01-01T00:00:01Z"}"#;
        assert_eq!(json, format!("[{one},{one}]"));
    }

    #[test]
    fn formats_times_like_go() {
        let cases = [
            (at(0, 0), "1970-01-01T00:00:00Z"),
            (at(1_700_000_000, 100_000_000), "2023-11-14T22:13:20.1Z"),
            (at(1_700_000_000, 120_000), "2023-11-14T22:13:20.00012Z"),
            (at(1_700_000_000, 1), "2023-11-14T22:13:20.000000001Z"),
            (
                at(1_700_000_000, 0)
                    .with_timezone(&FixedOffset::west_opt(5 * 3600 + 1800).unwrap()),
                "2023-11-14T16:43:20-05:30",
            ),
            (
                at(-62_135_596_800, 0),
                "0001-01-01T00:00:00Z", // Go's zero time
            ),
        ];
        for (time, want) in cases {
            assert_eq!(go_rfc3339_nano(&time), want);
            assert_eq!(DateTime::parse_from_rfc3339(want).unwrap(), time);
        }
    }

    #[test]
    fn rejects_corrupt_and_truncated_objects() {
        let object = encode(&upstream_events(), Compression::Gzip).unwrap();
        // Truncated compressed objects.
        for cut in [0, 1, 10, object.len() / 2, object.len() - 1] {
            let err = decode(&object[..cut], Compression::Gzip).unwrap_err();
            assert!(
                matches!(err, DeltaError::Decompress { .. }),
                "cut {cut}: {err}"
            );
        }
        // Wrong compression for the data.
        assert!(matches!(
            decode(&object, Compression::Zlib).unwrap_err(),
            DeltaError::Decompress { .. }
        ));
        // Uncompressed payloads: truncated anywhere, or any flipped byte.
        let payload = encode(&upstream_events(), Compression::None).unwrap();
        for cut in [33, 100, payload.len() - HASH_LEN, payload.len() - 1] {
            let err = decode_payload(&payload[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    DeltaError::Payload(druid_etcd_db::DeltaError::HashMismatch { .. })
                ),
                "cut {cut}: {err}"
            );
        }
        for cut in [0, 1, HASH_LEN] {
            let err = decode_payload(&payload[..cut]).unwrap_err();
            assert!(
                matches!(err, DeltaError::Payload(druid_etcd_db::DeltaError::TooShort { len }) if len == cut),
                "{err}"
            );
        }
        for at in [0, 1, 50, payload.len() - 1] {
            let mut bad = payload.clone();
            bad[at] ^= 0x01;
            let err = decode_payload(&bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    DeltaError::Payload(druid_etcd_db::DeltaError::HashMismatch { .. })
                ),
                "flip at {at}: {err}"
            );
        }
        // LZW has no checksum of its own; the hash still catches damage.
        let lzw = encode(&upstream_events(), Compression::Lzw).unwrap();
        let mut bad = lzw.clone();
        bad[20] ^= 0x40;
        assert!(decode(&bad, Compression::Lzw).is_err());
        // JSON only (no hash): rejected, never parsed.
        let err = decode_payload(UPSTREAM_JSON.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                DeltaError::Payload(druid_etcd_db::DeltaError::HashMismatch { .. })
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("delta snapshot is corrupt or truncated")
        );
    }

    #[test]
    fn rejects_invalid_events_behind_a_valid_hash() {
        let cases = [
            (r#"{"a":1}"#, "not a list of events"),
            (r#"[1]"#, "not a list of events"),
            (
                r#"[{"time":"2023-11-14T22:13:20Z"}]"#,
                "#0 is invalid: it has no \"etcdEvent\"",
            ),
            (
                r#"[{"etcdEvent":{},"time":"2023-11-14T22:13:20Z"}]"#,
                "has no \"kv\"",
            ),
            (r#"[{"etcdEvent":{"kv":{}}}]"#, "it has no \"time\""),
            (
                r#"[{"etcdEvent":{"kv":{}},"time":"yesterday"}]"#,
                "not an RFC 3339 time",
            ),
            (
                r#"[{"etcdEvent":{"type":2,"kv":{}},"time":"2023-11-14T22:13:20Z"}]"#,
                "unknown event type 2",
            ),
            (
                r#"[{"etcdEvent":{"kv":{"key":"not base64!"}},"time":"2023-11-14T22:13:20Z"}]"#,
                "\"kv\": \"key\" is not base64",
            ),
            (
                r#"[{"etcdEvent":{"kv":{},"prev_kv":{"value":"YQ"}},"time":"2023-11-14T22:13:20Z"}]"#,
                "\"prev_kv\": \"value\" is not base64",
            ),
            (
                r#"[{"etcdEvent":{"kv":{"version":"1"}},"time":"x"}]"#,
                "not a list of events",
            ),
        ];
        for (json, want) in cases {
            let err = decode_payload(&with_hash(json.as_bytes())).unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn decodes_go_leniencies() {
        // Nulls and absent fields are zero values, unknown fields ignored,
        // non-canonical trailing base64 bits accepted (as Go's decoder).
        let json = concat!(
            r#"[{"etcdEvent":{"type":null,"kv":{"key":"YR==","value":null,"lease":null},"#,
            r#""prev_kv":null,"extra":true},"time":"2023-11-14T22:13:20Z","other":1},"#,
            r#"{"etcdEvent":{"type":0,"kv":{"key":"Yg==","version":0}},"time":"2023-11-14T22:13:20Z"}]"#
        );
        let events = decode_payload(&with_hash(json.as_bytes())).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.kv.key, b"a");
        assert_eq!(events[0].event.kind, EventType::Put);
        assert_eq!(events[0].prev_kv, None);
        assert_eq!(events[1].event.kv.key, b"b");
    }
}
