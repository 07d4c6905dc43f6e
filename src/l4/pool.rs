//! Per-thread free lists for what relays borrow while bytes are in flight (buffers, pipes): a
//! busy stream takes one without allocating, an idle stream holds none.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Items kept per thread beyond those in use.
const KEEP: usize = 32;

pub(super) type FreeList<T> = RefCell<Vec<T>>;

/// A recycled item from this thread's list, if there is one.
pub(super) fn take<T: 'static>(list: &'static LocalKey<FreeList<T>>) -> Option<T> {
    list.with(|l| l.borrow_mut().pop())
}

/// Returns `item` to this thread's list (or drops it when the list is full, or during thread
/// teardown, when the list is gone).
pub(super) fn give<T: 'static>(list: &'static LocalKey<FreeList<T>>, item: T) {
    let _ = list.try_with(|l| {
        let mut l = l.borrow_mut();
        if l.len() < KEEP {
            l.push(item);
        }
    });
}
