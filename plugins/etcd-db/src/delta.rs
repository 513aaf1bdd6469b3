//! Delta snapshots: the one implementation of their format, encoding and
//! decoding; the sidecar streams and compresses on top of it.
//!
//! Before compression a delta is a JSON array of watch events, each
//! `{"etcdEvent": <event>, "time": <when the sidecar received it>}`,
//! written without whitespace, immediately followed by the raw SHA-256 of
//! those JSON bytes ([`SNAPSHOT_HASH_LEN`](crate::SNAPSHOT_HASH_LEN)
//! bytes, as a full snapshot's trailer).
//!
//! `<event>` is etcd's `mvccpb.Event` as Go's `encoding/json` writes it:
//!
//! ```json
//! {"type":1,"kv":{"key":"<base64>","create_revision":5,"mod_revision":9,
//!  "version":2,"value":"<base64>","lease":7},"prev_kv":{...}}
//! ```
//!
//! Fields come in the Go structs' order and every one is `omitempty`:
//! `type` is absent for a PUT (0) and `1` for a DELETE; zero numbers and
//! empty byte strings are absent; `prev_kv` only appears when the watch
//! asked for it (upstream's does not). Byte strings are standard, padded
//! base64. The time is Go's `RFC3339Nano` text; this crate passes it
//! through as a string (the sidecar formats and parses it).
//!
//! [`write_entry`] writes one element byte for byte as the Go sidecar
//! does. Decoding is as lenient as Go's decoder: absent and `null` fields
//! are zero values, unknown fields are ignored. The hash is checked before
//! any JSON is parsed, so a truncated or damaged delta is refused as such.

use base64::Engine as _;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::proto::{Event, EventType, KeyValue};
use crate::{SNAPSHOT_HASH_LEN, hex};

/// Base64 as Go's `encoding/json` writes `[]byte`: standard alphabet,
/// padded; like Go's (non-strict) decoder, non-zero trailing bits pass.
const GO_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Why a delta payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// Too short to hold JSON and its hash.
    #[error(
        "delta snapshot is missing its hash: {len} bytes after decompression, need more than \
         {SNAPSHOT_HASH_LEN}"
    )]
    TooShort {
        /// The payload's length.
        len: usize,
    },
    /// The trailing hash is not the SHA-256 of the JSON before it.
    #[error(
        "delta snapshot is corrupt or truncated: trailing hash {trailer} is not the SHA-256 \
         {computed} of its {json_len} JSON bytes"
    )]
    HashMismatch {
        /// Length of the JSON part.
        json_len: usize,
        /// The trailing 32 bytes, hex.
        trailer: String,
        /// The SHA-256 of the JSON, hex.
        computed: String,
    },
    /// The JSON (whose hash matched) is not a list of events.
    #[error("delta snapshot JSON is not a list of events: {0}")]
    Json(#[source] serde_json::Error),
    /// An element is not a valid event.
    #[error("delta snapshot event #{index} is invalid: {reason}")]
    Event {
        /// Zero-based position in the list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Splits a payload into its JSON and its trailer, unchecked.
pub fn split_delta(payload: &[u8]) -> Result<(&[u8], &[u8]), DeltaError> {
    if payload.len() <= SNAPSHOT_HASH_LEN {
        return Err(DeltaError::TooShort { len: payload.len() });
    }
    Ok(payload.split_at(payload.len() - SNAPSHOT_HASH_LEN))
}

/// Checks a payload's trailer against `computed`, the SHA-256 of its JSON
/// part (hashed by the caller, e.g. natively by the plugin host), and
/// returns the JSON part.
pub fn check_delta_hash<'a>(
    payload: &'a [u8],
    computed: &[u8; 32],
) -> Result<&'a [u8], DeltaError> {
    let (json, trailer) = split_delta(payload)?;
    if computed.as_slice() != trailer {
        return Err(DeltaError::HashMismatch {
            json_len: json.len(),
            trailer: hex(trailer),
            computed: hex(computed),
        });
    }
    Ok(json)
}

/// Checks the trailing SHA-256 of a payload and returns the JSON part.
pub fn verify_delta(payload: &[u8]) -> Result<&[u8], DeltaError> {
    let (json, _) = split_delta(payload)?;
    check_delta_hash(payload, &Sha256::digest(json).into())
}

/// Verifies and decodes a payload into its events, in order.
pub fn decode_delta(payload: &[u8]) -> Result<Vec<Event>, DeltaError> {
    parse_events(verify_delta(payload)?)
}

/// What the first pass of a compaction needs of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    /// PUT or DELETE.
    pub kind: EventType,
    /// The key.
    pub key: Vec<u8>,
    /// The event's revision.
    pub mod_revision: i64,
}

