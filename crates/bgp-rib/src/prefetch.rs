//! Hints to the CPU to bring memory into its cache ahead of use (`unsafe`
//! module 3 of 3; the other two set socket options). The one `unsafe` here
//! is the x86-64 `prefetcht0` instruction, which reads nothing into the
//! program and cannot fault, whatever the address: `core::arch` marks it
//! `unsafe` only because it needs the SSE feature, which every x86-64 CPU
//! has. Elsewhere these do nothing. Exercised by the index's tests and by
//! every import (`speaker`'s routing), which prefetch as they go.

/// Start fetching the cache line at `p` (any address: nothing is read).
#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and writes nothing; SSE is part of the
    // x86-64 baseline, so the instruction exists on every target this builds for.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Start fetching the cache line holding `*r` (changes no result, only
/// when the line arrives).
#[inline(always)]
pub fn read<T>(r: &T) {
    line((r as *const T).cast());
}

/// [`read`] of the first cache lines of `s`, up to four (what an UPDATE's
/// few prefixes take).
#[inline]
pub fn slice<T>(s: &[T]) {
    let bytes = std::mem::size_of_val(s).min(4 * 64);
    let base: *const u8 = s.as_ptr().cast();
    let mut at = 0;
    while at < bytes {
        line(base.wrapping_add(at));
        at += 64;
    }
}
