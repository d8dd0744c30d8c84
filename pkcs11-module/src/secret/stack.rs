//! Scrubbing what a key operation leaves behind outside the heap: the dead
//! stack below a finished step (never past what the thread's stack has left)
//! and the vector registers, where AES-NI code leaves round keys.
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::Cell;

/// Stack bytes overwritten when a scope ends: deeper than the key operations
/// run in scopes go below them. Measured below the call, optimised: EC key
/// generation 31 KiB, PIN KDF 15 KiB, RSA-2048 generation 9.5 KiB, RSA and
/// ECDSA signatures 6 KiB; unoptimised builds (tests) go about four times
/// deeper.
pub(super) const SCRUB_BYTES: usize = if cfg!(debug_assertions) {
    256 << 10
} else {
    64 << 10
};
/// Stack bytes overwritten after a hot-path step with a cached key schedule
/// ([`super::scrubbed`]): AES-GCM of 4 KiB reaches 1.2 KiB below the step
/// optimised, 11 KiB unoptimised.
pub(super) const SHORT_SCRUB_BYTES: usize = if cfg!(debug_assertions) {
    16 << 10
} else {
    2 << 10
};

/// Calls `f` in a frame of its own, below `scope`'s, so that `scrub_stack`
/// (called from `scope` after it returns) overwrites what `f` left there.
#[inline(never)]
pub(super) fn run<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Overwrites up to `SCRUB_BYTES` of stack below the caller's frame: the
/// frames of the scope's body, now dead, where RustCrypto leaves key
/// schedules, scalars and intermediate values it copied by value.
pub(super) fn scrub_stack() {
    scrub_frames(scrub_frame_count(SCRUB_BYTES));
}

/// As `scrub_stack`, over `SHORT_SCRUB_BYTES`.
pub(super) fn scrub_stack_short() {
    scrub_frames(scrub_frame_count(SHORT_SCRUB_BYTES));
}

/// One frame of the stack scrub.
pub(super) const SCRUB_FRAME: usize = 2 << 10;
/// Stack the scrub always leaves untouched above the thread's guard page
/// (for signal handlers and the scrub's own calls).
pub(super) const STACK_MARGIN: usize = 32 << 10;

thread_local! {
    /// Lowest usable stack address of this thread (0: not known yet;
    /// `usize::MAX`: unknown for good). Const-initialised, no destructor.
    static STACK_LOW: Cell<usize> = const { Cell::new(0) };
}

/// How many `SCRUB_FRAME`s to overwrite for `want` bytes: never more than the
/// thread's stack has left above its guard page less `STACK_MARGIN`, so a
/// host thread with a small stack (a JVM or a thread pool's) is never pushed
/// over its end by the scrub.
pub(super) fn scrub_frame_count(want: usize) -> usize {
    let here = {
        let probe = 0u8;
        std::ptr::addr_of!(probe) as usize
    };
    let low = match STACK_LOW.get() {
        0 => {
            let low = stack_low().unwrap_or(usize::MAX);
            STACK_LOW.set(low);
            low
        }
        low => low,
    };
    let room = if low == usize::MAX {
        // Unknown bounds: scrub only what the short scrub would.
        SHORT_SCRUB_BYTES
    } else {
        here.saturating_sub(low).saturating_sub(STACK_MARGIN)
    };
    want.min(room) / SCRUB_FRAME
}

/// The lowest address of the calling thread's stack (above its guard).
pub(super) fn stack_low() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read
    // and destroyed once; `addr`/`size` are plain out-parameters.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        let mut guard: libc::size_t = 0;
        let _ = libc::pthread_attr_getguardsize(&attr, &mut guard);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0 && !addr.is_null()).then(|| addr as usize + guard)
    }
}

/// Overwrites `n` frames of `SCRUB_FRAME` zero bytes, each below the last.
#[inline(never)]
pub(super) fn scrub_frames(n: usize) {
    if n == 0 {
        return;
    }
    let mut buf = [0u8; SCRUB_FRAME];
    // The zeros must really be written: `black_box` may read them.
    std::hint::black_box(&mut buf);
    scrub_frames(n - 1);
    // Used after the call, so the recursion is not a tail call that would
    // reuse this frame instead of going deeper.
    std::hint::black_box(&buf);
}

/// Zeroes the 16 XMM registers, where AES-NI code leaves round keys and
/// blocks (a core dump records every thread's registers). All of them are
/// caller-saved, so clobbering them is free for the caller. Other
/// architectures: nothing (not covered).
#[inline(always)]
pub(super) fn clear_vector_registers() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only writes registers, each declared clobbered; no memory, no
    // stack, flags untouched.
    unsafe {
        std::arch::asm!(
            "xorps xmm0, xmm0", "xorps xmm1, xmm1", "xorps xmm2, xmm2", "xorps xmm3, xmm3",
            "xorps xmm4, xmm4", "xorps xmm5, xmm5", "xorps xmm6, xmm6", "xorps xmm7, xmm7",
            "xorps xmm8, xmm8", "xorps xmm9, xmm9", "xorps xmm10, xmm10", "xorps xmm11, xmm11",
            "xorps xmm12, xmm12", "xorps xmm13, xmm13", "xorps xmm14, xmm14", "xorps xmm15, xmm15",
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nomem, nostack, preserves_flags)
        );
    }
}
