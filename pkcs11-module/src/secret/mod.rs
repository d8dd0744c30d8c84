//! The memory-hygiene helper: where key material lives while the module holds it.
//!
//! Decrypted key material (attribute values of secret and private keys, AES key
//! schedules, parsed RSA/EC keys, the storage key, PIN-derived keys, and the
//! temporaries of private-key operations) is allocated inside [`scope`]. The
//! process-wide allocator of this library sends those allocations to one
//! region that is
//!
//! - excluded from core dumps (`MADV_DONTDUMP` on the whole reservation),
//! - locked in RAM as it comes into use (`mlock` per 64 KiB chunk, best effort:
//!   when `RLIMIT_MEMLOCK` is too low locking stops, silently, and [`status`]
//!   says so for the module to log at debug level),
//! - zeroized block by block as it is freed, whoever frees it and whether or
//!   not inside a scope (a pointer is routed by address, not by scope).
//!
//! Leaving a scope also overwrites the stack below it ([`scope`]), where the
//! crypto crates leave copies of what they computed.
//!
//! Why our own arena rather than a crate: `memsec`/`secrets`-style crates give
//! each secret its own mapping with guard pages (three or more pages and
//! several system calls per allocation), which cannot back the many small
//! allocations RustCrypto's RSA and the attribute maps make; `region` wraps
//! `mmap`/`mlock` but has no `madvise` and no allocator. What is needed is a
//! small thread-safe allocator over one reservation, usable from inside a
//! `GlobalAlloc`, so it is written here on `libc` (already a dependency):
//! size classes of 16 B … 64 KiB carved from 64 KiB chunks, one free list per
//! class, a spin lock that never allocates.
//!
//! Larger allocations made in a scope (Argon2's work memory, ~19 MiB) go to
//! the ordinary heap, but are remembered (up to [`TRACKED`] at a time) and
//! zeroized when freed. After `fork()` the child gets a copy of the region,
//! excluded from dumps but not locked (locks are not inherited), and the
//! allocator lock is released on both sides by `pthread_atfork` handlers
//! registered before `ffi`'s (so theirs, which may free memory, run first in
//! the parent).
//!
//! AWS-LC (the default build's RSA/EC backend) allocates through the same
//! global allocator (`awslc.rs` defines its `OPENSSL_memory_*` hooks), so its
//! copies of private keys made inside a scope are region blocks too.
//!
//! Under `cfg(fuzzing)` scopes do nothing, so sanitizers see every allocation.
//!
//! The only other place with `unsafe` besides `ffi`; every block says why it
//! is sound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// AWS-LC's allocation hooks (into the global allocator, so into the region in a scope).
#[cfg(feature = "aws-lc")]
pub mod awslc;
mod stack;

use stack::{clear_vector_registers, run, scrub_stack, scrub_stack_short};

/// Bytes of address space reserved for key material (reserved, not committed:
/// pages are backed only when used).
pub const REGION_BYTES: usize = 64 << 20;
/// Unit of `mlock` and of assignment to a size class.
const CHUNK: usize = 64 << 10;
const CHUNKS: usize = REGION_BYTES / CHUNK;
/// Smallest block: 16 bytes (2^4).
const MIN_SHIFT: u32 = 4;
/// Number of size classes: 16 B, 32 B, … 64 KiB.
const CLASSES: usize = (CHUNK.trailing_zeros() - MIN_SHIFT + 1) as usize;
/// Large in-scope allocations remembered for zeroizing on free.
pub const TRACKED: usize = 64;
thread_local! {
    /// How many scopes the current thread is inside. Const-initialised and
    /// without destructor, so reading it from the allocator never allocates
    /// and works during thread exit.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` with every allocation it makes (on this thread) placed in the key
/// region, then overwrites the stack area `f` used. Use it where key
/// material is created, loaded, copied or used for a private-key operation;
/// what `f` returns stays where it was allocated (a `Box`/`Vec`/`Arc` made
/// inside is in the region; a value returned by value is the caller's to
/// keep short-lived). Nesting is allowed and cheap.
pub fn scope<R>(f: impl FnOnce() -> R) -> R {
    /// Leaves the scope even if `f` panics.
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            DEPTH.set(DEPTH.get() - 1);
        }
    }
    DEPTH.set(DEPTH.get() + 1);
    let leave = Leave;
    let r = run(f);
    drop(leave);
    scrub_stack();
    clear_vector_registers();
    r
}

