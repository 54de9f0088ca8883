//! Giving freed memory back to the operating system.
//!
//! mimalloc keeps pages a thread freed for reuse and returns them only when
//! that thread's heap is next collected, which an idle shard may not do for a
//! long time: after a burst of connections closes, resident memory would stay
//! at its peak. Each shard therefore asks its own heap to collect every few
//! seconds from the housekeeping tick.
//!
//! The allocator is mimalloc's stable line (v2), built without transparent
//! huge pages (Cargo.toml: features `v2`, `no_thp`): with huge pages a
//! single live block keeps a whole 2 MiB page resident, so an idle node sat
//! on ~22 MB of heap and a round of abuse left ~14 MB behind at random;
//! with 4 KiB pages the idle heap is ~3 MB and comes back within ~2 MB.

/// Seconds between two collections of a shard's heap.
pub const COLLECT_EVERY_SECS: u32 = 5;

/// Returns this thread's free mimalloc pages to the OS. Forced, so blocks
/// freed by other shards (a publication's last reference often drops
/// elsewhere) are taken back too; once every few seconds this costs little.
pub fn collect_thread_heap() {
    // SAFETY: mi_collect only walks the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
