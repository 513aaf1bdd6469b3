//! etcd's mvcc schema on top of bbolt: revision keys and the `meta` bucket.

use crate::{Db, Error, ReadAt, hex};

/// The bucket of every key revision: revision key -> `mvccpb.KeyValue`.
pub const KEY_BUCKET: &[u8] = b"key";
/// The bucket of etcd's bookkeeping (consistent index, compaction).
pub const META_BUCKET: &[u8] = b"meta";
/// The bucket of leases: lease id (8 bytes, big-endian) -> `leasepb.Lease`.
pub const LEASE_BUCKET: &[u8] = b"lease";
/// Membership: member id (hex) -> the member as JSON.
pub const MEMBERS_BUCKET: &[u8] = b"members";
/// Removed members: member id (hex) -> `removed`.
pub const MEMBERS_REMOVED_BUCKET: &[u8] = b"members_removed";
/// The cluster's version.
pub const CLUSTER_BUCKET: &[u8] = b"cluster";
/// Raised alarms (e.g. NOSPACE).
pub const ALARM_BUCKET: &[u8] = b"alarm";
/// Authentication on/off and its revision.
pub const AUTH_BUCKET: &[u8] = b"auth";
/// Auth users: user name -> `authpb.User`.
pub const AUTH_USERS_BUCKET: &[u8] = b"authUsers";
/// Auth roles: role name -> `authpb.Role`.
pub const AUTH_ROLES_BUCKET: &[u8] = b"authRoles";
/// Every bucket etcd 3.4 and 3.5 create. The compaction rewrites `key`,
/// `lease` and `meta` and copies the others.
pub const ETCD_BUCKETS: [&[u8]; 10] = [
    ALARM_BUCKET,
    AUTH_BUCKET,
    AUTH_ROLES_BUCKET,
    AUTH_USERS_BUCKET,
    CLUSTER_BUCKET,
    KEY_BUCKET,
    LEASE_BUCKET,
    MEMBERS_BUCKET,
    MEMBERS_REMOVED_BUCKET,
    META_BUCKET,
];
/// `meta` key (etcd 3.5+): the raft term of the last applied entry (u64
/// big-endian).
pub const TERM_KEY: &[u8] = b"term";
/// `meta` key (etcd 3.6+): the storage schema version, as text
/// (`3.6.0`, `3.7.0`: the minor version of the etcd that last migrated the
/// data). Absent in data written by 3.5 and older.
pub const STORAGE_VERSION_KEY: &[u8] = b"storageVersion";
/// `cluster` key (etcd 3.4+): the cluster's version as text (`3.5.0`):
/// the lowest minor version among the members when it was last decided,
/// lowered by etcd's downgrade procedure. Absent until a new cluster has
/// decided it.
pub const CLUSTER_VERSION_KEY: &[u8] = b"clusterVersion";
/// `meta` key: the index of the last applied raft entry (u64 big-endian).
pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
/// `meta` key: the revision of the last finished compaction (a revision key).
pub const FINISHED_COMPACT_KEY: &[u8] = b"finishedCompactRev";
/// `meta` key: the revision of the last scheduled compaction (a revision
/// key).
pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";
/// Length of a revision key: 8-byte main, `_`, 8-byte sub.
pub const REVISION_KEY_LEN: usize = 17;
/// The byte that follows a revision key of a deletion (a tombstone).
pub const TOMBSTONE_MARK: u8 = b't';

/// An etcd revision: the main revision (one per transaction) and the sub
/// revision (the change's index inside the transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// The main revision.
    pub main: i64,
    /// The sub revision.
    pub sub: i64,
}

/// A parsed key of the `key` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RevisionKey {
    /// The revision.
    pub revision: Revision,
    /// Whether the key marks a deletion (`t` appended).
    pub tombstone: bool,
}

impl Revision {
    /// The 17-byte key of this revision (no tombstone mark).
    pub fn to_key(self) -> [u8; REVISION_KEY_LEN] {
        let mut k = [0u8; REVISION_KEY_LEN];
        k[..8].copy_from_slice(&self.main.to_be_bytes());
        k[8] = b'_';
        k[9..].copy_from_slice(&self.sub.to_be_bytes());
        k
    }
}

/// Parses a key of etcd's `key` bucket: 8-byte big-endian main revision,
/// `_`, 8-byte big-endian sub revision, and an optional trailing `t` that
/// marks a tombstone.
pub fn revision_of_key(key: &[u8]) -> Result<RevisionKey, Error> {
    let bad = |reason: String| Error::Schema {
        bucket: "key".into(),
        key: hex(key),
        reason,
    };
    let tombstone = match key.len() {
        REVISION_KEY_LEN => false,
        n if n == REVISION_KEY_LEN + 1 => {
            if key[REVISION_KEY_LEN] != TOMBSTONE_MARK {
                return Err(bad(format!(
                    "byte 17 is {:#04x}, not the tombstone mark 't'",
                    key[REVISION_KEY_LEN]
                )));
            }
            true
        }
        n => {
            return Err(bad(format!(
                "{n} bytes, not a revision key ({REVISION_KEY_LEN} or {})",
                REVISION_KEY_LEN + 1
            )));
        }
    };
    if key[8] != b'_' {
        return Err(bad(format!("byte 8 is {:#04x}, not '_'", key[8])));
    }
    let word = |range: std::ops::Range<usize>, what: &str| -> Result<i64, Error> {
        let b: [u8; 8] = key
            .get(range)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad(format!("no room for the {what} revision")))?;
        i64::try_from(u64::from_be_bytes(b))
            .map_err(|_| bad(format!("{what} revision is negative as an int64")))
    };
    Ok(RevisionKey {
        revision: Revision {
            main: word(0..8, "main")?,
            sub: word(9..17, "sub")?,
        },
        tombstone,
    })
}

