//! The binaries' allocator, mimalloc, and its one setting; a binary installs both with
//! [`install_allocator!`](crate::install_allocator) at its crate root. A call allocates
//! and frees hundreds of small objects (Store, WASI context, hooks, header lists, JSON),
//! where glibc's malloc was 12.7 µs of a call's CPU against native's 4.8 (BENCHMARKS.md).
//!
//! Arenas are committed as they are used, not up front: committed eagerly (mimalloc's
//! default on Linux), an idle host with three plugins held 39.5 MiB resident against
//! glibc's 27.3 (the target is ≤ 40); committed lazily, 27.7, with calls as fast.

use std::ffi::{c_int, c_long};

pub use mimalloc::MiMalloc;

/// Declares mimalloc this binary's `#[global_allocator]` and runs [`configure`] before the
/// first allocation, as an ELF constructor (elsewhere than Linux, mimalloc's defaults).
#[macro_export]
macro_rules! install_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::MiMalloc = $crate::allocator::MiMalloc;

        #[cfg(target_os = "linux")]
        #[used]
        #[link_section = ".init_array"]
        static CONFIGURE_ALLOCATOR: extern "C" fn() = $crate::allocator::configure;
    };
}

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked through the `mimalloc` crate).
    fn mi_option_set(option: c_int, value: c_long);
    #[cfg(test)]
    fn mi_option_get(option: c_int) -> c_long;
}

/// `mi_option_arena_eager_commit` in mimalloc 3's `mi_option_e` (`mimalloc.h`). The crates
/// are pinned (Cargo.toml, Cargo.lock) and the test below fails if the numbering moves.
const ARENA_EAGER_COMMIT: c_int = 4;

/// Applies the settings above. It must run before the first allocation makes mimalloc's
/// first arena, which is before `main` (the runtime allocates): called from `main` it
/// changed nothing, hence the constructor in [`install_allocator!`](crate::install_allocator).
pub extern "C" fn configure() {
    // SAFETY: setting an option is a plain store into mimalloc's option table.
    unsafe { mi_option_set(ARENA_EAGER_COMMIT, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_mimallocs_arena_eager_commit() {
        // Its default, 2 ("eagerly where the OS overcommits"), is no neighbour's default.
        assert_eq!(unsafe { mi_option_get(ARENA_EAGER_COMMIT) }, 2, "mimalloc's option numbering moved");
        configure();
        assert_eq!(unsafe { mi_option_get(ARENA_EAGER_COMMIT) }, 0);
    }
}
