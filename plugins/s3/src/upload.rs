//! Uploads: bytes are collected into parts of a fixed size; an object that
//! fits in one part is sent with one PutObject on `finish`, a larger one as a
//! multipart upload started when the first part fills. At most one part is
//! held in memory. The requests go through a [`Sink`], so the sequence is
//! tested natively with a fake one.

use std::cell::RefCell;

use druid_plugin_sdk::parts::PartBuffer;
use druid_plugin_sdk::store::{ObjectInfo, StoreError};

const MIB: u64 = 1 << 20;
/// The smallest part size used (S3's minimum is 5 MiB).
pub const MIN_PART_SIZE: u64 = 8 * MIB;
/// The largest part size used.
pub const MAX_PART_SIZE: u64 = 512 * MIB;
/// S3's limit on the number of parts of an upload.
pub const MAX_PARTS: usize = 10_000;

/// The part size for an object of about `size_hint` bytes: at least 8 MiB,
/// large enough for the object to fit in 9,000 parts (leaving room for a
/// hint that is a little low), rounded up to a MiB, at most 512 MiB.
pub fn part_size(size_hint: Option<u64>) -> usize {
    let wanted = size_hint.map_or(0, |s| s.div_ceil(9000));
    let size = wanted
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    usize::try_from(size).unwrap_or(usize::MAX)
}

/// The requests an upload makes, for one object key.
pub trait Sink {
    /// Stores the whole object with one PutObject.
    fn put_object(&self, body: &[u8]) -> Result<(), StoreError>;
    /// Starts a multipart upload; returns its upload ID.
    fn create_multipart(&self) -> Result<String, StoreError>;
    /// Uploads part `number` (from 1); returns its ETag.
    fn upload_part(&self, upload_id: &str, number: u16, body: &[u8]) -> Result<String, StoreError>;
    /// Completes the upload from the parts' ETags, in part order.
    fn complete(&self, upload_id: &str, etags: &[String]) -> Result<(), StoreError>;
    /// Aborts the upload, dropping its parts.
    fn abort(&self, upload_id: &str) -> Result<(), StoreError>;
}

#[derive(Debug)]
enum Phase {
    Open,
    Finished,
    Aborted,
    Failed(StoreError),
}

#[derive(Debug)]
struct State {
    buffer: PartBuffer,
    upload_id: Option<String>,
    etags: Vec<String>,
    phase: Phase,
}

/// An object being uploaded through a [`Sink`].
pub struct Uploader<S: Sink> {
    key: String,
    sink: S,
    state: RefCell<State>,
}

