//! The global allocator: mimalloc, set for a daemon's memory footprint.
//!
//! Why not the system allocator: in scenario (b) of the benchmarks (ten
//! peers) glibc's malloc and free were 16 % of every instruction, and
//! allocations decoded on a peer's task and freed by the main loop cross
//! threads; with mimalloc the main loop's time there fell by a third
//! (docs/BENCHMARKS.md). Two of its defaults cost memory a daemon should
//! not hold, so they are changed before anything else runs:
//! - `purge_delay`: freed memory goes back to the system after 10 ms, not
//!   after mimalloc 3's default of one second (a second of a table's churn
//!   kept resident raised the peak RSS by tens of MiB);
//! - no transparent huge pages (a 2 MiB page is resident as a whole once
//!   one byte of it is touched): `allow_thp` off, and THP disabled for the
//!   process with `prctl(PR_SET_THP_DISABLE)`, as mimalloc does itself
//!   when that option is off at its start. (Its first arena is reserved,
//!   and asked for huge pages, at the first allocation, before `main`: the
//!   option alone comes too late for it, the process flag does not.)
//!
//! The option numbers are positions in mimalloc 3's `mi_option_e`
//! (include/mimalloc.h of the pinned libmimalloc-sys); the test below
//! checks them against the option names mimalloc reads from the
//! environment, so a version with another order fails it.
//!
//! The only `unsafe` here: calls of `mi_option_set`/`mi_option_get` and
//! `prctl`, which take and return integers (no pointers); mimalloc's
//! options may be set at any time.

use libmimalloc_sys::mi_option_t;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (milliseconds).
const PURGE_DELAY: mi_option_t = 15;
/// `mi_option_allow_thp` (0 or 1).
const ALLOW_THP: mi_option_t = 43;

/// The options as kbgp sets them: (option, value, name in the environment).
const TUNED: [(mi_option_t, i64, &str); 2] = [
    (PURGE_DELAY, 10, "MIMALLOC_PURGE_DELAY"),
    (ALLOW_THP, 0, "MIMALLOC_ALLOW_THP"),
];

/// Set the allocator's options (first thing in `main`). A value set in the
/// environment (`MIMALLOC_PURGE_DELAY=...`) is left as it is.
pub fn tune() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with integer arguments only; PR_SET_THP_DISABLE
        // sets a flag of this process (failure leaves THP as it was).
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    for (option, value, env) in TUNED {
        if std::env::var_os(env).is_none() {
            // SAFETY: an FFI call with two integers; mimalloc's options may
            // be set at any time from any thread.
            unsafe { libmimalloc_sys::mi_option_set(option, value as _) };
        }
    }
}

/// The current value of an option (for the tests).
#[cfg(test)]
pub fn get(option: mi_option_t) -> i64 {
    // SAFETY: an FFI call with an integer, returning an integer.
    // (`c_long` is `i64` on 64-bit Linux only.)
    #[allow(clippy::useless_conversion)]
    i64::from(unsafe { libmimalloc_sys::mi_option_get(option) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run in a child process (below) with the options set in its
    /// environment: prints what mimalloc read for each option number.
    #[test]
    fn print_options() {
        if std::env::var_os("KBGP_ALLOC_CHILD").is_none() {
            return;
        }
        for (option, _, env) in TUNED {
            println!("{env}={}", get(option));
        }
    }

    #[test]
    fn option_numbers_name_the_options_kbgp_means() {
        // mimalloc reads `MIMALLOC_<NAME>` into the option of that name:
        // values unlike any default, read back by our numbers, show that
        // the numbers are those options.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "alloc::tests::print_options", "--nocapture"])
            .env("KBGP_ALLOC_CHILD", "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .env("MIMALLOC_ALLOW_THP", "7")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("MIMALLOC_PURGE_DELAY=4321"), "{out}");
        assert!(out.contains("MIMALLOC_ALLOW_THP=7"), "{out}");
    }

    #[test]
    fn tune_sets_what_it_says() {
        tune();
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: prctl with integer arguments only (a query).
            assert_eq!(
                unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
                1
            );
        }
        for (option, value, env) in TUNED {
            if std::env::var_os(env).is_none() {
                assert_eq!(get(option), value, "{env}");
            }
        }
    }
}
