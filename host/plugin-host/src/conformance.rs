//! The conformance suite every provider plugin must pass, as a library:
//! run by this crate's tests against a local directory and MinIO, and by
//! `druid plugin test` against any plugin and store (a plugin author's
//! check before shipping).
//!
//! Every check runs below one prefix of the store, which the suite empties
//! at the end; a failing check does not stop the others (each starts from
//! what it writes itself). Nothing panics: an unexpected error is the
//! check's failure, with the store's message.

use std::time::Instant;

use crate::store::{ByteRange, SnapshotStore, StoreError};

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `round trip of 5 MiB`.
    pub name: String,
    /// `Ok`, or what went wrong.
    pub outcome: Result<(), String>,
    /// How long it took, in seconds.
    pub seconds: f64,
}

/// The outcome of a run of the suite.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every check, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The failed checks.
    pub fn failures(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.outcome.is_err()).collect()
    }

    /// A plain-text table: one line per check with `pass`/`FAIL`, its time
    /// and, for a failure, why.
    pub fn table(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let (mark, why) = match &c.outcome {
                Ok(()) => ("pass", String::new()),
                Err(e) => ("FAIL", format!("  {e}")),
            };
            out.push_str(&format!(
                "{mark}  {:<width$}  {:>7.2}s{why}\n",
                c.name, c.seconds
            ));
        }
        let failed = self.failures().len();
        out.push_str(&format!(
            "{} checks, {} passed, {failed} failed\n",
            self.checks.len(),
            self.checks.len() - failed
        ));
        out
    }
}

/// Deterministic test data: `len` bytes from a xorshift generator seeded
/// with `seed` (incompressible, so compression in a store cannot hide a
/// lost byte).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    out
}

/// Keys listed in a check of paging: more than one page of 1,000.
const MANY: usize = 1_005;

/// Runs the suite below `prefix` (e.g. `druid-conformance/`; it should be
/// empty) and removes what it wrote.
pub async fn run(store: &dyn SnapshotStore, prefix: &str) -> Report {
    let mut report = Report::default();
    let key = |k: &str| format!("{prefix}{k}");

    for (i, size) in [0usize, 1, 5 << 20, 100 << 20].into_iter().enumerate() {
        let name = format!("round trip of {}", human(size));
        let k = key(&format!("roundtrip-{size}"));
        let data = pattern(i as u64 + 1, size);
        check(&mut report, name, round_trip(store, &k, &data)).await;
    }

    let ranged = key("ranged");
    let data = pattern(42, 1 << 20);
    check(
        &mut report,
        "ranged reads (middle, open-ended)".into(),
        async {
            store.put(&ranged, &data).await.map_err(said)?;
            let mid = store
                .get(
                    &ranged,
                    Some(ByteRange {
                        start: 1000,
                        length: Some(5000),
                    }),
                )
                .await
                .map_err(said)?;
            ensure(mid == data[1000..6000], "bytes 1000..6000 read back differ")?;
            let tail = store
                .get(
                    &ranged,
                    Some(ByteRange {
                        start: (1 << 20) - 10,
                        length: None,
                    }),
                )
                .await
                .map_err(said)?;
            ensure(
                tail == data[(1 << 20) - 10..],
                "the last 10 bytes read back differ",
            )
        },
    )
    .await;

    let many = key("many/");
    check(&mut report, format!("listing {MANY} keys across pages"), async {
        for i in 0..MANY {
            store
                .put(&format!("{many}{i:05}"), &[1])
                .await
                .map_err(said)?;
        }
        let first = store.list_page(&many, None, 1000).await.map_err(said)?;
        ensure(
            first.objects.len() == 1000,
            &format!("a first page of 1,000 asked for holds {}", first.objects.len()),
        )?;
        ensure(
            first.next_token.is_some(),
            "a full first page does not say there is more (no next token)",
        )?;
        let all = store.list(&many).await.map_err(said)?;
        let keys: Vec<String> = all.iter().map(|o| o.key.clone()).collect();
        let expected: Vec<String> = (0..MANY).map(|i| format!("{many}{i:05}")).collect();
        ensure(
            keys == expected,
            &format!(
                "the listing is not every key once, in byte order ({} keys listed)",
                keys.len()
            ),
        )?;
        ensure(
            all.iter().all(|o| o.size == 1),
            "a listed size is not the object's size",
        )?;
        let some = store.list(&format!("{many}0100")).await.map_err(said)?;
        ensure(
            some.len() == 5,
            &format!(
                "the prefix {many}0100 lists {} keys, not 5: a prefix is a string prefix, not a directory",
                some.len()
            ),
        )
    })
    .await;

    check(&mut report, "delete, then not found".into(), async {
        store.delete(&ranged).await.map_err(said)?;
        not_found(store.head(&ranged).await, "head after delete")?;
        not_found(store.get(&ranged, None).await, "download after delete")?;
        store
            .delete(&ranged)
            .await
            .map_err(|e| format!("deleting a missing key must succeed: {e}"))?;
        not_found(
            store.head(&key("never-written")).await,
            "head of a key never written",
        )
    })
    .await;

    let aborted = key("aborted");
    check(
        &mut report,
        "an aborted upload leaves nothing".into(),
        async {
            let mut up = store.upload(&aborted, Some(10 << 20)).await.map_err(said)?;
            up.write(&pattern(7, 9 << 20)).await.map_err(said)?;
            up.abort().await.map_err(said)?;
            not_found(store.head(&aborted).await, "head after abort")?;
            let left = store.list(&aborted).await.map_err(said)?;
            ensure(
                left.is_empty(),
                &format!("{} objects listed after abort", left.len()),
            )
        },
    )
    .await;

    check(&mut report, "clean up".into(), async {
        for o in store.list(prefix).await.map_err(said)? {
            store.delete(&o.key).await.map_err(said)?;
        }
        let left = store.list(prefix).await.map_err(said)?;
        ensure(
            left.is_empty(),
            &format!(
                "{} objects left below {prefix:?} after deleting them",
                left.len()
            ),
        )
    })
    .await;
    report
}

