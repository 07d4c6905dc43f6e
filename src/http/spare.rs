//! Spare connection buffers, kept per thread between requests.
//!
//! A keep-alive connection gives its buffers back while it waits for the next request, so an
//! idle connection holds none, and the next request on any connection of the thread takes a
//! spare one instead of allocating: mimalloc serves every block over 1 KiB on its slow path
//! (about 300 instructions), and a buffer that was split is shared storage that `bytes` would
//! otherwise allocate a header for again. Each worker thread runs its own runtime, so the
//! lists are never contended.

use std::cell::RefCell;

use bytes::BytesMut;

/// Spares kept per kind and thread: enough for the requests one worker overlaps, bounded so
/// that a burst of connections leaves little behind (at most 64 × 10 KiB per thread).
const MAX_SPARES: usize = 64;

/// Read buffers' capacity: a request head of a few fields in one read.
pub const READ_BUF: usize = 4096;

/// Write buffers' capacity: a response head and a small body.
pub const HEAD_BUF: usize = 1024;

/// One kind of buffer: its capacity, and the spares of it on this thread.
pub struct Spares {
    capacity: usize,
    list: &'static std::thread::LocalKey<RefCell<Vec<BytesMut>>>,
}

thread_local! {
    static READ_LIST: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static HEAD_LIST: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Read buffers for request heads.
pub static READ: Spares = Spares {
    capacity: READ_BUF,
    list: &READ_LIST,
};

/// Write buffers for response heads and small bodies.
pub static HEAD: Spares = Spares {
    capacity: HEAD_BUF,
    list: &HEAD_LIST,
};

impl Spares {
    /// An empty buffer with room for at least this kind's capacity.
    pub fn take(&self) -> BytesMut {
        self.list
            .with_borrow_mut(Vec::pop)
            .unwrap_or_else(|| BytesMut::with_capacity(self.capacity))
    }

    /// Keeps `buf` for another request if nothing else shares its storage and it has this
    /// kind's size (a buffer grown for a large head is freed); else drops it.
    pub fn give(&self, mut buf: BytesMut) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        if !buf.try_reclaim(self.capacity) || buf.capacity() > 2 * self.capacity {
            return;
        }
        self.list.with_borrow_mut(|list| {
            if list.len() < MAX_SPARES {
                list.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_count(spares: &Spares) -> usize {
        spares.list.with_borrow(Vec::len)
    }

    #[test]
    fn a_given_buffer_is_taken_again_whole() {
        let mut buf = READ.take();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nrest");
        let head = buf.split_to(18).freeze();
        let first = buf.as_ptr();
        buf.clear();
        drop(head);
        READ.give(buf);
        let again = READ.take();
        assert!(again.is_empty());
        assert!(again.capacity() >= READ.capacity);
        // The same storage, from its start: the split-off head's room is back too.
        assert_eq!(again.as_ptr(), first.wrapping_sub(18));
    }

    #[test]
    fn shared_or_oversized_buffers_are_not_kept() {
        let before = spare_count(&HEAD);
        let mut buf = HEAD.take();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let held = buf.split().freeze();
        HEAD.give(buf);
        assert_eq!(spare_count(&HEAD), before, "its storage is still shared");
        drop(held);
        HEAD.give(BytesMut::with_capacity(64 * 1024));
        assert_eq!(spare_count(&HEAD), before, "grown far past the kind's size");
        HEAD.give(BytesMut::new());
        assert_eq!(spare_count(&HEAD), before, "no storage at all");
        HEAD.give(HEAD.take());
        assert_eq!(spare_count(&HEAD), before + 1);
    }

    #[test]
    fn the_spares_are_bounded() {
        for _ in 0..MAX_SPARES + 10 {
            READ.give(BytesMut::with_capacity(READ.capacity));
        }
        assert_eq!(spare_count(&READ), MAX_SPARES);
    }
}