/// Parses a delta's JSON (whose hash was checked) for the events' types,
/// keys and revisions only: values are skipped, not decoded.
pub fn parse_event_keys(json: &[u8]) -> Result<Vec<EventKey>, DeltaError> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "etcdEvent")]
        etcd_event: Option<Ev>,
    }
    #[derive(Deserialize)]
    struct Ev {
        #[serde(rename = "type")]
        kind: Option<i64>,
        kv: Option<Kv>,
    }
    #[derive(Deserialize)]
    struct Kv {
        key: Option<String>,
        mod_revision: Option<i64>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(json).map_err(DeltaError::Json)?;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let bad = |reason: String| DeltaError::Event { index, reason };
            let event = entry
                .etcd_event
                .ok_or_else(|| bad("it has no \"etcdEvent\"".into()))?;
            let kind = event_type(event.kind.unwrap_or(0)).map_err(bad)?;
            let kv = event
                .kv
                .ok_or_else(|| bad("its \"etcdEvent\" has no \"kv\"".into()))?;
            let key = decode_go_base64("key", kv.key.as_deref()).map_err(bad)?;
            let mod_revision = kv.mod_revision.unwrap_or(0);
            check_key_and_revision(&key, mod_revision).map_err(bad)?;
            Ok(EventKey {
                kind,
                key,
                mod_revision,
            })
        })
        .collect()
}

fn event_type(wire: i64) -> Result<EventType, String> {
    match wire {
        0 => Ok(EventType::Put),
        1 => Ok(EventType::Delete),
        other => Err(format!(
            "unknown event type {other} (0 is PUT, 1 is DELETE)"
        )),
    }
}

/// One element of a delta as written: the event, the previous key-value
/// (only when the watch asked for it; upstream's does not) and the time it
/// was received, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEntry {
    /// The event.
    pub event: Event,
    /// The key before the event, if recorded.
    pub prev_kv: Option<KeyValue>,
    /// When the sidecar received the event (RFC 3339), if recorded.
    pub time: Option<String>,
}

/// Parses a delta's JSON (whose hash was checked) into its elements, with
/// Go's leniencies: absent and `null` fields are zero values, unknown
/// fields are ignored. Only the structure is checked.
pub fn parse_entries(json: &[u8]) -> Result<Vec<DeltaEntry>, DeltaError> {
    let entries: Vec<EntryIn> = serde_json::from_slice(json).map_err(DeltaError::Json)?;
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            entry
                .into_entry()
                .map_err(|reason| DeltaError::Event { index, reason })
        })
        .collect()
}

/// Parses a delta's JSON (whose hash was checked) into its events, each
/// checked: a key, a positive `mod_revision`, and for a PUT
/// `0 < create_revision <= mod_revision` and `version > 0`.
pub fn parse_events(json: &[u8]) -> Result<Vec<Event>, DeltaError> {
    parse_entries(json)?
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            check_event(&entry.event)
                .map(|()| entry.event)
                .map_err(|reason| DeltaError::Event { index, reason })
        })
        .collect()
}

/// What every event needs: a key and a positive revision.
fn check_key_and_revision(key: &[u8], mod_revision: i64) -> Result<(), String> {
    if key.is_empty() {
        return Err("its key is empty".into());
    }
    if mod_revision <= 0 {
        return Err(format!("its mod_revision {mod_revision} is not positive"));
    }
    Ok(())
}

fn check_event(event: &Event) -> Result<(), String> {
    let kv = &event.kv;
    check_key_and_revision(&kv.key, kv.mod_revision)?;
    if event.kind == EventType::Put
        && (kv.create_revision <= 0 || kv.create_revision > kv.mod_revision || kv.version <= 0)
    {
        return Err(format!(
            "PUT of key {} has create_revision {}, mod_revision {} and version {}: a PUT needs \
             0 < create_revision <= mod_revision and version > 0",
            hex(&kv.key),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ));
    }
    Ok(())
}

/// Go's decoder leaves absent and `null` fields at their zero value, so
/// every field is optional here.
#[derive(Deserialize)]
struct EntryIn {
    #[serde(rename = "etcdEvent")]
    etcd_event: Option<EventIn>,
    time: Option<String>,
}

#[derive(Deserialize)]
struct EventIn {
    #[serde(rename = "type")]
    kind: Option<i64>,
    kv: Option<KeyValueIn>,
    prev_kv: Option<KeyValueIn>,
}

#[derive(Deserialize)]
struct KeyValueIn {
    key: Option<String>,
    create_revision: Option<i64>,
    mod_revision: Option<i64>,
    version: Option<i64>,
    value: Option<String>,
    lease: Option<i64>,
}

