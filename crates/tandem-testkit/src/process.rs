//! Child processes under a deadline.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child` (spawned with piped output) to exit, at most `within`; a child still
/// running then is killed. Returns its output and whether it exited by itself in time.
pub fn output_within(mut child: Child, within: Duration) -> (Output, bool) {
    let deadline = Instant::now() + within;
    let mut finished = true;
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            finished = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (child.wait_with_output().expect("collect the child's output"), finished)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_child_past_its_deadline_is_killed_and_reported() {
        let quick = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
        let (output, finished) = output_within(quick, Duration::from_secs(10));
        assert!(finished && output.status.success());
        let slow = Command::new("sleep").arg("30").stdout(Stdio::piped()).spawn().unwrap();
        let (output, finished) = output_within(slow, Duration::from_millis(50));
        assert!(!finished && !output.status.success());
    }
}
