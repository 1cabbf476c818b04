//! A pipeline of large writes bigger than the log's backlog bound is throttled,
//! not stalled: every write is acknowledged and present, under each fsync policy.

mod common;

use std::io::Write;

use common::{encode_command, RawConnection, TestServer};

fn pipeline_of_large_sets_completes(appendfsync: &str) {
    let server = TestServer::with_args(&["--appendfsync", appendfsync]);
    let value = vec![b'v'; 1024 * 1024];
    let mut pipeline = Vec::new();
    for index in 0..100 {
        let key = format!("big:{index}");
        pipeline.extend(encode_command(&[b"SET", key.as_bytes(), &value]));
    }
    let mut connection = RawConnection::connect(server.addr());
    let mut writer = connection.stream().try_clone().unwrap();
    // Send from another thread: the replies must be read while the 100 MB goes out.
    let sender = std::thread::spawn(move || writer.write_all(&pipeline).unwrap());
    let replies = connection.read_frames(100);
    sender.join().unwrap();
    assert!(replies.iter().all(|reply| reply == b"+OK\r\n"), "a large SET in the pipeline was not acknowledged");
    let mut client = server.connection();
    let size: usize = redis::cmd("STRLEN").arg("big:99").query(&mut client).unwrap();
    assert_eq!(size, value.len());
    let keys: usize = redis::cmd("DBSIZE").query(&mut client).unwrap();
    assert_eq!(keys, 100);
}

#[test]
fn a_100_mb_pipeline_is_acknowledged_in_full_with_appendfsync_everysec() {
    pipeline_of_large_sets_completes("everysec");
}

#[test]
fn a_100_mb_pipeline_is_acknowledged_in_full_with_appendfsync_always() {
    pipeline_of_large_sets_completes("always");
}
