//! The process allocator: the system allocator for everything except large blocks, which are
//! mapped on 2 MiB boundaries and advised for transparent huge pages.
//!
//! Why: a multi-megabyte document passes through a handful of buffers of its own size (the
//! input, an inflated picture, the rebuilt package, the XML trees of its largest parts). On
//! 4 KiB pages every one of them costs a page fault per 4 KiB — about a thousand per
//! megabyte-sized buffer — and on the VM the benchmarks run on that was close to half of
//! `mukaika sanitize`'s CPU time on a 5 MB .docx (measured: 6 700 faults, 24 ms of 42 ms in
//! the kernel). On huge pages the same buffer faults once per 2 MiB.
//!
//! Owns: the choice between the system allocator and a private mapping for each block.
//! Invariants: a block is "large" exactly when its layout's size is at least [`LARGE`] and
//! its alignment at most [`HUGE`]; `alloc`, `dealloc` and `realloc` all classify by the layout
//! they are given, and Rust hands `dealloc` the layout the block was allocated with, so every
//! block goes back to the allocator it came from. A large block's mapping is its size rounded
//! up to [`HUGE`]; it starts on a [`HUGE`] boundary when first mapped (a block grown with
//! `mremap` may move off one, and keeps the page alignment its layout asked for). Fresh
//! anonymous mappings are zeroed by the kernel, so `alloc_zeroed` needs no memset for them.
//! Must never: keep state between calls (there is no cache to race on or to leak through), or
//! fail other than by returning null, which Rust turns into `handle_alloc_error`.
//!
//! `madvise(MADV_HUGEPAGE)` is advice: where transparent huge pages are off (`never`), the
//! mapping simply stays on 4 KiB pages and nothing else changes. With `defrag` at `madvise`
//! (the kernel default) a first touch may compact memory to find a huge page, a brief stall
//! on a fragmented host; an administrator who prefers small pages everywhere sets
//! `/sys/kernel/mm/transparent_hugepage/enabled` to `never`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::ptr::{null_mut, NonNull};

use rustix::mm::{
    madvise, mmap_anonymous, mremap, munmap, Advice, MapFlags, MremapFlags, ProtFlags,
};

/// The huge page size, and the alignment and granularity of large blocks.
pub const HUGE: usize = 2 << 20;

/// Blocks at least this large are mapped on their own. Below it, rounding up to [`HUGE`]
/// would waste more address space than huge pages save.
pub const LARGE: usize = 1 << 20;

/// The smallest page size Linux uses; `mremap` guarantees this alignment and no more.
const MIN_PAGE: usize = 4096;

/// The process allocator (see the module docs). Install it with
/// `#[global_allocator] static A: mukaika::alloc::Allocator = mukaika::alloc::Allocator;`.
pub struct Allocator;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= HUGE
}

/// The length of the mapping that holds a large block of `size` bytes.
fn mapped_len(size: usize) -> Option<usize> {
    size.checked_add(HUGE - 1).map(|n| n & !(HUGE - 1))
}