/// Runs `f`, then overwrites the little stack it used and the vector
/// registers: for hot-path steps that use a cached key schedule and allocate
/// nothing secret (AES modes, MACs), where the block-cipher code spills round
/// keys to the stack and leaves them in XMM registers. Far cheaper than
/// [`scope`] (a 2 KiB scrub), and nothing goes to the region.
pub fn scrubbed<R>(f: impl FnOnce() -> R) -> R {
    let r = run(f);
    scrub_stack_short();
    clear_vector_registers();
    r
}

/// Whether the current thread's allocations go to the region.
#[inline]
fn in_scope() -> bool {
    !cfg!(fuzzing) && DEPTH.get() != 0
}

/// What the module reports about the region (logged at debug level by
/// `Module::new`), so an operator can tell whether keys may be swapped out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The region is reserved; `false` (mmap failed) means key material is
    /// on the ordinary heap (still zeroized where the crates zeroize).
    pub mapped: bool,
    /// `madvise(MADV_DONTDUMP)` succeeded: the region is not in core dumps.
    pub dontdump: bool,
    /// 64 KiB chunks in use so far.
    pub chunks_used: usize,
    /// Of which locked in RAM.
    pub chunks_locked: usize,
    /// `errno` of the `mlock` that failed (after which locking stopped), if any.
    pub lock_error: Option<i32>,
    /// In-scope allocations larger than a chunk (ordinary heap, zeroized on free).
    pub too_large: u64,
    /// In-scope allocations that found the region full (ordinary heap, not zeroized).
    pub full: u64,
    /// Large in-scope allocations not remembered (table full): not zeroized on free.
    pub untracked: u64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.mapped {
            return f.write_str(
                "key memory: no region (mmap failed): key material is on the ordinary heap",
            );
        }
        write!(
            f,
            "key memory: {} MiB region, {} core dumps, {} KiB in use, {} KiB locked",
            REGION_BYTES >> 20,
            if self.dontdump {
                "excluded from"
            } else {
                "NOT excluded from"
            },
            self.chunks_used * (CHUNK >> 10),
            self.chunks_locked * (CHUNK >> 10),
        )?;
        if let Some(e) = self.lock_error {
            write!(
                f,
                "; locking stopped: mlock failed ({}), RLIMIT_MEMLOCK too low? Keys may be swapped out",
                std::io::Error::from_raw_os_error(e)
            )?;
        }
        if self.too_large + self.full + self.untracked > 0 {
            write!(
                f,
                "; on the ordinary heap: {} blocks too large for the region (zeroized on free), \
                 {} for want of room, {} large ones not zeroized (table full)",
                self.too_large, self.full, self.untracked
            )?;
        }
        Ok(())
    }
}

/// The region's state now.
pub fn status() -> Status {
    let r = &REGION;
    let err = r.lock_errno.load(Ordering::Relaxed);
    Status {
        mapped: r.state.load(Ordering::Acquire) == MAPPED,
        dontdump: r.dontdump.load(Ordering::Relaxed),
        chunks_used: r.chunks_used.load(Ordering::Relaxed),
        chunks_locked: r.chunks_locked.load(Ordering::Relaxed),
        lock_error: (err != 0).then_some(err),
        too_large: r.too_large.load(Ordering::Relaxed),
        full: r.full.load(Ordering::Relaxed),
        untracked: r.untracked.load(Ordering::Relaxed),
    }
}

/// Reserves the region now (and locks its first chunk) instead of at the
/// first key allocation, so that [`status`] can say at `C_Initialize`
/// whether locking works here.
pub fn init() {
    let g = REGION.lock();
    REGION.ensure_mapped(&g);
}

/// Whether `p` points into the region (for tests and the allocator).
pub fn contains(p: *const u8) -> bool {
    let base = REGION.base.load(Ordering::Relaxed);
    base != 0 && (p as usize).wrapping_sub(base) < REGION_BYTES
}

// ---- the region ----------------------------------------------------------------------

const UNMAPPED: u8 = 0;
const MAPPED: u8 = 1;
const FAILED: u8 = 2;

