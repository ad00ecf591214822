//! `nimbus server --config FILE`: the file's settings take effect, flags and variables
//! override it, and a file with a mistake is refused with the key named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{eventually, nimbus_bin, Server};

/// Sleeps for `event["sleep"]` seconds.
const SLEEPER: &str = r#"
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "slept"
"#;

/// `nimbus server --config FILE` with the server's log going to `log`.
fn server_command(config: &Path, log: &Path) -> Command {
    let mut command = Command::new(nimbus_bin());
    command
        .arg("server")
        .arg("--config")
        .arg(config)
        .env("NIMBUS_LOG", "info")
        .stderr(std::fs::File::create(log).expect("log file"));
    command
}

/// The server's start-up line about its limits, from its log.
fn limits_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .expect("server log")
        .lines()
        .find(|l| l.contains(" limits "))
        .unwrap_or_else(|| panic!("no limits line in the log"))
        .to_owned()
}

#[test]
fn a_config_file_sets_the_address_the_concurrency_and_the_keep_alive() {
    let tmp = crate::support::tempdir();
    // A free port, chosen here so the test can check the server took the file's.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = tmp.path().join("nimbus.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n\
             data_dir = \"{}\"\n\
             [limits]\nmax_concurrency = 2\nkeep_alive = 1\nqueue_timeout = 100\n\
             [auth]\nno_auth = true\n",
            tmp.path().join("data").display()
        ),
    )
    .expect("write config");
    let server = Server::spawn(&mut server_command(&config, &tmp.path().join("log")));
    assert_eq!(server.endpoint, format!("http://127.0.0.1:{port}"));
    server.deploy_python(tmp.path(), "sleeper", SLEEPER, &["--timeout", "10"]);
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| server.invoke("sleeper", r#"{"sleep": 1}"#).status))
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("invoke"))
            .collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        2,
        "max_concurrency = 2 from the file: {answers:?}"
    );
    assert_eq!(answers.iter().filter(|s| **s == 429).count(), 2);
    assert!(
        eventually(Duration::from_secs(10), || server
            .instances("sleeper")
            .is_empty()),
        "keep_alive = 1 from the file: idle instances are reclaimed"
    );
}

#[test]
fn a_flag_and_a_variable_override_the_file() {
    let tmp = crate::support::tempdir();
    // Held for the test: were the file's address used, the server could not start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let config = tmp.path().join("nimbus.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{}\"\n[limits]\nmax_concurrency = 1\nkeep_alive = 1\nqueue_timeout = 5\n\
             [auth]\nno_auth = true\n",
            held.local_addr().expect("addr")
        ),
    )
    .expect("write config");
    let log = tmp.path().join("log");
    let server = Server::spawn(
        server_command(&config, &log)
            .args(["--listen", "127.0.0.1:0", "--max-concurrency", "5"])
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .env("NIMBUS_MAX_CONCURRENCY", "7")
            .env("NIMBUS_KEEP_ALIVE", "9"),
    );
    assert_ne!(
        server.endpoint,
        format!("http://{}", held.local_addr().expect("addr")),
        "--listen over the file"
    );
    let limits = limits_line(&log);
    assert!(
        limits.contains("max_concurrency=5"),
        "the flag over its variable and the file: {limits}"
    );
    assert!(
        limits.contains("keep_alive_s=9"),
        "the variable over the file: {limits}"
    );
    assert_eq!(server.http("GET", "/nimbus/v1/health", "").status, 200);
}

#[test]
fn the_example_config_starts_a_server() {
    let tmp = crate::support::tempdir();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nimbus.toml");
    let log = tmp.path().join("log");
    let server = Server::spawn(
        server_command(&example, &log)
            .args(["--listen", "127.0.0.1:0", "--no-auth", "--data-dir"])
            .arg(tmp.path().join("data")),
    );
    assert_eq!(server.http("GET", "/nimbus/v1/health", "").status, 200);
    let limits = limits_line(&log);
    assert!(limits.contains("max_concurrency=1000"), "{limits}");
}

/// Runs `nimbus server` with `args` expecting it to refuse to start; gives its stderr.
fn refused(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(nimbus_bin())
        .arg("server")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run nimbus server");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_config_file_with_a_mistake_is_refused_naming_the_file_and_the_key() {
    let tmp = crate::support::tempdir();
    let config = tmp.path().join("nimbus.toml");
    let path = config.to_str().expect("utf-8");
    std::fs::write(&config, "[limits]\nkeep_alive = 5\nkeep_alvie = 6\n").expect("write");
    let said = refused(&["--config", path], &tmp.path().join("data"));
    assert!(said.contains("unknown key `limits.keep_alvie`"), "{said}");
    assert!(said.contains(&format!("{path}, line 3")), "{said}");
    std::fs::write(&config, "[sandbox]\ninstance_network = \"bridge\"\n").expect("write");
    let said = refused(&["--config", path], &tmp.path().join("data"));
    assert!(said.contains("sandbox.instance_network"), "{said}");
    assert!(!tmp.path().join("data").exists(), "nothing was written");
}

#[test]
fn an_unreachable_postgres_is_refused_naming_it_without_its_password() {
    let tmp = crate::support::tempdir();
    let said = refused(
        &["--metadata", "postgres://nimbus:pw@db.invalid/nimbus"],
        &tmp.path().join("data"),
    );
    assert!(
        said.contains("opening metadata in postgres://nimbus:***@db.invalid/nimbus"),
        "{said}"
    );
    assert!(said.contains("is PostgreSQL running there"), "{said}");
    assert!(!said.contains(":pw@"), "the password is not shown: {said}");
}

#[test]
fn an_unreachable_s3_is_refused_saying_what_to_check() {
    let tmp = crate::support::tempdir();
    let said = refused(
        &[
            "--blobs",
            "s3://nimbus-code/prod",
            "--s3-endpoint",
            "http://127.0.0.1:9",
        ],
        &tmp.path().join("data"),
    );
    assert!(
        said.contains("opening the blob store s3://nimbus-code/prod"),
        "{said}"
    );
}
