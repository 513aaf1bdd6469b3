//! Uploads in parts: a part buffer (bytes go in as the host sends them,
//! full parts come out, no more than one part is ever held in memory) and
//! the upload's sequence over a store's requests ([`PartSink`]): an
//! object that fits in one part is one request on `finish`; a larger one
//! starts an upload in parts when its first part fills, sends each part,
//! and completes it on `finish`; `abort`, a failed `finish` followed by a
//! drop, or a drop without `finish` abort a started upload. After a failed
//! request the upload refuses further writes.

use std::cell::RefCell;

use crate::store::{GuestUpload, ObjectInfo, StoreError};

/// Collects written bytes into parts of a fixed size.
#[derive(Debug)]
pub struct PartBuffer {
    part_size: usize,
    buf: Vec<u8>,
    total: u64,
}

impl PartBuffer {
    /// A buffer that emits parts of `part_size` bytes (at least 1).
    pub fn new(part_size: usize) -> Self {
        Self {
            part_size: part_size.max(1),
            buf: Vec::new(),
            total: 0,
        }
    }

    /// The part size.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Bytes written so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes waiting in the buffer.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Appends `data`, calling `on_part` with each part that fills up.
    pub fn write<E>(
        &mut self,
        mut data: &[u8],
        mut on_part: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.total += data.len() as u64;
        while !data.is_empty() {
            if self.buf.capacity() < self.part_size {
                self.buf.reserve_exact(self.part_size - self.buf.len());
            }
            let room = self.part_size - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == self.part_size {
                on_part(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Takes what is left (the last, short part), emptying the buffer.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// The requests of one object's upload in parts, as a store makes them.
pub trait PartSink {
    /// What a started upload in parts is known by (S3: its upload ID; a
    /// store that needs none: `()`).
    type Session: Clone;
    /// The most parts one object may have.
    const MAX_PARTS: usize;
    /// Stores the whole object with one request (it fit in one part).
    fn put_whole(&self, body: &[u8]) -> Result<(), StoreError>;
    /// Starts an upload in parts (when its first part is full).
    fn begin(&self) -> Result<Self::Session, StoreError>;
    /// Sends part `index` (from 0); returns what `complete` needs of it
    /// (an ETag, a block id).
    fn put_part(
        &self,
        session: &Self::Session,
        index: usize,
        body: &[u8],
    ) -> Result<String, StoreError>;
    /// Makes the object of the parts, in order.
    fn complete(&self, session: &Self::Session, parts: &[String]) -> Result<(), StoreError>;
    /// Drops a started upload's parts.
    fn abort(&self, session: &Self::Session) -> Result<(), StoreError>;
}

#[derive(Debug)]
enum Phase {
    Open,
    Finished,
    Aborted,
    Failed(StoreError),
}

struct State<T> {
    buffer: PartBuffer,
    session: Option<T>,
    parts: Vec<String>,
    phase: Phase,
}

/// An object being uploaded in parts through a [`PartSink`].
pub struct PartUpload<S: PartSink> {
    key: String,
    sink: S,
    state: RefCell<State<S::Session>>,
}

impl<S: PartSink> PartUpload<S> {
    /// An upload of `key` with parts of `part_size` bytes.
    pub fn new(key: String, sink: S, part_size: usize) -> Self {
        Self {
            key,
            sink,
            state: RefCell::new(State {
                buffer: PartBuffer::new(part_size),
                session: None,
                parts: Vec::new(),
                phase: Phase::Open,
            }),
        }
    }

    /// The sink (for tests).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn check_open(&self, phase: &Phase) -> Result<(), StoreError> {
        match phase {
            Phase::Open => Ok(()),
            Phase::Finished => Err(StoreError::Other(format!(
                "upload of {:?}: already finished",
                self.key
            ))),
            Phase::Aborted => Err(StoreError::Other(format!(
                "upload of {:?}: already aborted",
                self.key
            ))),
            Phase::Failed(e) => Err(e.clone()),
        }
    }

    /// Sends one part, starting the upload in parts first if needed.
    fn send_part(
        sink: &S,
        key: &str,
        session: &mut Option<S::Session>,
        parts: &mut Vec<String>,
        part: &[u8],
    ) -> Result<(), StoreError> {
        if parts.len() >= S::MAX_PARTS {
            return Err(StoreError::Other(format!(
                "upload of {key:?}: more than {} parts of {} bytes: the object is larger than its \
                 size hint allowed for",
                S::MAX_PARTS,
                part.len()
            )));
        }
        let started = match session {
            Some(s) => s.clone(),
            None => {
                let s = sink.begin()?;
                *session = Some(s.clone());
                s
            }
        };
        let token = sink.put_part(&started, parts.len(), part)?;
        parts.push(token);
        Ok(())
    }

    /// Appends bytes; sends each part that fills.
    pub fn write(&self, chunk: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state.borrow_mut();
        self.check_open(&state.phase)?;
        let State {
            buffer,
            session,
            parts,
            ..
        } = &mut *state;
        let result = buffer.write(chunk, |part| {
            Self::send_part(&self.sink, &self.key, session, parts, part)
        });
        if let Err(e) = &result {
            state.phase = Phase::Failed(e.clone());
        }
        result
    }

    /// Completes the object.
    pub fn finish(&self) -> Result<ObjectInfo, StoreError> {
        let mut state = self.state.borrow_mut();
        self.check_open(&state.phase)?;
        let rest = state.buffer.take_rest();
        let result = match state.session.clone() {
            None => self.sink.put_whole(&rest),
            Some(started) => {
                let State { session, parts, .. } = &mut *state;
                let sent = if rest.is_empty() {
                    Ok(())
                } else {
                    Self::send_part(&self.sink, &self.key, session, parts, &rest)
                };
                sent.and_then(|()| self.sink.complete(&started, parts))
            }
        };
        drop(rest);
        match result {
            Ok(()) => {
                state.phase = Phase::Finished;
                state.session = None;
                Ok(ObjectInfo {
                    key: self.key.clone(),
                    size: state.buffer.total(),
                    last_modified: None,
                })
            }
            Err(e) => {
                state.phase = Phase::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Gives up: aborts the upload in parts, if one was started.
    pub fn abort(&self) -> Result<(), StoreError> {
        let mut state = self.state.borrow_mut();
        if matches!(state.phase, Phase::Finished) {
            return Err(StoreError::Other(format!(
                "upload of {:?}: already finished, nothing to abort (delete the object instead)",
                self.key
            )));
        }
        state.phase = Phase::Aborted;
        drop(state.buffer.take_rest());
        match state.session.take() {
            Some(started) => self.sink.abort(&started).inspect_err(|_| {
                // Keep the session so that drop tries again.
                state.session = Some(started.clone());
            }),
            None => Ok(()),
        }
    }
}

impl<S: PartSink> Drop for PartUpload<S> {
    fn drop(&mut self) {
        // An upload dropped without finish leaves no parts behind.
        let state = self.state.get_mut();
        if !matches!(state.phase, Phase::Finished)
            && let Some(started) = state.session.take()
        {
            let _ = self.sink.abort(&started);
        }
    }
}

/// A provider's `upload` resource can be the upload itself.
impl<S: PartSink + 'static> GuestUpload for PartUpload<S> {
    fn write(&self, chunk: Vec<u8>) -> Result<(), StoreError> {
        PartUpload::write(self, &chunk)
    }

    fn finish(&self) -> Result<ObjectInfo, StoreError> {
        PartUpload::finish(self)
    }

    fn abort(&self) -> Result<(), StoreError> {
        PartUpload::abort(self)
    }
}

/// The part size for an object of about `size_hint` bytes: at least
/// `min`, large enough for the object to fit in `parts` parts (fewer than
/// the store's limit, for a hint that is a little low), rounded up to a
/// MiB, at most `max`.
pub fn part_size(size_hint: Option<u64>, parts: u64, min: u64, max: u64) -> usize {
    const MIB: u64 = 1 << 20;
    let wanted = size_hint.map_or(0, |s| s.div_ceil(parts.max(1)));
    let size = wanted
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(min, max.max(min));
    usize::try_from(size).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn parts_come_out_whole_and_the_rest_stays() {
        let mut b = PartBuffer::new(4);
        let mut parts: Vec<Vec<u8>> = Vec::new();
        b.write::<()>(&[1, 2, 3], |p| {
            parts.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        b.write::<()>(&[4, 5, 6, 7, 8, 9], |p| {
            parts.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(parts, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        assert_eq!(b.take_rest(), vec![9]);
        assert_eq!(b.total(), 9);
        assert!(b.buffered().is_empty());
    }

    #[test]
    fn an_error_from_the_part_sink_stops_the_write() {
        let mut b = PartBuffer::new(2);
        let r = b.write(&[1, 2, 3], |_| Err("store down"));
        assert_eq!(r, Err("store down"));
    }

    /// Records the requests; fails the ones named in `fail` (a fake
    /// store: it injects the failures a real one cannot be asked for).
    #[derive(Default)]
    struct Fake {
        calls: Rc<RefCell<Vec<String>>>,
        fail: Vec<&'static str>,
    }

    impl Fake {
        fn failing(fail: &[&'static str]) -> Self {
            Fake {
                calls: Rc::default(),
                fail: fail.to_vec(),
            }
        }
        fn call(&self, name: &'static str, detail: String) -> Result<(), StoreError> {
            self.calls
                .borrow_mut()
                .push(format!("{name} {detail}").trim().to_string());
            if self.fail.contains(&name) {
                Err(StoreError::Unavailable(format!("{name} failed")))
            } else {
                Ok(())
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }
    }

    impl PartSink for Fake {
        type Session = String;
        const MAX_PARTS: usize = 3;
        fn put_whole(&self, body: &[u8]) -> Result<(), StoreError> {
            self.call("put", format!("{}", body.len()))
        }
        fn begin(&self) -> Result<String, StoreError> {
            self.call("begin", String::new()).map(|()| "id1".into())
        }
        fn put_part(
            &self,
            session: &String,
            index: usize,
            body: &[u8],
        ) -> Result<String, StoreError> {
            self.call("part", format!("{session} {index} {}", body.len()))
                .map(|()| format!("t{index}"))
        }
        fn complete(&self, session: &String, parts: &[String]) -> Result<(), StoreError> {
            self.call("complete", format!("{session} {}", parts.join(",")))
        }
        fn abort(&self, session: &String) -> Result<(), StoreError> {
            self.call("abort", session.clone())
        }
    }

    #[test]
    fn part_sizes_grow_with_the_hint_within_bounds() {
        let mib = 1 << 20;
        let size = |hint| part_size(hint, 9000, 8 * mib, 512 * mib);
        assert_eq!(size(None), 8 << 20);
        assert_eq!(size(Some(0)), 8 << 20);
        assert_eq!(size(Some(9000 * (8 << 20))), 8 << 20);
        assert_eq!(size(Some(9000 * (8 << 20) + 1)), 9 << 20);
        // 100 GiB / 9000 = 11.38 MiB, rounded up to 12 MiB.
        assert_eq!(size(Some(100 << 30)), 12 << 20);
        assert_eq!(size(Some(u64::MAX)), 512 << 20);
    }

    #[test]
    fn a_small_object_is_one_request_on_finish() {
        let up = PartUpload::new("k".into(), Fake::default(), 4);
        up.write(&[1, 2, 3]).unwrap();
        assert!(up.sink().calls().is_empty());
        let info = up.finish().unwrap();
        assert_eq!((info.key.as_str(), info.size), ("k", 3));
        assert_eq!(up.sink().calls(), vec!["put 3"]);
        let empty = PartUpload::new("k".into(), Fake::default(), 4);
        assert_eq!(empty.finish().unwrap().size, 0);
        assert_eq!(empty.sink().calls(), vec!["put 0"]);
    }

    #[test]
    fn a_large_object_goes_in_parts_with_the_short_part_last() {
        let up = PartUpload::new("k".into(), Fake::default(), 4);
        up.write(&[0; 3]).unwrap();
        up.write(&[0; 6]).unwrap();
        assert_eq!(
            up.sink().calls(),
            vec!["begin", "part id1 0 4", "part id1 1 4"]
        );
        assert_eq!(up.finish().unwrap().size, 9);
        assert_eq!(
            up.sink().calls()[3..],
            ["part id1 2 1", "complete id1 t0,t1,t2"]
        );
        // Finished: no more bytes, and drop aborts nothing.
        assert!(up.write(&[1]).is_err());
        let log = up.sink().calls.clone();
        drop(up);
        assert!(!log.borrow().iter().any(|c| c.starts_with("abort")));
    }

    #[test]
    fn an_exact_multiple_of_the_part_size_sends_no_empty_part() {
        let up = PartUpload::new("k".into(), Fake::default(), 4);
        up.write(&[0; 8]).unwrap();
        up.finish().unwrap();
        assert_eq!(
            up.sink().calls(),
            vec![
                "begin",
                "part id1 0 4",
                "part id1 1 4",
                "complete id1 t0,t1"
            ]
        );
        let one = PartUpload::new("k".into(), Fake::default(), 4);
        one.write(&[0; 4]).unwrap();
        one.finish().unwrap();
        assert_eq!(
            one.sink().calls(),
            vec!["begin", "part id1 0 4", "complete id1 t0"]
        );
    }

    #[test]
    fn more_parts_than_the_store_takes_fail_the_upload() {
        let up = PartUpload::new("k".into(), Fake::default(), 1);
        let e = up.write(&[0; 4]).unwrap_err();
        assert!(
            matches!(&e, StoreError::Other(m) if m.contains("more than 3 parts")),
            "{e:?}"
        );
        assert!(up.finish().is_err());
    }

    #[test]
    fn abort_and_drop_abort_a_started_upload_and_nothing_else() {
        let up = PartUpload::new("k".into(), Fake::default(), 4);
        up.write(&[0; 5]).unwrap();
        up.abort().unwrap();
        assert_eq!(up.sink().calls().last().unwrap(), "abort id1");
        assert!(up.write(&[1]).is_err());
        assert!(up.finish().is_err());

        let fake = Fake::default();
        let log = fake.calls.clone();
        let up = PartUpload::new("k".into(), fake, 4);
        up.write(&[0; 5]).unwrap();
        drop(up);
        assert_eq!(*log.borrow(), vec!["begin", "part id1 0 4", "abort id1"]);

        let up = PartUpload::new("k".into(), Fake::default(), 4);
        up.write(&[0; 3]).unwrap();
        up.abort().unwrap();
        assert!(up.sink().calls().is_empty());
    }

    #[test]
    fn a_failed_request_fails_the_upload_and_later_calls() {
        let up = PartUpload::new("k".into(), Fake::failing(&["part"]), 4);
        let e = up.write(&[0; 5]).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(matches!(up.write(&[0]), Err(StoreError::Unavailable(_))));
        assert!(matches!(up.finish(), Err(StoreError::Unavailable(_))));
        up.abort().unwrap();
        assert_eq!(
            up.sink().calls(),
            vec!["begin", "part id1 0 4", "abort id1"]
        );

        let up = PartUpload::new("k".into(), Fake::failing(&["complete"]), 4);
        up.write(&[0; 5]).unwrap();
        assert!(matches!(up.finish(), Err(StoreError::Unavailable(_))));
        up.abort().unwrap();
        assert_eq!(up.sink().calls().last().unwrap(), "abort id1");
    }
}
