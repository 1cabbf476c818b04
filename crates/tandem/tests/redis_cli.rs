//! A smoke run with the real `redis-cli` binary against a real `tandem`
//! process. Skipped, with the reason printed, where `redis-cli` is not
//! installed (`scripts/test` installs it).

mod common;

use std::process::Command;

use common::TestServer;

/// Whether `redis-cli` can be run; prints why the test is skipped if not.
fn redis_cli_available() -> bool {
    match Command::new("redis-cli").arg("--version").output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            println!("SKIPPED: `redis-cli --version` failed with {}", output.status);
            false
        }
        Err(error) => {
            println!("SKIPPED: redis-cli is not on PATH ({error}); scripts/test installs redis-tools");
            false
        }
    }
}

/// Runs `redis-cli -p <port> <args>` and returns its stdout; asserts it exited 0.
fn redis_cli(server: &TestServer, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "redis-cli {args:?}: {}\n{stdout}", output.status);
    stdout
}

#[test]
fn redis_cli_talks_to_tandem() {
    if !redis_cli_available() {
        return;
    }
    let server = TestServer::start();
    assert_eq!(redis_cli(&server, &["ping"]), "PONG\n");
    assert_eq!(redis_cli(&server, &["set", "greeting", "hello world"]), "OK\n");
    assert_eq!(redis_cli(&server, &["get", "greeting"]), "hello world\n");
    assert_eq!(redis_cli(&server, &["--no-raw", "get", "greeting"]), "\"hello world\"\n");
    assert_eq!(redis_cli(&server, &["--no-raw", "get", "missing"]), "(nil)\n");
    assert_eq!(redis_cli(&server, &["--no-raw", "incr", "visits"]), "(integer) 1\n");
    assert_eq!(
        redis_cli(&server, &["--no-raw", "incr", "greeting"]),
        "(error) ERR value is not an integer or out of range\n"
    );

    assert_eq!(redis_cli(&server, &["hset", "user", "name", "ada", "lang", "en"]), "2\n");
    let mut raw_pairs: Vec<String> = redis_cli(&server, &["-3", "hgetall", "user"]).lines().map(String::from).collect();
    raw_pairs.sort();
    assert_eq!(raw_pairs, ["lang en", "name ada"], "RESP3 map, raw output");
    let mut pretty: Vec<String> = redis_cli(&server, &["-3", "--no-raw", "hgetall", "user"])
        .lines()
        .map(|line| line.split_once("# ").expect("numbered map entry").1.to_string())
        .collect();
    pretty.sort();
    assert_eq!(pretty, ["\"lang\" => \"en\"", "\"name\" => \"ada\""], "RESP3 map, formatted output");
    assert_eq!(redis_cli(&server, &["-3", "--no-raw", "get", "missing"]), "(nil)\n");

    let info = redis_cli(&server, &["info", "server"]);
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains(&format!("tcp_port:{}", server.port())), "{info}");
    assert_eq!(redis_cli(&server, &["dbsize"]), "3\n");
}

#[test]
fn redis_cli_pipes_many_commands_from_stdin() {
    if !redis_cli_available() {
        return;
    }
    let server = TestServer::start();
    let script: String = (0..200).map(|i| format!("SET key:{i} {i}\n")).collect::<String>() + "DBSIZE\n";
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 201, "{stdout}");
    assert!(lines[..200].iter().all(|line| *line == "OK"), "{stdout}");
    assert_eq!(lines[200], "200");
}
