//! etcd's protobuf messages as the database stores them (`mvccpb.KeyValue`
//! in the `key` bucket, `leasepb.Lease` in the `lease` bucket) and the
//! watch events that delta snapshots carry.
//!
//! etcd marshals these with gogo-protobuf: proto3, fields in tag order,
//! zero values omitted. prost encodes the same bytes, so a value decoded
//! and encoded again is unchanged.

/// A key-value pair: `mvccpb.KeyValue`, the value of every `key` bucket
/// entry (a tombstone carries only the key).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The revision of the key's last creation.
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// The revision of the key's last modification.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// The number of modifications since creation (1 for a new key).
    #[prost(int64, tag = "4")]
    pub version: i64,
    /// The value (empty for a DELETE event).
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// The lease attached to the key, or 0.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// A lease: `leasepb.Lease`, the value of a `lease` bucket entry whose key
/// is the lease ID as 8 big-endian bytes.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Lease {
    /// The lease ID.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// The time to live granted, in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// The remaining time to live at the last checkpoint (0 when etcd does
    /// not checkpoint leases).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// The `lease` bucket key of a lease ID.
pub fn lease_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The key was created or modified (`0` on the wire).
    #[default]
    Put,
    /// The key was deleted (`1` on the wire).
    Delete,
}

impl EventType {
    /// The numeric value of `mvccpb.Event_EventType`.
    pub const fn wire_value(self) -> i64 {
        match self {
            EventType::Put => 0,
            EventType::Delete => 1,
        }
    }
}

/// A watch event as a delta snapshot records it (`prev_kv` is never set by
/// the snapshotter's watch and is not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// PUT or DELETE.
    pub kind: EventType,
    /// The key after the event; for a DELETE, the key and the deletion
    /// revision as `mod_revision`.
    pub kv: KeyValue,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn key_value_encodes_as_gogo_does() {
        // Bytes of mvccpb.KeyValue{Key:"a", CreateRevision:2, ModRevision:3,
        // Version:1, Value:"v"} as etcd stores them.
        let kv = KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            value: b"v".to_vec(),
            lease: 0,
        };
        let bytes = kv.encode_to_vec();
        assert_eq!(
            bytes,
            [0x0a, 1, b'a', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 1, b'v']
        );
        assert_eq!(KeyValue::decode(bytes.as_slice()).unwrap(), kv);
    }

    #[test]
    fn lease_round_trips_and_keys_sort_by_id() {
        let l = Lease {
            id: 0x1234,
            ttl: 60,
            remaining_ttl: 0,
        };
        assert_eq!(Lease::decode(l.encode_to_vec().as_slice()).unwrap(), l);
        assert!(lease_key(1) < lease_key(256));
    }
}
