//! Memory and CPU readings: jemalloc's allocated bytes (what `maxmemory`
//! is checked against, like Redis's `used_memory`) and the process's RSS.

/// Bytes currently allocated by the process, from jemalloc.
pub fn allocated_bytes() -> u64 {
    // The stats are cached by jemalloc until the epoch advances.
    if tikv_jemalloc_ctl::epoch::advance().is_err() {
        return 0;
    }
    tikv_jemalloc_ctl::stats::allocated::read().map_or(0, |bytes| bytes as u64)
}

/// jemalloc's transparent-huge-page mode: `default` (the kernel decides; in its
/// usual `madvise` mode, no huge pages), or `always` / `never` when set with
/// `_RJEM_MALLOC_CONF=thp:…` in the environment (README, "Huge pages"); `unknown`
/// if it cannot tell.
pub fn allocator_huge_pages() -> String {
    // SAFETY: `opt.thp` is one of jemalloc's string-valued keys, so the value read
    // is a pointer to a null-terminated string that lives as long as the process.
    let mode = unsafe { tikv_jemalloc_ctl::raw::read_str(b"opt.thp\0") };
    mode.ok().map_or_else(
        || "unknown".to_string(),
        |mode| String::from_utf8_lossy(mode.strip_suffix(b"\0").unwrap_or(mode)).into_owned(),
    )
}

/// Whether jemalloc returns freed pages from its own background threads (see
/// `ALLOCATOR_SETTINGS` in `main.rs`).
pub fn allocator_background_purge() -> bool {
    tikv_jemalloc_ctl::background_thread::read().unwrap_or(false)
}

/// Resident set size of this process in bytes (0 where /proc is missing).
pub fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|field| field.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page_size.max(0) as u64
}

/// User and system CPU seconds used by this process.
pub fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime))
}