/// Writes `data` as `key` in uneven chunks, then checks the size `finish`
/// and `head` report and the content read back.
async fn round_trip(store: &dyn SnapshotStore, key: &str, data: &[u8]) -> Result<(), String> {
    let mut up = store
        .upload(key, Some(data.len() as u64))
        .await
        .map_err(said)?;
    // Uneven chunks, so part boundaries never line up with writes.
    for chunk in data.chunks(3 << 20 | 12_345) {
        up.write(chunk).await.map_err(said)?;
    }
    let info = up.finish().await.map_err(said)?;
    ensure(
        info.key == key,
        &format!("finish reported the key {:?}", info.key),
    )?;
    ensure(
        info.size == data.len() as u64,
        &format!(
            "finish reported {} bytes, {} were written",
            info.size,
            data.len()
        ),
    )?;
    let head = store.head(key).await.map_err(said)?;
    ensure(
        head.size == data.len() as u64,
        &format!(
            "head reports {} bytes, {} were written",
            head.size,
            data.len()
        ),
    )?;
    let back = store.get(key, None).await.map_err(said)?;
    ensure(
        back.len() == data.len(),
        &format!(
            "{} bytes read back, {} were written",
            back.len(),
            data.len()
        ),
    )?;
    ensure(back == data, "the content read back differs")
}

async fn check(report: &mut Report, name: String, body: impl Future<Output = Result<(), String>>) {
    let started = Instant::now();
    let outcome = body.await;
    report.checks.push(Check {
        name,
        outcome,
        seconds: started.elapsed().as_secs_f64(),
    });
}

fn ensure(ok: bool, why: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why.to_string()) }
}

fn said(e: StoreError) -> String {
    e.to_string()
}

fn not_found<T>(result: Result<T, StoreError>, what: &str) -> Result<(), String> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(format!("{what}: expected not-found, got: {e}")),
        Ok(_) => Err(format!("{what}: expected not-found, but it succeeded")),
    }
}

fn human(size: usize) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{size} B")
    }
}
