//! AWS-LC's heap, routed into this library's global allocator, so that what
//! AWS-LC allocates inside [`super::scope`] (its copies of private keys, the
//! big-number temporaries and blinding values of a private-key operation)
//! lands in the key region: locked, excluded from core dumps, zeroized on
//! free.
//!
//! How: AWS-LC's `OPENSSL_malloc`/`OPENSSL_free`/`OPENSSL_realloc`
//! (`crypto/mem.c`) call `OPENSSL_memory_alloc`, `OPENSSL_memory_free`,
//! `OPENSSL_memory_get_size` and `OPENSSL_memory_realloc` when these weak
//! symbols are defined. They are not in AWS-LC's symbol prefix list, so the
//! names are the plain ones. Defining them here (rather than calling
//! `CRYPTO_set_mem_functions` at run time) makes the choice at link time:
//! every AWS-LC block, from the very first, has the header below, so no
//! block made by AWS-LC's default `malloc` path can reach our `free`.
//!
//! The definitions are four jumps in `global_asm!`, declared `.hidden`:
//! a `#[no_mangle]` Rust function would be exported by the `.so` (which must
//! export only `C_*`), and without a local definition these weak references
//! would be bound at load time to whatever another library of the process
//! exports under those names.
//!
//! Each block is `HEADER` bytes (its size) followed by what AWS-LC asked
//! for; AWS-LC requires `OPENSSL_memory_free` to wipe the block, which the
//! region does for its blocks and [`free`] does for the others. These
//! functions never panic (they are called from C, under AWS-LC's locks, and
//! from thread destructors) and allocate only the block they return.

use std::alloc::Layout;
use std::ffi::c_void;
use std::ptr;

/// Whether AWS-LC's allocations go through these hooks on this target
/// (the jumps are written for x86-64 and AArch64).
pub const HOOKED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Bytes before each block: its size, padded to keep 16-byte alignment.
const HEADER: usize = 16;

/// Calls of [`alloc`] (tests check that AWS-LC goes through the hooks).
#[cfg(test)]
pub(crate) static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// `OPENSSL_memory_alloc`: a block of `size` bytes, null when out of memory.
extern "C" fn alloc(size: usize) -> *mut c_void {
    #[cfg(test)]
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(l) = layout(size) else {
        return ptr::null_mut();
    };
    // SAFETY: `l` has a non-zero size (at least HEADER).
    let base = unsafe { std::alloc::alloc(l) };
    if base.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `base` holds `HEADER + size` bytes, 16-aligned; the size
    // goes in the header and the caller gets the rest.
    unsafe {
        base.cast::<usize>().write(size);
        base.add(HEADER).cast()
    }
}

/// The block's size and its base, for a pointer [`alloc`] returned.
///
/// # Safety
/// `p` came from [`alloc`] (AWS-LC never passes null here) and is live.
unsafe fn header(p: *mut c_void) -> (usize, *mut u8) {
    // SAFETY: per the contract, the header is the `HEADER` bytes before `p`.
    unsafe {
        let base = p.cast::<u8>().sub(HEADER);
        (base.cast::<usize>().read(), base)
    }
}

/// `OPENSSL_memory_free`: wipes and frees a block.
extern "C" fn free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: AWS-LC passes only live pointers from `OPENSSL_memory_alloc`.
    let (size, base) = unsafe { header(p) };
    let Some(l) = layout(size) else {
        return; // cannot be: `alloc` made the block with this layout
    };
    if !super::contains(base) {
        // Region blocks are wiped by the region as they are freed.
        // SAFETY: the block is `l.size()` bytes, ours until the dealloc.
        zeroize::Zeroize::zeroize(unsafe { std::slice::from_raw_parts_mut(base, l.size()) });
    }
    // SAFETY: allocated by `std::alloc::alloc` with this layout.
    unsafe { std::alloc::dealloc(base, l) }
}

/// `OPENSSL_memory_get_size`: the size AWS-LC asked for.
extern "C" fn get_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    // SAFETY: as in `free`.
    unsafe { header(p).0 }
}

/// `OPENSSL_memory_realloc`: a new block with the old contents, the old one
/// wiped and freed (never resized in place, so no key bytes stay behind in
/// memory the block no longer covers).
extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return alloc(size);
    }
    let new = alloc(size);
    if new.is_null() {
        return new;
    }
    let old = get_size(p);
    // SAFETY: both blocks are live and hold at least `min(old, size)` bytes.
    unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), new.cast::<u8>(), old.min(size)) };
    free(p);
    new
}

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.ferrohsm_openssl_memory,\"ax\",@progbits",
    ".globl OPENSSL_memory_alloc",
    ".hidden OPENSSL_memory_alloc",
    ".type OPENSSL_memory_alloc,@function",
    "OPENSSL_memory_alloc:",
    "jmp {alloc}",
    ".globl OPENSSL_memory_free",
    ".hidden OPENSSL_memory_free",
    ".type OPENSSL_memory_free,@function",
    "OPENSSL_memory_free:",
    "jmp {free}",
    ".globl OPENSSL_memory_get_size",
    ".hidden OPENSSL_memory_get_size",
    ".type OPENSSL_memory_get_size,@function",
    "OPENSSL_memory_get_size:",
    "jmp {get_size}",
    ".globl OPENSSL_memory_realloc",
    ".hidden OPENSSL_memory_realloc",
    ".type OPENSSL_memory_realloc,@function",
    "OPENSSL_memory_realloc:",
    "jmp {realloc}",
    ".popsection",
    alloc = sym alloc,
    free = sym free,
    get_size = sym get_size,
    realloc = sym realloc,
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.ferrohsm_openssl_memory,\"ax\",%progbits",
    ".globl OPENSSL_memory_alloc",
    ".hidden OPENSSL_memory_alloc",
    ".type OPENSSL_memory_alloc,%function",
    "OPENSSL_memory_alloc:",
    "b {alloc}",
    ".globl OPENSSL_memory_free",
    ".hidden OPENSSL_memory_free",
    ".type OPENSSL_memory_free,%function",
    "OPENSSL_memory_free:",
    "b {free}",
    ".globl OPENSSL_memory_get_size",
    ".hidden OPENSSL_memory_get_size",
    ".type OPENSSL_memory_get_size,%function",
    "OPENSSL_memory_get_size:",
    "b {get_size}",
    ".globl OPENSSL_memory_realloc",
    ".hidden OPENSSL_memory_realloc",
    ".type OPENSSL_memory_realloc,%function",
    "OPENSSL_memory_realloc:",
    "b {realloc}",
    ".popsection",
    alloc = sym alloc,
    free = sym free,
    get_size = sym get_size,
    realloc = sym realloc,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_size_and_follow_the_scope() {
        let p = alloc(100);
        assert_eq!(get_size(p), 100);
        assert!(!super::super::contains(p.cast()));
        assert_eq!(p as usize % HEADER, 0);
        let q = super::super::scope(|| realloc(p, 300));
        assert_eq!(get_size(q), 300);
        assert!(super::super::contains(q.cast()));
        free(q);
        assert!(alloc(usize::MAX).is_null());
    }
}
