//! The allocator's settings: freed pages go back to the kernel from jemalloc's
//! background threads (`main.rs`, `ALLOCATOR_SETTINGS`), and transparent huge
//! pages for the heap are an opt-in through jemalloc's environment variable
//! (README, "Huge pages"). INFO says what is in force, and the process's own
//! threads and page counts show it took effect.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{free_port, poll_until, tandem_command};

/// The kernel's transparent-huge-page mode: `always`, `madvise` or `never`
/// (the bracketed word of the sysfs file), `None` without THP support.
fn kernel_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let start = text.find('[')? + 1;
    let end = text[start..].find(']')? + start;
    Some(text[start..end].to_string())
}

/// Bytes of anonymous memory the process holds in huge pages.
fn anon_huge_bytes(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("read smaps_rollup");
    let line = rollup.lines().find(|line| line.starts_with("AnonHugePages:")).expect("an AnonHugePages line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|field| field.parse().ok()).expect("a number of kB");
    kib * 1024
}

fn info_field(connection: &mut redis::Connection, name: &str) -> String {
    let info: String = redis::cmd("INFO").arg("memory").query(connection).unwrap();
    let prefix = format!("{name}:");
    let line = info.lines().find(|line| line.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name} in {info}"));
    line[prefix.len()..].trim().to_string()
}

/// Stores 64 MiB of values, enough for the heap to span many 2 MiB pages.
fn fill(connection: &mut redis::Connection) {
    let value = vec![b'v'; 16 * 1024];
    for batch in 0..64 {
        let mut pipeline = redis::pipe();
        for index in 0..64 {
            pipeline.cmd("SET").arg(format!("key:{batch}:{index}")).arg(&value).ignore();
        }
        let _: () = pipeline.query(connection).unwrap();
    }
}

struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server started with `_RJEM_MALLOC_CONF=value` in its environment, or without it.
fn spawn(malloc_conf: Option<&str>) -> (Spawned, redis::Connection, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = tandem_command();
    command.env_remove("_RJEM_MALLOC_CONF");
    if let Some(value) = malloc_conf {
        command.env("_RJEM_MALLOC_CONF", value);
    }
    let child = command
        .args(["server", "--port", &port.to_string(), "--admin-port", "0", "--log-level", "warn", "--data-dir"])
        .arg(temp.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tandem server");
    let server = Spawned(child);
    let url = format!("redis://127.0.0.1:{port}/");
    poll_until(Duration::from_secs(30), "the server answers", || {
        redis::Client::open(url.as_str()).unwrap().get_connection().is_ok()
    });
    let connection = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    (server, connection, temp)
}

/// Names of the process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn freed_pages_are_returned_by_background_threads_unless_the_environment_says_otherwise() {
    let (server, mut connection, _temp) = spawn(None);
    assert_eq!(info_field(&mut connection, "mem_allocator_background_purge"), "1");
    let purgers = |pid| thread_names(pid).iter().filter(|name| name.starts_with("jemalloc_bg_thd")).count();
    assert!(purgers(server.0.id()) >= 1, "threads: {:?}", thread_names(server.0.id()));

    let (server, mut connection, _temp) = spawn(Some("background_thread:false"));
    assert_eq!(info_field(&mut connection, "mem_allocator_background_purge"), "0");
    assert_eq!(purgers(server.0.id()), 0, "threads: {:?}", thread_names(server.0.id()));
}

#[test]
fn by_default_the_allocator_leaves_huge_pages_to_the_kernel() {
    let (server, mut connection, _temp) = spawn(None);
    assert_eq!(info_field(&mut connection, "mem_allocator_huge_pages"), "default");
    fill(&mut connection);
    if kernel_mode().as_deref() == Some("madvise") {
        // Nothing asked for them, so the kernel gives none.
        assert_eq!(anon_huge_bytes(server.0.id()), 0);
    }
}

#[test]
fn the_environment_backs_the_heap_with_huge_pages() {
    let (server, mut connection, _temp) = spawn(Some("thp:always"));
    assert_eq!(info_field(&mut connection, "mem_allocator_huge_pages"), "always");
    fill(&mut connection);
    match kernel_mode().as_deref() {
        Some("always" | "madvise") => {
            let huge = anon_huge_bytes(server.0.id());
            assert!(huge >= 2 << 20, "64 MiB of values and only {huge} bytes in huge pages");
        }
        mode => eprintln!("the kernel's THP mode is {mode:?}: only INFO is checked"),
    }
}
