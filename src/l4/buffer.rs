//! Relay buffers, recycled per thread: a connection borrows one only while bytes are in flight,
//! so idle connections cost no buffer and busy ones do not allocate (or zero) per burst.

use super::pool::{self, FreeList};

/// Large enough that bulk transfers move a socket buffer's worth per system call.
pub const SIZE: usize = 64 * 1024;

thread_local! {
    static POOL: FreeList<Box<[u8]>> = const { FreeList::new(Vec::new()) };
}

/// A buffer from the pool; goes back to the current thread's pool when dropped.
pub struct Buffer(Box<[u8]>);

impl Buffer {
    pub fn take() -> Self {
        Buffer(pool::take(&POOL).unwrap_or_else(|| vec![0u8; SIZE].into_boxed_slice()))
    }

    pub fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        pool::give(&POOL, std::mem::take(&mut self.0));
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