impl<S: Sink> Uploader<S> {
    /// An upload of `key` with parts of `part_size` bytes.
    pub fn new(key: String, sink: S, part_size: usize) -> Self {
        Self {
            key,
            sink,
            state: RefCell::new(State {
                buffer: PartBuffer::new(part_size),
                upload_id: None,
                etags: Vec::new(),
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

    /// Uploads one full part, starting the multipart upload first if needed.
    fn send_part(
        sink: &S,
        key: &str,
        upload_id: &mut Option<String>,
        etags: &mut Vec<String>,
        part: &[u8],
    ) -> Result<(), StoreError> {
        let id = match upload_id {
            Some(id) => id.clone(),
            None => {
                let id = sink.create_multipart()?;
                *upload_id = Some(id.clone());
                id
            }
        };
        let number = etags.len() + 1;
        let Some(number) = u16::try_from(number)
            .ok()
            .filter(|n| usize::from(*n) <= MAX_PARTS)
        else {
            return Err(StoreError::Other(format!(
                "upload of {key:?}: more than {MAX_PARTS} parts of {} bytes: the object is larger \
                 than its size hint allowed for",
                part.len()
            )));
        };
        let etag = sink.upload_part(&id, number, part)?;
        etags.push(etag);
        Ok(())
    }

    /// Appends bytes; uploads each part that fills.
    pub fn write(&self, chunk: &[u8]) -> Result<(), StoreError> {
        let mut state = self.state.borrow_mut();
        self.check_open(&state.phase)?;
        let State {
            buffer,
            upload_id,
            etags,
            ..
        } = &mut *state;
        let result = buffer.write(chunk, |part| {
            Self::send_part(&self.sink, &self.key, upload_id, etags, part)
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
        let result = match state.upload_id.clone() {
            None => self.sink.put_object(&rest),
            Some(id) => {
                let State {
                    upload_id, etags, ..
                } = &mut *state;
                let sent = if rest.is_empty() {
                    Ok(())
                } else {
                    Self::send_part(&self.sink, &self.key, upload_id, etags, &rest)
                };
                sent.and_then(|()| self.sink.complete(&id, etags))
            }
        };
        drop(rest);
        match result {
            Ok(()) => {
                state.phase = Phase::Finished;
                state.upload_id = None;
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

    /// Gives up: aborts the multipart upload, if one was started.
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
        match state.upload_id.take() {
            Some(id) => self.sink.abort(&id).inspect_err(|_| {
                // Keep the ID so that drop tries again.
                state.upload_id = Some(id.clone());
            }),
            None => Ok(()),
        }
    }
}

impl<S: Sink> Drop for Uploader<S> {
    fn drop(&mut self) {
        // An upload dropped without finish leaves no parts behind.
        let state = self.state.get_mut();
        if !matches!(state.phase, Phase::Finished)
            && let Some(id) = state.upload_id.take()
        {
            let _ = self.sink.abort(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records the requests; fails the ones named in `fail`.
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

    impl Sink for Fake {
        fn put_object(&self, body: &[u8]) -> Result<(), StoreError> {
            self.call("put", format!("{}", body.len()))
        }
        fn create_multipart(&self) -> Result<String, StoreError> {
            self.call("create", String::new()).map(|()| "id1".into())
        }
        fn upload_part(
            &self,
            upload_id: &str,
            number: u16,
            body: &[u8],
        ) -> Result<String, StoreError> {
            self.call("part", format!("{upload_id} {number} {}", body.len()))
                .map(|()| format!("\"etag{number}\""))
        }
        fn complete(&self, upload_id: &str, etags: &[String]) -> Result<(), StoreError> {
            self.call("complete", format!("{upload_id} {}", etags.join(",")))
        }
        fn abort(&self, upload_id: &str) -> Result<(), StoreError> {
            self.call("abort", upload_id.to_string())
        }
    }

    #[test]
    fn part_sizes_grow_with_the_hint_within_bounds() {
        assert_eq!(part_size(None), 8 << 20);
        assert_eq!(part_size(Some(0)), 8 << 20);
        assert_eq!(part_size(Some(1 << 30)), 8 << 20);
        // 8 MiB × 9000 is the largest object that keeps the minimum.
        assert_eq!(part_size(Some(9000 * (8 << 20))), 8 << 20);
        assert_eq!(part_size(Some(9000 * (8 << 20) + 1)), 9 << 20);
        // 100 GiB / 9000 = 11.38 MiB, rounded up to 12 MiB.
        assert_eq!(part_size(Some(100 << 30)), 12 << 20);
        assert_eq!(part_size(Some(u64::MAX)), 512 << 20);
        assert_eq!(part_size(Some(10 << 40)), 512 << 20);
    }

    #[test]
    fn a_small_object_is_one_put_on_finish() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[1, 2, 3]).unwrap();
        assert!(up.sink().calls().is_empty());
        let info = up.finish().unwrap();
        assert_eq!(info.size, 3);
        assert_eq!(info.key, "k");
        assert_eq!(up.sink().calls(), vec!["put 3"]);
    }

    #[test]
    fn an_empty_object_is_an_empty_put() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        let info = up.finish().unwrap();
        assert_eq!(info.size, 0);
        assert_eq!(up.sink().calls(), vec!["put 0"]);
    }

    #[test]
    fn a_large_object_goes_multipart_with_the_short_part_last() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[0; 3]).unwrap();
        up.write(&[0; 6]).unwrap();
        assert_eq!(
            up.sink().calls(),
            vec!["create", "part id1 1 4", "part id1 2 4"]
        );
        let info = up.finish().unwrap();
        assert_eq!(info.size, 9);
        assert_eq!(
            up.sink().calls()[3..],
            ["part id1 3 1", "complete id1 \"etag1\",\"etag2\",\"etag3\""]
        );
        drop(up); // Finished: no abort.
    }

    #[test]
    fn an_exact_multiple_of_the_part_size_sends_no_empty_part() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[0; 8]).unwrap();
        up.finish().unwrap();
        assert_eq!(
            up.sink().calls(),
            vec![
                "create",
                "part id1 1 4",
                "part id1 2 4",
                "complete id1 \"etag1\",\"etag2\""
            ]
        );
    }

    #[test]
    fn one_exact_part_is_still_multipart() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[0; 4]).unwrap();
        up.finish().unwrap();
        assert_eq!(
            up.sink().calls(),
            vec!["create", "part id1 1 4", "complete id1 \"etag1\""]
        );
    }

    #[test]
    fn abort_and_drop_abort_the_multipart_upload() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[0; 5]).unwrap();
        up.abort().unwrap();
        assert_eq!(up.sink().calls().last().unwrap(), "abort id1");
        assert!(up.write(&[1]).is_err());
        assert!(up.finish().is_err());

        let fake = Fake::default();
        let log = fake.calls.clone();
        let up = Uploader::new("k".into(), fake, 4);
        up.write(&[0; 5]).unwrap();
        drop(up);
        let calls = log.borrow().clone();
        assert_eq!(calls, vec!["create", "part id1 1 4", "abort id1"]);
    }

    #[test]
    fn abort_before_any_part_makes_no_request() {
        let up = Uploader::new("k".into(), Fake::default(), 4);
        up.write(&[0; 3]).unwrap();
        up.abort().unwrap();
        assert!(up.sink().calls().is_empty());
    }

    #[test]
    fn a_failed_part_fails_the_upload_and_later_calls() {
        let up = Uploader::new("k".into(), Fake::failing(&["part"]), 4);
        let e = up.write(&[0; 5]).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(matches!(up.write(&[0]), Err(StoreError::Unavailable(_))));
        assert!(matches!(up.finish(), Err(StoreError::Unavailable(_))));
        up.abort().unwrap();
        assert_eq!(
            up.sink().calls(),
            vec!["create", "part id1 1 4", "abort id1"]
        );
    }

    #[test]
    fn a_failed_complete_is_reported() {
        let up = Uploader::new("k".into(), Fake::failing(&["complete"]), 4);
        up.write(&[0; 5]).unwrap();
        assert!(matches!(up.finish(), Err(StoreError::Unavailable(_))));
        up.abort().unwrap();
        assert_eq!(up.sink().calls().last().unwrap(), "abort id1");
    }
}
