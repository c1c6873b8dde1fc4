//! The global allocator of the `gatehouse` binary (and of the benchmarks'
//! floor): mimalloc, entered through `mi_malloc`, `mi_zalloc` and
//! `mi_realloc` whenever a plain block already has the alignment asked for.
//!
//! The `mimalloc` crate's `GlobalAlloc` sends every request through the
//! `*_aligned` entry points. For a size whose block is not a power of two
//! (a 48-byte box, a header map's entries) mimalloc takes its
//! over-allocation path even at alignment 8: a larger block, a page marked
//! as holding aligned blocks, and several hundred instructions where
//! `mi_malloc` takes a few dozen. On the proxy path, the plain entry
//! points take about 700 of some 41,000 instructions off each request
//! (`bench/callgrind.sh`).
//!
//! A plain mimalloc block of `size` bytes is aligned to at least 16 bytes
//! when `size` is 16 or more, and to 8 below (blocks above one machine
//! word come in double-word size classes, and pages start 16-aligned), so
//! a layout with `align <= 16` and `align <= size` is served plainly, as
//! the standard library's `System` allocator does with `malloc`. Larger
//! alignments keep the aligned entry points.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every plain mimalloc block of at least this size has
/// (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

/// mimalloc as the global allocator: `#[global_allocator] static A:
/// MiMalloc = MiMalloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MiMalloc;

/// Whether a plain block of `size` bytes is aligned enough for `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every path returns a block from mimalloc of at least the layout's
// size, aligned as `plain` explains or by the aligned entry point, or null;
// `dealloc` and `realloc` get only blocks from this allocator, which
// `mi_free` and `mi_realloc*` accept whichever entry point made them.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if plain(layout.align(), layout.size()) {
            mi::mi_malloc(layout.size())
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align())
        };
        p.cast()
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = if plain(layout.align(), layout.size()) {
            mi::mi_zalloc(layout.size())
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align())
        };
        p.cast()
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = if plain(layout.align(), new_size) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size)
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align())
        };
        p.cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates, fills, grows and frees blocks of many sizes and
    /// alignments through the allocator (not as the global one, so the
    /// test sees exactly these calls) and checks every pointer's
    /// alignment: a plain path taken where mimalloc does not guarantee the
    /// alignment would show here as a misaligned block.
    #[test]
    #[allow(unsafe_code)]
    fn every_block_has_the_alignment_its_layout_asks_for() {
        let a = MiMalloc;
        let sizes = [
            1, 7, 8, 12, 16, 24, 40, 48, 56, 100, 1000, 1500, 4096, 5000, 70_000,
        ];
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // Many at once, so blocks come from within pages, not only
                // from each page's first slot.
                let mut blocks = Vec::new();
                for round in 0..64 {
                    // SAFETY: a non-zero size; each block is freed below
                    // with the layout it was made with.
                    let p = unsafe {
                        if round % 2 == 0 {
                            a.alloc(layout)
                        } else {
                            a.alloc_zeroed(layout)
                        }
                    };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size}, align {align}");
                    if round % 2 == 1 {
                        // SAFETY: `p` holds `size` bytes.
                        let zeroed = unsafe { std::slice::from_raw_parts(p, size) };
                        assert!(zeroed.iter().all(|b| *b == 0), "size {size}, align {align}");
                    }
                    // SAFETY: `p` holds `size` bytes.
                    unsafe { p.write_bytes(0xa5, size) };
                    blocks.push(p);
                }
                for p in blocks {
                    let grown = size * 3 + 5;
                    // SAFETY: `p` came from this allocator with `layout`.
                    let q = unsafe { a.realloc(p, layout, grown) };
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "grown from {size}, align {align}");
                    // SAFETY: the first `size` bytes moved with the block.
                    let kept = unsafe { std::slice::from_raw_parts(q, size) };
                    assert!(kept.iter().all(|b| *b == 0xa5), "grown from {size}");
                    let new_layout = Layout::from_size_align(grown, align).unwrap();
                    // SAFETY: `q` came from this allocator with `new_layout`.
                    unsafe { a.dealloc(q, new_layout) };
                }
            }
        }
    }

    #[test]
    fn only_alignments_a_plain_block_has_take_the_plain_path() {
        assert!(plain(8, 8));
        assert!(plain(8, 24));
        assert!(plain(16, 16));
        assert!(plain(16, 1500));
        // A 8-byte block is only 8-aligned.
        assert!(!plain(16, 8));
        assert!(!plain(32, 64));
        assert!(!plain(4096, 8192));
    }
}