impl<R: ReadAt> Db<R> {
    fn required_bucket(&self, name: &[u8]) -> Result<crate::Bucket, Error> {
        self.bucket(name)?.ok_or_else(|| Error::MissingBucket {
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }

    fn meta_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let meta = self.required_bucket(META_BUCKET)?;
        self.value_in(&meta, "meta", key)
    }

    fn value_in(
        &self,
        bucket: &crate::Bucket,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        match self.get(bucket, key)? {
            Some(e) if e.is_bucket => Err(Error::Schema {
                bucket: name.into(),
                key: hex(key),
                reason: "is a bucket, not a value".into(),
            }),
            Some(e) => Ok(Some(e.value)),
            None => Ok(None),
        }
    }

    fn text(value: Vec<u8>, bucket: &str, key: &[u8]) -> Result<String, Error> {
        String::from_utf8(value).map_err(|_| Error::Schema {
            bucket: bucket.into(),
            key: hex(key),
            reason: "value is not UTF-8 text".into(),
        })
    }

    /// The main revision of the last key of the `key` bucket: the data's
    /// revision as etcd-backup-restore reads it. `None` when the bucket is
    /// empty (a fresh etcd). After a compaction that removed the newest
    /// tombstones, etcd's own revision can be higher.
    pub fn last_revision(&self) -> Result<Option<i64>, Error> {
        let bucket = self.required_bucket(KEY_BUCKET)?;
        match self.last(&bucket)? {
            Some(e) => Ok(Some(revision_of_key(&e.key)?.revision.main)),
            None => Ok(None),
        }
    }

    /// The `meta` bucket's `consistent_index` (u64 big-endian): the index of
    /// the last raft entry applied to this database. `None` when absent.
    pub fn consistent_index(&self) -> Result<Option<u64>, Error> {
        self.meta_u64(CONSISTENT_INDEX_KEY)
    }

    /// The `meta` bucket's `term` (etcd 3.5+; u64 big-endian): the raft
    /// term of the last applied entry. `None` when absent (etcd 3.4).
    pub fn term(&self) -> Result<Option<u64>, Error> {
        self.meta_u64(TERM_KEY)
    }

    /// The `meta` bucket's `storageVersion` (etcd 3.6+), e.g. `3.6.0`.
    /// `None` when absent (data written by etcd 3.5 or older).
    pub fn storage_version(&self) -> Result<Option<String>, Error> {
        self.meta_value(STORAGE_VERSION_KEY)?
            .map(|v| Self::text(v, "meta", STORAGE_VERSION_KEY))
            .transpose()
    }

    /// The `cluster` bucket's `clusterVersion`, e.g. `3.5.0`: the version
    /// the cluster ran at when this database was written. `None` when the
    /// bucket or the key is absent (a cluster that had not decided it).
    pub fn cluster_version(&self) -> Result<Option<String>, Error> {
        let Some(cluster) = self.bucket(CLUSTER_BUCKET)? else {
            return Ok(None);
        };
        self.value_in(&cluster, "cluster", CLUSTER_VERSION_KEY)?
            .map(|v| Self::text(v, "cluster", CLUSTER_VERSION_KEY))
            .transpose()
    }

    fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, Error> {
        let Some(v) = self.meta_value(key)? else {
            return Ok(None);
        };
        let b: [u8; 8] = v.as_slice().try_into().map_err(|_| Error::Schema {
            bucket: "meta".into(),
            key: hex(key),
            reason: format!("value of {} bytes, not 8", v.len()),
        })?;
        Ok(Some(u64::from_be_bytes(b)))
    }

    fn compact_revision(&self, key: &[u8]) -> Result<Option<Revision>, Error> {
        let Some(v) = self.meta_value(key)? else {
            return Ok(None);
        };
        let rk = revision_of_key(&v).map_err(|e| Error::Schema {
            bucket: "meta".into(),
            key: hex(key),
            reason: format!("value is not a revision: {e}"),
        })?;
        Ok(Some(rk.revision))
    }

    /// The revision of the last finished compaction (`meta` bucket's
    /// `finishedCompactRev`), `None` if etcd never compacted.
    pub fn finished_compact_revision(&self) -> Result<Option<Revision>, Error> {
        self.compact_revision(FINISHED_COMPACT_KEY)
    }

    /// The revision of the last scheduled compaction (`meta` bucket's
    /// `scheduledCompactRev`), `None` if etcd never compacted.
    pub fn scheduled_compact_revision(&self) -> Result<Option<Revision>, Error> {
        self.compact_revision(SCHEDULED_COMPACT_KEY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_revision_keys() {
        let r = Revision { main: 42, sub: 3 };
        let k = r.to_key();
        assert_eq!(
            revision_of_key(&k).unwrap(),
            RevisionKey {
                revision: r,
                tombstone: false
            }
        );
        let mut t = k.to_vec();
        t.push(b't');
        assert!(revision_of_key(&t).unwrap().tombstone);
        // Revision keys sort like revisions.
        let later = Revision { main: 256, sub: 0 }.to_key();
        assert!(k[..] < later[..]);
    }

    #[test]
    fn rejects_malformed_revision_keys() {
        let k = Revision { main: 1, sub: 0 }.to_key();
        let mut wrong_mark = k.to_vec();
        wrong_mark.push(b'x');
        let mut no_sep = k;
        no_sep[8] = b'-';
        let mut negative = k;
        negative[0] = 0x80;
        for bad in [
            &k[..16],
            &wrong_mark[..],
            &no_sep[..],
            &negative[..],
            &[][..],
        ] {
            assert!(revision_of_key(bad).is_err(), "{bad:?}");
        }
    }
}