/// Allocator state changed only with `Region::lock` held.
struct Inner {
    /// Head of each class's free list (0: empty); the link is the first word
    /// of each free block, the rest of a free block is zero.
    free: [usize; CLASSES],
    /// Next never-used block of each class's current chunk, and its end.
    carve: [usize; CLASSES],
    carve_end: [usize; CLASSES],
    /// Chunks handed out so far (a prefix of the region).
    next_chunk: usize,
    /// Whether to go on locking new chunks (false after an mlock failure).
    locking: bool,
    /// Large in-scope blocks on the ordinary heap: (address, size); 0 = empty.
    tracked: [(usize, usize); TRACKED],
}

struct Region {
    lock: AtomicBool,
    state: AtomicU8,
    base: AtomicUsize,
    /// Size class of each chunk, written once before its blocks are handed out.
    chunk_class: [AtomicU8; CHUNKS],
    inner: UnsafeCell<Inner>,
    // Statistics and fast-path filters, readable without the lock.
    dontdump: AtomicBool,
    chunks_used: AtomicUsize,
    chunks_locked: AtomicUsize,
    lock_errno: AtomicI32,
    too_large: AtomicU64,
    full: AtomicU64,
    untracked: AtomicU64,
    /// Number of entries in `Inner::tracked`, and the address range they
    /// span: a free outside it skips the lock.
    tracked_live: AtomicUsize,
    tracked_lo: AtomicUsize,
    tracked_hi: AtomicUsize,
}

// SAFETY: `inner` is only reached through `Locked`, which holds the spin lock;
// every other field is atomic.
unsafe impl Sync for Region {}

static REGION: Region = Region {
    lock: AtomicBool::new(false),
    state: AtomicU8::new(UNMAPPED),
    base: AtomicUsize::new(0),
    chunk_class: [const { AtomicU8::new(0) }; CHUNKS],
    inner: UnsafeCell::new(Inner {
        free: [0; CLASSES],
        carve: [0; CLASSES],
        carve_end: [0; CLASSES],
        next_chunk: 0,
        locking: true,
        tracked: [(0, 0); TRACKED],
    }),
    dontdump: AtomicBool::new(false),
    chunks_used: AtomicUsize::new(0),
    chunks_locked: AtomicUsize::new(0),
    lock_errno: AtomicI32::new(0),
    too_large: AtomicU64::new(0),
    full: AtomicU64::new(0),
    untracked: AtomicU64::new(0),
    tracked_live: AtomicUsize::new(0),
    tracked_lo: AtomicUsize::new(usize::MAX),
    tracked_hi: AtomicUsize::new(0),
};

/// Proof that the region lock is held; unlocks on drop.
struct Locked<'a>(&'a Region);

impl Locked<'_> {
    #[allow(clippy::mut_from_ref)]
    fn inner(&self) -> &mut Inner {
        // SAFETY: the spin lock is held for the life of `self`, so no other
        // thread reaches `inner`; callers never hold two of these borrows
        // at once (each use is a short statement or block).
        unsafe { &mut *self.0.inner.get() }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Ordering::Release);
    }
}

/// The size class of a layout (index into `Inner::free`), or `None` when it
/// does not fit a chunk. A block of class `c` is `16 << c` bytes and aligned
/// to its size, which covers the layout's alignment.
fn class_of(size: usize, align: usize) -> Option<usize> {
    let need = size.max(align).max(1 << MIN_SHIFT);
    if need > CHUNK {
        return None;
    }
    Some((need.next_power_of_two().trailing_zeros() - MIN_SHIFT) as usize)
}

fn class_size(c: usize) -> usize {
    1 << (c as u32 + MIN_SHIFT)
}

