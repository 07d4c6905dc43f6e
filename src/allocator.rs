//! The process's allocator: mimalloc, called the way its fast paths want.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every request to `mi_malloc_aligned`. In
//! mimalloc 3, that takes the plain small-object path only while the size class's page has a
//! free block at hand; otherwise a block whose size class is not a power of two (a 624-byte
//! header table, say) is over-allocated and re-aligned, at about 300 instructions and a larger
//! block each time. That was 1.3 allocations per proxied request. (The same fix is proposed
//! upstream: purpleprotocol/mimalloc_rust#170.)
//!
//! Every mimalloc size class at or above 16 bytes is a multiple of 16 and every page's first
//! block is 16-aligned, so a request whose alignment is at most 16 and divides its size is met by
//! plain `mi_malloc` (and `mi_zalloc`, `mi_realloc`). Anything else goes to the aligned calls.
//!
//! Kept out of the library (which forbids `unsafe`): the binary and the benches include it.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's guaranteed alignment for any block (`MI_MAX_ALIGN_SIZE`).
const MIN_ALIGN: usize = 16;

pub struct MiMalloc;

/// Whether a plain (unaligned) call meets `align` for a block of `size` bytes.
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= MIN_ALIGN && size % align == 0
}

// SAFETY: every call forwards to mimalloc, which returns blocks of at least the requested size
// at the requested alignment (`plain` only picks the unaligned calls where the size classes
// guarantee it), or null on failure; `mi_free` and `mi_realloc*` accept any block it returned.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: see the impl's comment.
        unsafe {
            if plain(size, align) {
                mi::mi_malloc(size).cast()
            } else {
                mi::mi_malloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: see the impl's comment.
        unsafe {
            if plain(size, align) {
                mi::mi_zalloc(size).cast()
            } else {
                mi::mi_zalloc_aligned(size, align).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's contract).
        unsafe {
            if plain(new_size, align) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // Paths rather than imports: the benches include this file with `cfg(test)` but no test
    // harness, where an import would go unused.

    /// Blocks of every small size and alignment come back aligned, zeroed when asked, and keep
    /// their bytes through a realloc.
    #[test]
    fn honours_size_and_alignment() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = super::MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in (1..=2100)
                .step_by(7)
                .chain([align, 3 * align, 65536 + align])
            {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: a non-zero-sized layout; each block is freed with its layout.
                unsafe {
                    let p = a.alloc_zeroed(layout);
                    assert!(!p.is_null(), "{size}/{align}");
                    assert_eq!(p as usize % align, 0, "alloc_zeroed {size}/{align}");
                    assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                    p.write_bytes(0xa5, size);
                    let grown = size * 2 + 1;
                    let q = a.realloc(p, layout, grown);
                    assert_eq!(q as usize % align, 0, "realloc {size}/{align}");
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xa5));
                    a.dealloc(q, Layout::from_size_align_unchecked(grown, align));
                    let r = a.alloc(layout);
                    assert_eq!(r as usize % align, 0, "alloc {size}/{align}");
                    a.dealloc(r, layout);
                }
            }
        }
    }
}