impl EntryIn {
    fn into_entry(self) -> Result<DeltaEntry, String> {
        let event = self.etcd_event.ok_or("it has no \"etcdEvent\"")?;
        let kind = event_type(event.kind.unwrap_or(0))?;
        let kv = event
            .kv
            .ok_or("its \"etcdEvent\" has no \"kv\"")?
            .into_key_value()
            .map_err(|e| format!("\"kv\": {e}"))?;
        let prev_kv = event
            .prev_kv
            .map(KeyValueIn::into_key_value)
            .transpose()
            .map_err(|e| format!("\"prev_kv\": {e}"))?;
        Ok(DeltaEntry {
            event: Event { kind, kv },
            prev_kv,
            time: self.time,
        })
    }
}

impl KeyValueIn {
    fn into_key_value(self) -> Result<KeyValue, String> {
        Ok(KeyValue {
            key: decode_go_base64("key", self.key.as_deref())?,
            create_revision: self.create_revision.unwrap_or(0),
            mod_revision: self.mod_revision.unwrap_or(0),
            version: self.version.unwrap_or(0),
            value: decode_go_base64("value", self.value.as_deref())?,
            lease: self.lease.unwrap_or(0),
        })
    }
}

/// Decodes one base64 field of Go's JSON (absent is empty).
pub fn decode_go_base64(field: &str, text: Option<&str>) -> Result<Vec<u8>, String> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => GO_BASE64
            .decode(text)
            .map_err(|e| format!("\"{field}\" is not base64: {e}")),
    }
}

/// Encodes bytes as Go's JSON does for `[]byte`.
pub fn encode_go_base64(bytes: &[u8]) -> String {
    GO_BASE64.encode(bytes)
}

/// Appends one element of a delta's JSON array to `out`, byte for byte as
/// the Go sidecar writes it: `{"etcdEvent":{"type":..,"kv":{..},
/// "prev_kv":{..}},"time":"<time>"}` in the Go structs' field order, zero
/// fields omitted, bytes in base64. `time` is written as given (Go's
/// `RFC3339Nano`). On error `out` may hold part of the element.
pub fn write_entry(
    out: &mut Vec<u8>,
    kind: EventType,
    kv: &KeyValue,
    prev_kv: Option<&KeyValue>,
    time: &str,
) -> Result<(), serde_json::Error> {
    let entry = EntryOut {
        etcd_event: EventOut {
            kind: kind.wire_value(),
            kv: KeyValueOut::from(kv),
            prev_kv: prev_kv.map(KeyValueOut::from),
        },
        time,
    };
    serde_json::to_writer(out, &entry)
}

/// Encodes events as a delta payload (JSON plus SHA-256) with one `time`
/// for all, as the sidecar's snapshotter writes them; for tests and tools.
pub fn encode_delta(events: &[Event], time: &str) -> Vec<u8> {
    let mut payload = vec![b'['];
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            payload.push(b',');
        }
        // Serializing these structs into memory cannot fail.
        let _ = write_entry(&mut payload, e.kind, &e.kv, None, time);
    }
    payload.push(b']');
    let digest = Sha256::digest(&payload);
    payload.extend_from_slice(&digest);
    payload
}

// ---- wire structs of the encoder (Go field order and `omitempty`) ----

#[derive(Serialize)]
struct EntryOut<'a> {
    #[serde(rename = "etcdEvent")]
    etcd_event: EventOut<'a>,
    time: &'a str,
}

#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(rename = "type", skip_serializing_if = "is_zero")]
    kind: i64,
    kv: KeyValueOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_kv: Option<KeyValueOut<'a>>,
}

#[derive(Serialize)]
struct KeyValueOut<'a> {
    #[serde(
        skip_serializing_if = "<[u8]>::is_empty",
        serialize_with = "base64_out"
    )]
    key: &'a [u8],
    #[serde(skip_serializing_if = "is_zero")]
    create_revision: i64,
    #[serde(skip_serializing_if = "is_zero")]
    mod_revision: i64,
    #[serde(skip_serializing_if = "is_zero")]
    version: i64,
    #[serde(
        skip_serializing_if = "<[u8]>::is_empty",
        serialize_with = "base64_out"
    )]
    value: &'a [u8],
    #[serde(skip_serializing_if = "is_zero")]
    lease: i64,
}