impl Region {
    fn lock(&self) -> Locked<'_> {
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                // A system call, never an allocation.
                std::thread::yield_now();
            }
        }
        Locked(self)
    }

    /// Maps the region on first use. Returns whether it is usable.
    fn ensure_mapped(&self, g: &Locked<'_>) -> bool {
        match self.state.load(Ordering::Acquire) {
            MAPPED => return true,
            FAILED => return false,
            _ => {}
        }
        register_fork_handlers();
        let span = REGION_BYTES + CHUNK;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing touches no existing memory.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            self.state.store(FAILED, Ordering::Release);
            return false;
        }
        // Chunks aligned to their size, so blocks are aligned to theirs; the
        // slack on either side goes back.
        let raw = raw as usize;
        let base = raw.next_multiple_of(CHUNK);
        let (head, tail) = (base - raw, raw + span - (base + REGION_BYTES));
        // SAFETY: both ranges are parts of the mapping just made, outside
        // [base, base + REGION_BYTES), and nothing refers to them.
        unsafe {
            if head > 0 {
                libc::munmap(raw as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((base + REGION_BYTES) as *mut libc::c_void, tail);
            }
        }
        // SAFETY: advice on our own mapping; it changes no contents.
        let rc =
            unsafe { libc::madvise(base as *mut libc::c_void, REGION_BYTES, libc::MADV_DONTDUMP) };
        self.dontdump.store(rc == 0, Ordering::Relaxed);
        name_mapping(base);
        self.base.store(base, Ordering::Relaxed);
        // The first chunk is locked now, so `status` can tell at once
        // whether locking works in this process.
        self.lock_chunk(g, 0);
        self.state.store(MAPPED, Ordering::Release);
        true
    }

    /// Locks chunk `i` if locking is still on and it is the next unlocked
    /// one; on failure stops locking and records why.
    fn lock_chunk(&self, g: &Locked<'_>, i: usize) {
        let inner = g.inner();
        if !inner.locking || i != self.chunks_locked.load(Ordering::Relaxed) {
            return;
        }
        let base = self.base.load(Ordering::Relaxed);
        // SAFETY: the chunk lies inside our mapping.
        let rc = unsafe { libc::mlock((base + i * CHUNK) as *const libc::c_void, CHUNK) };
        if rc == 0 {
            self.chunks_locked.store(i + 1, Ordering::Relaxed);
        } else {
            inner.locking = false;
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(-1);
            self.lock_errno.store(errno, Ordering::Relaxed);
        }
    }

    /// A zeroed block of class `c`, or null when the region is full or
    /// unavailable.
    fn alloc_block(&self, c: usize) -> *mut u8 {
        let g = self.lock();
        if !self.ensure_mapped(&g) {
            return ptr::null_mut();
        }
        let size = class_size(c);
        let inner = g.inner();
        let p = inner.free[c];
        if p != 0 {
            // SAFETY: `p` is a free block of this class in the region; its
            // first word is the link, the rest is zero.
            unsafe {
                inner.free[c] = *(p as *const usize);
                *(p as *mut usize) = 0;
            }
            return p as *mut u8;
        }
        if inner.carve[c] < inner.carve_end[c] {
            let p = inner.carve[c];
            inner.carve[c] += size;
            return p as *mut u8;
        }
        if inner.next_chunk == CHUNKS {
            self.full.fetch_add(1, Ordering::Relaxed);
            return ptr::null_mut();
        }
        let i = inner.next_chunk;
        inner.next_chunk += 1;
        self.chunk_class[i].store(c as u8, Ordering::Relaxed);
        self.chunks_used.store(i + 1, Ordering::Relaxed);
        self.lock_chunk(&g, i);
        let inner = g.inner();
        let start = self.base.load(Ordering::Relaxed) + i * CHUNK;
        inner.carve[c] = start + size;
        inner.carve_end[c] = start + CHUNK;
        start as *mut u8
    }

    /// Zeroizes a region block and puts it back on its class's free list.
    ///
    /// # Safety
    /// `p` must be a live block of the region, not used after this call.
    unsafe fn free_block(&self, p: *mut u8) {
        let c = self.class_at(p);
        // SAFETY: the whole block belongs to the caller until it is pushed
        // below; zeroing it outside the lock keeps the lock short.
        unsafe { ptr::write_bytes(p, 0, class_size(c)) };
        let g = self.lock();
        let inner = g.inner();
        // SAFETY: the block is ours (zeroed just above); its first word
        // becomes the free-list link.
        unsafe { *(p as *mut usize) = inner.free[c] };
        inner.free[c] = p as usize;
    }

    /// The size class of the chunk holding region address `p`.
    fn class_at(&self, p: *const u8) -> usize {
        let i = (p as usize - self.base.load(Ordering::Relaxed)) / CHUNK;
        self.chunk_class[i].load(Ordering::Relaxed) as usize
    }

    /// Memory for key material: a region block, else (too large, full or no
    /// region) the ordinary heap, remembered when large so that it is
    /// zeroized on free.
    fn alloc_secret(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            Some(c) => {
                let p = self.alloc_block(c);
                if !p.is_null() {
                    return p; // always zero already
                }
                // SAFETY: `layout` has a non-zero size (GlobalAlloc contract).
                return unsafe {
                    if zeroed {
                        System.alloc_zeroed(layout)
                    } else {
                        System.alloc(layout)
                    }
                };
            }
            None => {
                self.too_large.fetch_add(1, Ordering::Relaxed);
            }
        }
        // SAFETY: as above.
        let p = unsafe {
            if zeroed {
                System.alloc_zeroed(layout)
            } else {
                System.alloc(layout)
            }
        };
        if !p.is_null() {
            self.track(p, layout.size());
        }
        p
    }

    fn track(&self, p: *mut u8, size: usize) {
        let g = self.lock();
        let inner = g.inner();
        match inner.tracked.iter_mut().find(|e| e.0 == 0) {
            Some(e) => {
                *e = (p as usize, size);
                self.tracked_live.fetch_add(1, Ordering::Relaxed);
                self.tracked_lo.fetch_min(p as usize, Ordering::Relaxed);
                self.tracked_hi
                    .fetch_max(p as usize + size, Ordering::Relaxed);
            }
            None => {
                self.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets `p` if it is a tracked large block; returns whether it was.
    fn untrack(&self, p: *mut u8) -> bool {
        let p = p as usize;
        if self.tracked_live.load(Ordering::Relaxed) == 0
            || p < self.tracked_lo.load(Ordering::Relaxed)
            || p >= self.tracked_hi.load(Ordering::Relaxed)
        {
            return false;
        }
        let g = self.lock();
        let inner = g.inner();
        let Some(e) = inner.tracked.iter_mut().find(|e| e.0 == p) else {
            return false;
        };
        *e = (0, 0);
        self.tracked_live.fetch_sub(1, Ordering::Relaxed);
        let (lo, hi) = inner
            .tracked
            .iter()
            .filter(|e| e.0 != 0)
            .fold((usize::MAX, 0), |(lo, hi), e| {
                (lo.min(e.0), hi.max(e.0 + e.1))
            });
        self.tracked_lo.store(lo, Ordering::Relaxed);
        self.tracked_hi.store(hi, Ordering::Relaxed);
        true
    }

    /// Frees anything this allocator handed out, zeroizing key memory.
    ///
    /// # Safety
    /// As `GlobalAlloc::dealloc`.
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if contains(p) {
            // SAFETY: a live region block, by the caller's promise.
            unsafe { self.free_block(p) };
            return;
        }
        if self.untrack(p) {
            // SAFETY: the block is live for `layout.size()` bytes.
            unsafe { wipe(p, layout.size()) };
        }
        // SAFETY: not a region block, so System allocated it with `layout`.
        unsafe { System.dealloc(p, layout) }
    }

    /// Whether `p` is a tracked large block (it stays tracked).
    fn is_tracked(&self, p: *mut u8) -> bool {
        let p = p as usize;
        if self.tracked_live.load(Ordering::Relaxed) == 0
            || p < self.tracked_lo.load(Ordering::Relaxed)
            || p >= self.tracked_hi.load(Ordering::Relaxed)
        {
            return false;
        }
        let g = self.lock();
        g.inner().tracked.iter().any(|e| e.0 == p)
    }

    /// Moves a block into fresh key memory: copies, then wipes and frees the
    /// old one (a region block, a tracked block, or an ordinary block that
    /// took key material inside a scope). Null (old block untouched) when
    /// out of memory.
    ///
    /// # Safety
    /// As `GlobalAlloc::realloc`.
    unsafe fn move_secret(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with the old alignment is a valid layout
        // (GlobalAlloc::realloc contract).
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let q = self.alloc_secret(new, false);
        if q.is_null() {
            return q;
        }
        // SAFETY: both blocks are live and distinct, each at least this long.
        unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
        if contains(p) {
            // SAFETY: a live region block, not used again.
            unsafe { self.free_block(p) };
        } else {
            self.untrack(p);
            // SAFETY: live for `layout.size()` bytes, allocated by System
            // with `layout`, not used again.
            unsafe {
                wipe(p, layout.size());
                System.dealloc(p, layout);
            }
        }
        q
    }
}

/// Zeroes `n` bytes at `p` in a way the compiler cannot drop as dead stores
/// (the memory is about to be freed).
///
/// # Safety
/// `p` must be valid for `n` bytes of writes.
unsafe fn wipe(p: *mut u8, n: usize) {
    // SAFETY: caller promise.
    unsafe { ptr::write_bytes(p, 0, n) };
    std::hint::black_box(p);
}

/// Names the mapping `[anon:ferrohsm-keys]` in `/proc/PID/maps` where the
/// kernel supports it (5.17+ with CONFIG_ANON_VMA_NAME), for operators and
/// tests; failure is harmless.
fn name_mapping(base: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const NAME: &[u8] = b"ferrohsm-keys\0";
        // SAFETY: the name is a NUL-terminated static; the range is our
        // mapping; the call changes only its label.
        unsafe {
            libc::prctl(
                libc::PR_SET_VMA,
                libc::PR_SET_VMA_ANON_NAME as libc::c_ulong,
                base as libc::c_ulong,
                REGION_BYTES as libc::c_ulong,
                NAME.as_ptr() as libc::c_ulong,
            )
        };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = base;
}

// ---- fork ----------------------------------------------------------------------------

/// Registers the allocator's fork handlers, once. `ffi` calls this before
/// registering its own, so that its prepare handler (which may free memory)
/// runs before ours takes the allocator lock.
pub(crate) fn register_fork_handlers() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are functions of this library (linked
    // `-z nodelete`, never unmapped), callable at any time.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
    }
}