/// Maps `len` bytes (a multiple of [`HUGE`]) starting on a [`HUGE`] boundary.
fn map_aligned(len: usize) -> *mut u8 {
    let Some(span) = len.checked_add(HUGE) else {
        return null_mut();
    };
    // SAFETY: a fresh private anonymous mapping at an address the kernel chooses aliases no
    // memory Rust knows about.
    let base = match unsafe {
        mmap_anonymous(
            null_mut(),
            span,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    } {
        Ok(base) => base as usize,
        Err(_) => return null_mut(),
    };
    // Over-map by one huge page, then give back what lies before the first boundary and
    // after the block, so the block starts on a boundary the kernel can back with huge pages.
    let start = (base + HUGE - 1) & !(HUGE - 1);
    let head = start - base;
    let tail = span - head - len;
    // SAFETY: both ranges lie inside the mapping just made and outside the block returned.
    unsafe {
        if head > 0 {
            let _ = munmap(base as *mut c_void, head);
        }
        if tail > 0 {
            let _ = munmap((start + len) as *mut c_void, tail);
        }
        // Advice only: without transparent huge pages the block works on small pages.
        let _ = madvise(start as *mut c_void, len, Advice::LinuxHugepage);
    }
    start as *mut u8
}

// SAFETY: large blocks are private mappings of at least the requested size, aligned to HUGE
// (which satisfies any alignment up to HUGE); every other block is the system allocator's.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_large(&layout) {
            // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
            return unsafe { System.alloc(layout) };
        }
        mapped_len(layout.size()).map_or(null_mut(), map_aligned)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_large(&layout) {
            // SAFETY: as in `alloc`.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // A fresh anonymous mapping reads as zeros.
        mapped_len(layout.size()).map_or(null_mut(), map_aligned)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_large(&layout) {
            // SAFETY: a small layout means the block came from `System` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        if let Some(len) = mapped_len(layout.size()) {
            // SAFETY: a large layout means `ptr` starts a mapping of exactly `len` bytes
            // made by `map_aligned`, which nothing uses once it is deallocated.
            let _ = unsafe { munmap(ptr.cast::<c_void>(), len) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (is_large(&layout), is_large(&new_layout)) {
            // SAFETY: both sides are the system allocator's; forwarded unchanged.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // mremap keeps page alignment only, so blocks aligned more strictly are copied.
            (true, true) if layout.align() <= MIN_PAGE => {
                let (Some(old_len), Some(new_len)) =
                    (mapped_len(layout.size()), mapped_len(new_size))
                else {
                    return null_mut();
                };
                if old_len == new_len {
                    // Still inside the same mapping: nothing to do.
                    return ptr;
                }
                // Move the page tables instead of copying megabytes. The new place may not
                // start on a huge-page boundary, so pages added there may be small ones.
                // SAFETY: `ptr` starts a mapping of `old_len` bytes (a large layout) that the
                // caller gives up; on failure it is left untouched, as `realloc` requires.
                match unsafe {
                    mremap(ptr.cast::<c_void>(), old_len, new_len, MremapFlags::MAYMOVE)
                } {
                    Ok(new) => new.cast::<u8>(),
                    Err(_) => null_mut(),
                }
            }
            _ => {
                // Crossing allocators or mappings: allocate, copy what both hold, free.
                // SAFETY: `new_layout` is valid and non-zero (it is at least as large as a
                // block that exists, or large); the copy stays inside both blocks.
                unsafe {
                    let new = self.alloc(new_layout);
                    if let Some(new) = NonNull::new(new) {
                        std::ptr::copy_nonoverlapping(
                            ptr,
                            new.as_ptr(),
                            layout.size().min(new_size),
                        );
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_huge_page_boundaries_and_keep_their_bytes() {
        let a = Allocator;
        let layout = Layout::from_size_align(3 * LARGE + 5, 8).unwrap();
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0);
            let block = std::slice::from_raw_parts_mut(p, layout.size());
            assert!(block.iter().all(|&b| b == 0));
            block[0] = 7;
            block[layout.size() - 1] = 9;
            // Grow past the mapping, shrink back below LARGE: the bytes survive both moves.
            let grown = a.realloc(p, layout, 5 * LARGE);
            assert!(!grown.is_null());
            assert_eq!((*grown, *grown.add(layout.size() - 1)), (7, 9));
            let big = Layout::from_size_align(5 * LARGE, 8).unwrap();
            let small = a.realloc(grown, big, 100);
            assert!(!small.is_null());
            assert_eq!(*small, 7);
            a.dealloc(small, Layout::from_size_align(100, 8).unwrap());

            // A block aligned past the page size keeps its alignment when it grows.
            let strict = Layout::from_size_align(LARGE, 1 << 16).unwrap();
            let p = a.alloc(strict);
            *p = 3;
            let p = a.realloc(p, strict, 4 * HUGE);
            assert_eq!((p as usize % (1 << 16), *p), (0, 3));
            a.dealloc(p, Layout::from_size_align(4 * HUGE, 1 << 16).unwrap());
        }
    }

    #[test]
    fn small_and_over_aligned_blocks_stay_with_the_system_allocator() {
        assert!(!is_large(&Layout::from_size_align(LARGE - 1, 8).unwrap()));
        assert!(is_large(&Layout::from_size_align(LARGE, 4096).unwrap()));
        assert!(!is_large(
            &Layout::from_size_align(LARGE, 2 * HUGE).unwrap()
        ));
        assert_eq!(mapped_len(LARGE), Some(HUGE));
        assert_eq!(mapped_len(HUGE + 1), Some(2 * HUGE));
        assert_eq!(mapped_len(usize::MAX), None);
    }
}