impl<'a> From<&'a KeyValue> for KeyValueOut<'a> {
    fn from(kv: &'a KeyValue) -> Self {
        KeyValueOut {
            key: &kv.key,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            value: &kv.value,
            lease: kv.lease,
        }
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn base64_out<S: serde::Serializer>(bytes: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode_go_base64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn put(key: &str, rev: i64, value: &str) -> Event {
        Event {
            kind: EventType::Put,
            kv: KeyValue {
                key: key.into(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                value: value.into(),
                lease: 7,
            },
        }
    }

    #[test]
    fn round_trips_and_reads_upstream_shape() {
        let del = Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: b"k".to_vec(),
                mod_revision: 9,
                ..Default::default()
            },
        };
        let events = vec![put("k", 8, "v"), del];
        let payload = encode_delta(&events, "2024-01-01T00:00:00Z");
        assert_eq!(decode_delta(&payload).unwrap(), events);
        // Upstream issue #287's shape: no type, no lease, time with nanos.
        let json = br#"[{"etcdEvent":{"kv":{"key":"L3Jl","create_revision":42004,"mod_revision":69263102,"version":4511635,"value":"azhz"}},"time":"2020-06-03T10:19:43.497498417Z"}]"#;
        let mut p = json.to_vec();
        p.extend(Sha256::digest(json));
        let e = decode_delta(&p).unwrap();
        assert_eq!(e[0].kv.mod_revision, 69_263_102);
        assert_eq!(e[0].kv.key, b"/re");
    }

    #[test]
    fn writes_go_field_order_and_omits_zero_fields() {
        let del = Event {
            kind: EventType::Delete,
            kv: KeyValue {
                key: b"k".to_vec(),
                mod_revision: 9,
                ..Default::default()
            },
        };
        let payload = encode_delta(&[put("k", 8, "v"), del], "2024-01-01T00:00:00Z");
        let (json, hash) = split_delta(&payload).unwrap();
        assert_eq!(
            std::str::from_utf8(json).unwrap(),
            concat!(
                r#"[{"etcdEvent":{"kv":{"key":"aw==","create_revision":8,"mod_revision":8,"#,
                r#""version":1,"value":"dg==","lease":7}},"time":"2024-01-01T00:00:00Z"},"#,
                r#"{"etcdEvent":{"type":1,"kv":{"key":"aw==","mod_revision":9}},"#,
                r#""time":"2024-01-01T00:00:00Z"}]"#
            )
        );
        assert_eq!(hash, Sha256::digest(json).as_slice());
        let mut one = Vec::new();
        write_entry(
            &mut one,
            EventType::Put,
            &KeyValue::default(),
            Some(&KeyValue::default()),
            "t",
        )
        .unwrap();
        assert_eq!(one, br#"{"etcdEvent":{"kv":{},"prev_kv":{}},"time":"t"}"#);
    }

    #[test]
    fn refuses_damage_with_the_reason() {
        let payload = encode_delta(&[put("k", 3, "v")], "t");
        let mut flipped = payload.clone();
        flipped[5] ^= 1;
        assert!(matches!(
            decode_delta(&flipped),
            Err(DeltaError::HashMismatch { .. })
        ));
        assert!(matches!(
            decode_delta(&payload[..20]),
            Err(DeltaError::TooShort { .. }) | Err(DeltaError::HashMismatch { .. })
        ));
        for (json, what) in [
            (&br#"{"a":1}"#[..], "not a list"),
            (br#"[{"etcdEvent":{"type":5,"kv":{"key":"aw==","mod_revision":1}}}]"#, "unknown event type 5"),
            (br#"[{"etcdEvent":{"kv":{"key":"a!","mod_revision":1}}}]"#, "not base64"),
            (br#"[{"etcdEvent":{"kv":{"key":"aw==","mod_revision":0}}}]"#, "not positive"),
            (br#"[{"etcdEvent":{"kv":{"key":"aw==","mod_revision":4,"create_revision":5,"version":1}}}]"#, "create_revision"),
            (br#"[{"time":"x"}]"#, "no \"etcdEvent\""),
        ] {
            let mut p = json.to_vec();
            p.extend(Sha256::digest(json));
            let err = decode_delta(&p).unwrap_err().to_string();
            assert!(err.contains(what) || (what == "not a list" && err.contains("not a list")), "{what}: {err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]
        /// Any bytes with a matching hash decode or fail cleanly.
        #[test]
        fn arbitrary_json_never_panics(json in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut p = json.clone();
            p.extend(Sha256::digest(&json));
            let _ = decode_delta(&p);
        }

        /// Damage anywhere in a real payload is an error, never a panic.
        #[test]
        fn damaged_payloads_are_refused(at in 0usize..200, bit in 0u8..8) {
            let payload = encode_delta(&[put("key", 3, "value"), put("other", 4, "x")], "t");
            let mut p = payload.clone();
            let i = at % p.len();
            p[i] ^= 1 << bit;
            prop_assert!(decode_delta(&p).is_err());
        }
    }
}
