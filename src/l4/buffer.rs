//! Relay buffers, recycled per thread: a connection borrows one only while bytes are in flight,
//! so idle connections cost no buffer and busy ones do not allocate (or zero) per burst.

use std::cell::RefCell;

/// Large enough that bulk transfers move a socket buffer's worth per system call.
pub const SIZE: usize = 64 * 1024;
/// Buffers kept per thread beyond those in use (at most 2 MiB each thread).
const KEEP: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from the pool; goes back to the current thread's pool when dropped.
pub struct Buffer(Option<Box<[u8]>>);

impl Buffer {
    pub fn take() -> Self {
        let recycled = POOL.with(|pool| pool.borrow_mut().pop());
        Buffer(Some(
            recycled.unwrap_or_else(|| vec![0u8; SIZE].into_boxed_slice()),
        ))
    }

    pub fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            // During thread teardown the pool may be gone; then the buffer is simply freed.
            let _ = POOL.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < KEEP {
                    pool.push(buf);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_on_the_same_thread() {
        let mut first = Buffer::take();
        first.as_mut()[0] = 7;
        let address = first.as_mut().as_ptr();
        drop(first);
        let mut second = Buffer::take();
        assert_eq!(second.as_mut().as_ptr(), address);
        assert_eq!(second.as_mut().len(), SIZE);
    }
}
