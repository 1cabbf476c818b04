//! Named fail points for crash tests: `TANDEM_FAILPOINT=<name>` makes the
//! process abort (as a power cut or `kill -9` would stop it) when it reaches
//! that point, or, for the `-error` points, makes that operation fail.
//!
//! Points: `checkpoint-before-fsync`, `checkpoint-before-rename`,
//! `checkpoint-before-dir-fsync` (abort), `checkpoint-fsync-error` (the
//! file's fsync reports an I/O error).

use std::sync::OnceLock;

/// The environment variable naming the active fail point.
pub const VARIABLE: &str = "TANDEM_FAILPOINT";

fn active() -> Option<&'static str> {
    static ACTIVE: OnceLock<Option<String>> = OnceLock::new();
    ACTIVE.get_or_init(|| std::env::var(VARIABLE).ok().filter(|name| !name.is_empty())).as_deref()
}

/// Aborts the process if `name` is the active fail point.
pub fn crash_if_armed(name: &str) {
    if active() == Some(name) {
        eprintln!("tandem: fail point {name} reached; aborting");
        std::process::abort();
    }
}

/// An injected I/O error if `name` is the active fail point.
pub fn error_if_armed(name: &str) -> std::io::Result<()> {
    if active() == Some(name) {
        return Err(std::io::Error::other(format!("injected by fail point {name}")));
    }
    Ok(())
}
