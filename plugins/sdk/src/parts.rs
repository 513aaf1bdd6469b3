//! A part buffer for multipart uploads: bytes go in as the host sends them,
//! full parts come out, and no more than one part is ever held in memory.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