extern "C" fn before_fork() {
    // Held across fork() so the child never inherits a half-updated free
    // list; released by one of the two handlers below.
    std::mem::forget(REGION.lock());
}

extern "C" fn after_fork_parent() {
    REGION.lock.store(false, Ordering::Release);
}

extern "C" fn after_fork_child() {
    // The child's copy of the region is not locked (mlock is not inherited)
    // but still excluded from dumps. Locking it again here would copy every
    // locked page at each fork of the host application, most of which exec
    // at once; and the child cannot use the parent's keys anyway
    // (`CKR_CRYPTOKI_NOT_INITIALIZED`).
    REGION.lock.store(false, Ordering::Release);
}

// ---- the global allocator ---------------------------------------------------------------

/// The library's global allocator: the system allocator, except that
/// allocations made inside [`scope`] go to the key region, and key memory
/// is zeroized when freed (region blocks always, large in-scope blocks when
/// tracked).
pub struct Allocator;

#[global_allocator]
static GLOBAL: Allocator = Allocator;

// SAFETY: every block is either from `System` (allocated, resized and freed
// with the caller's layout) or a region block of a size class that holds the
// layout's size and alignment; `dealloc`/`realloc` tell them apart by
// address, and nothing here allocates through the global allocator.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_scope() {
            return REGION.alloc_secret(layout, false);
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_scope() {
            return REGION.alloc_secret(layout, true);
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { REGION.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if contains(p) {
            let c = REGION.class_at(p);
            if class_of(new_size, layout.align()) == Some(c) {
                if new_size < layout.size() {
                    // SAFETY: the tail is inside the block.
                    unsafe { ptr::write_bytes(p.add(new_size), 0, layout.size() - new_size) };
                }
                return p;
            }
            // Key memory stays key memory, inside a scope or not.
            // SAFETY: forwarded caller contract.
            return unsafe { REGION.move_secret(p, layout, new_size) };
        }
        if in_scope() || REGION.is_tracked(p) {
            // SAFETY: forwarded caller contract.
            return unsafe { REGION.move_secret(p, layout, new_size) };
        }
        // SAFETY: forwarded caller contract; `p` is an ordinary block.
        unsafe { System.realloc(p, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::stack::SHORT_SCRUB_BYTES;
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_of(1, 1), Some(0));
        assert_eq!(class_of(16, 8), Some(0));
        assert_eq!(class_of(17, 1), Some(1));
        assert_eq!(class_of(8, 64), Some(2));
        assert_eq!(class_of(CHUNK, 8), Some(CLASSES - 1));
        assert_eq!(class_of(CHUNK + 1, 8), None);
        assert_eq!(class_of(8, 2 * CHUNK), None);
        assert_eq!(class_size(CLASSES - 1), CHUNK);
    }

    #[test]
    fn scope_places_allocations_in_the_region() {
        let outside = Box::new([1u8; 100]);
        assert!(!contains(outside.as_ptr()));
        let inside = scope(|| vec![2u8; 100]);
        assert!(contains(inside.as_ptr()));
        assert_eq!(inside.as_ptr() as usize % 128, 0, "aligned to its class");
        // Nested scopes, and back out.
        let (a, b) = scope(|| (Box::new(3u64), scope(|| Box::new([4u8; 40]))));
        assert!(contains(&*a as *const u64 as *const u8));
        assert!(contains(b.as_ptr()));
        assert!(!contains(Box::new(5u8).as_ref()));
        assert!(status().mapped);
        assert!(status().dontdump);
    }

    #[test]
    fn alignment_and_zero_memory() {
        scope(|| {
            for align in [1usize, 2, 8, 16, 64, 256, 4096] {
                for size in [1usize, 3, 16, 100, 5000] {
                    let l = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: non-zero size; freed below with the same layout.
                    unsafe {
                        let p = std::alloc::alloc_zeroed(l);
                        assert!(contains(p));
                        assert_eq!(p as usize % align, 0);
                        assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        std::alloc::dealloc(p, l);
                    }
                }
            }
        });
    }

    #[test]
    fn freed_blocks_are_zeroized() {
        // The 32 KiB class: no other test here uses it, so the block stays
        // on the free list while we look at it.
        let l = Layout::from_size_align(20_000, 8).unwrap();
        let c = class_of(20_000, 8).unwrap();
        // SAFETY: allocated, written and freed with the same layout. After the
        // free the block belongs to the allocator, and this test reads it as
        // the allocator would: under the region lock, while it is on the free
        // list (its first word is the link).
        unsafe {
            let p = scope(|| std::alloc::alloc(l));
            assert!(contains(p));
            ptr::write_bytes(p, 0xA5, 20_000);
            std::alloc::dealloc(p, l);
            let g = REGION.lock();
            let mut on_list = false;
            let mut q = g.inner().free[c];
            while q != 0 {
                on_list |= q == p as usize;
                q = *(q as *const usize);
            }
            assert!(on_list);
            let block = std::slice::from_raw_parts(p, class_size(c));
            assert!(
                block[8..].iter().all(|&b| b == 0),
                "freed block not zeroized"
            );
        }
    }

    #[test]
    fn realloc_across_the_boundary() {
        // Ordinary → region: a Vec made outside grows inside a scope.
        let mut v: Vec<u8> = Vec::with_capacity(8);
        v.extend_from_slice(b"abcdefgh");
        assert!(!contains(v.as_ptr()));
        scope(|| v.extend_from_slice(&[7u8; 200]));
        assert!(contains(v.as_ptr()));
        assert_eq!(&v[..8], b"abcdefgh");
        // Region → region, outside any scope: key memory stays key memory.
        v.extend_from_slice(&[9u8; 2000]);
        assert!(contains(v.as_ptr()));
        assert_eq!(v.len(), 2208);
        assert_eq!(v[2207], 9);
        // Region → ordinary heap (too large for a chunk), tracked.
        v.resize(CHUNK * 2, 1);
        assert!(!contains(v.as_ptr()));
        assert!(REGION.tracked_live.load(Ordering::Relaxed) >= 1);
        assert_eq!(&v[..8], b"abcdefgh");
        // ... and back into the region when it shrinks to fit.
        v.truncate(100);
        v.shrink_to_fit();
        assert!(contains(v.as_ptr()));
        assert_eq!(&v[..8], b"abcdefgh");
        // Shrinking inside the class keeps the block.
        let p = v.as_ptr();
        v.truncate(70);
        v.shrink_to_fit();
        assert_eq!(v.as_ptr(), p);
        // An ordinary Vec outside any scope stays ordinary.
        let mut w = vec![0u8; 10];
        w.extend_from_slice(&[1u8; 1000]);
        assert!(!contains(w.as_ptr()));
    }

    #[test]
    fn large_blocks_are_tracked_and_wiped() {
        let big = scope(|| vec![0x5Au8; CHUNK * 4]);
        assert!(!contains(big.as_ptr()));
        let p = big.as_ptr() as usize;
        {
            let g = REGION.lock();
            assert!(g.inner().tracked.iter().any(|e| e.0 == p));
        }
        drop(big);
        let g = REGION.lock();
        assert!(!g.inner().tracked.iter().any(|e| e.0 == p));
        assert!(status().too_large >= 1);
    }

    #[test]
    fn many_threads() {
        let threads: Vec<_> = (0..8usize)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut keep = Vec::new();
                    for i in 0..2000usize {
                        let size = 1 + (i * 37 + t * 11) % 3000;
                        let v = scope(|| vec![(t ^ i) as u8; size]);
                        assert!(contains(v.as_ptr()));
                        if i % 3 == 0 {
                            keep.push(v);
                        }
                        if keep.len() > 50 {
                            keep.remove(0);
                        }
                    }
                    for v in &keep {
                        assert!(v.iter().all(|&b| b == v[0]), "a block was shared");
                    }
                    keep
                })
            })
            .collect();
        // Freed on another thread than the one that allocated them.
        let kept: Vec<Vec<Vec<u8>>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(kept.len(), 8);
        drop(kept);
    }

    #[test]
    fn fork_while_other_threads_allocate() {
        init();
        register_fork_handlers();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let busy: Vec<_> = (0..3)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let v = scope(|| vec![t as u8; 1 + n % 5000]);
                        std::hint::black_box(&v);
                        n += 1;
                    }
                })
            })
            .collect();
        for _ in 0..40 {
            // SAFETY: the child only allocates (our allocator, whose lock the
            // fork handlers released) and leaves with `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let v = scope(|| vec![7u8; 300]);
                let ok = contains(v.as_ptr()) && v.iter().all(|&b| b == 7);
                drop(v);
                // SAFETY: ends the child without running the parent's
                // destructors or atexit handlers.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut status = 0;
            loop {
                // SAFETY: waits for our own child; `status` is ours.
                let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    panic!("a forked child deadlocked in the allocator");
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: status {status:#x}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for t in busy {
            t.join().unwrap();
        }
    }

    #[test]
    fn status_reads_well() {
        init();
        // One key allocation, so a chunk is in use even when this test runs
        // alone in its process.
        let held = scope(|| vec![7u8; 32]);
        assert!(contains(held.as_ptr()));
        let st = status();
        assert!(st.mapped && st.dontdump && st.chunks_used >= 1);
        let text = st.to_string();
        assert!(
            text.starts_with("key memory: 64 MiB region, excluded from core dumps"),
            "{text}"
        );
        let failed = Status {
            lock_error: Some(libc::ENOMEM),
            ..st
        };
        assert!(failed.to_string().contains("RLIMIT_MEMLOCK too low"));
    }

    #[test]
    fn scrubbed_clears_the_stack_below() {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        let dirty = |at: usize| {
            let mut b = [0u8; 64];
            mem.read_exact_at(&mut b, at as u64 + 200).unwrap();
            b == [0x3C; 64]
        };
        /// `leave_secret` half the short scrub further down: still within
        /// it, and below the probe's own frames.
        #[inline(never)]
        fn half_deeper() -> usize {
            let mut pad = [0u8; SHORT_SCRUB_BYTES / 2];
            std::hint::black_box(&mut pad);
            let r = leave_secret();
            std::hint::black_box(&mut pad);
            r
        }
        let at = run(half_deeper);
        assert!(dirty(at), "the probe cannot see what a dead frame left");
        let at = scrubbed(half_deeper);
        assert!(!dirty(at), "scrubbed left the secret on the stack");
    }

    /// Fills 512 bytes of its frame with 0x3C and returns their address.
    #[inline(never)]
    fn leave_secret() -> usize {
        let mut secret = [0x3Cu8; 512];
        std::hint::black_box(&mut secret);
        secret.as_ptr() as usize
    }

    /// Runs `f` 4 KiB further down the stack, so that reading the stack
    /// afterwards (whose own frames are shallower) does not overwrite what
    /// `f` left.
    #[inline(never)]
    fn deeper(f: fn() -> usize) -> usize {
        let mut pad = [0u8; 4096];
        std::hint::black_box(&mut pad);
        let r = f();
        std::hint::black_box(&mut pad);
        r
    }

    #[test]
    fn scope_scrubs_the_stack_below() {
        use std::os::unix::fs::FileExt;
        // Dead stack is read through /proc/self/mem: no reads of freed
        // memory in the language's sense.
        let mem = std::fs::File::open("/proc/self/mem").unwrap();
        let dirty = |at: usize| {
            let mut b = [0u8; 64];
            mem.read_exact_at(&mut b, at as u64 + 200).unwrap();
            b == [0x3C; 64]
        };
        let at = deeper(leave_secret);
        assert!(dirty(at), "the probe cannot see what a dead frame left");
        let at = scope(|| deeper(leave_secret));
        assert!(!dirty(at), "scope left the secret on the stack");
    }
}
