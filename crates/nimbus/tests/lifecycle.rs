//! Server lifecycle: restarts keep everything; a stopped or killed server leaves no
//! instance (nor anything an instance started) behind.

use std::time::{Duration, Instant};

use crate::support::{eventually, function_dir, processes_with_env, Server};

/// A function that reports the instance it runs in and can leave a detached process behind.
const MARKED_FUNCTION: &str = r#"
import os, subprocess
INSTANCE = os.urandom(8).hex()
def handler(event, context):
    if event.get("detach"):
        subprocess.Popen(["sleep", "300"], start_new_session=True)
    return {"instance": INSTANCE}
"#;

const MARKER: &str = "NIMBUS_TEST_MARKER";

/// Deploys the marked function; its processes carry `NIMBUS_TEST_MARKER=<marker>`.
fn deploy_marked(server: &Server, root: &std::path::Path, name: &str, marker: &str) {
    let dir = function_dir(root, name, &[("app.py", MARKED_FUNCTION, 0o644)]);
    let env = format!("{MARKER}={marker}");
    server.cli_ok(&[
        "deploy",
        dir.to_str().expect("path"),
        "--name",
        name,
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
        "--env",
        &env,
    ]);
}

fn invoke_instance(server: &Server, name: &str, event: &str) -> String {
    let out = server.cli_ok(&["invoke", name, "--data", event]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    v["instance"].as_str().expect("instance id").to_owned()
}

/// A marker unique to this test run and function.
fn unique_marker(name: &str) -> String {
    format!("{}-{name}", std::process::id())
}

/// Waits up to 10 s for every process carrying `marker` to be gone.
fn all_gone(marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if processes_with_env(MARKER, marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn restart_keeps_functions_and_code() {
    let tmp = crate::support::tempdir();
    let data = tmp.path().join("data");
    let marker = unique_marker("survivor");
    let server = Server::start(&data);
    deploy_marked(&server, tmp.path(), "survivor", &marker);
    let before: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["get", "survivor", "--output", "json"]))
            .expect("json");
    invoke_instance(&server, "survivor", "{}");
    assert!(
        !processes_with_env(MARKER, &marker).is_empty(),
        "a warm instance should run"
    );
    server.stop();
    assert!(all_gone(&marker), "SIGTERM left instance processes running");
    let server = Server::start(&data);
    let after: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["get", "survivor", "--output", "json"]))
            .expect("json");
    assert_eq!(before["Configuration"], after["Configuration"]);
    invoke_instance(&server, "survivor", "{}");
}

#[test]
fn sigkill_of_the_server_leaves_no_instance_behind() {
    let tmp = crate::support::tempdir();
    let marker = unique_marker("orphan-check");
    let mut server = Server::start(&tmp.path().join("data"));
    deploy_marked(&server, tmp.path(), "orphan-check", &marker);
    invoke_instance(&server, "orphan-check", "{}");
    assert!(
        !processes_with_env(MARKER, &marker).is_empty(),
        "a warm instance should run"
    );
    let server_pid = server.child.id();
    let jailers = || jailers_of(server_pid);
    assert!(!jailers().is_empty(), "shells wait for the next cold start");
    server.child.kill().expect("SIGKILL the server");
    let _ = server.child.wait();
    assert!(all_gone(&marker), "an instance outlived a SIGKILLed server");
    assert!(
        eventually(Duration::from_secs(10), || jailers().is_empty()),
        "waiting shells outlived a SIGKILLed server: {:?}",
        jailers()
    );
}

/// The jailer processes (waiting shells, and instances' outer processes) of the server
/// `pid`: their command line is `nimbus-jail jail <server pid> …`.
fn jailers_of(pid: u32) -> Vec<i32> {
    let pid = pid.to_string();
    crate::support::live_processes("cmdline", |args| {
        args.len() > 2 && args[1] == b"jail" && args[2] == pid.as_bytes()
    })
}

#[test]
fn sigkill_of_the_server_also_ends_processes_an_instance_detached() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: PID namespaces are unavailable, nothing to check");
        return;
    }
    let tmp = crate::support::tempdir();
    let marker = unique_marker("detacher");
    let mut server = Server::start(&tmp.path().join("data"));
    deploy_marked(&server, tmp.path(), "detacher", &marker);
    invoke_instance(&server, "detacher", r#"{"detach": true}"#);
    assert!(
        eventually(Duration::from_secs(5), || processes_with_env(
            MARKER, &marker
        )
        .len()
            >= 2),
        "the instance and its detached sleep should run"
    );
    server.child.kill().expect("SIGKILL the server");
    let _ = server.child.wait();
    assert!(
        all_gone(&marker),
        "a detached process outlived a SIGKILLed server"
    );
}

#[test]
fn a_config_update_retires_the_warm_instance() {
    let tmp = crate::support::tempdir();
    let marker = unique_marker("retiree");
    let server = Server::start(&tmp.path().join("data"));
    deploy_marked(&server, tmp.path(), "retiree", &marker);
    let first = invoke_instance(&server, "retiree", "{}");
    assert_eq!(
        invoke_instance(&server, "retiree", "{}"),
        first,
        "second call reuses the warm instance"
    );
    let old_pids = processes_with_env(MARKER, &marker);
    server.cli_ok(&[
        "deploy",
        tmp.path().join("retiree").to_str().expect("path"),
        "--name",
        "retiree",
        "--memory",
        "256",
    ]);
    let second = invoke_instance(&server, "retiree", "{}");
    assert_ne!(first, second, "a config update must start a fresh instance");
    let deadline = Instant::now() + Duration::from_secs(10);
    while old_pids.iter().any(|p| !crate::support::process_gone(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        old_pids.iter().all(|p| crate::support::process_gone(*p)),
        "the retired instance is still running"
    );
}

#[test]
fn a_default_server_generates_credentials_and_the_cli_finds_them() {
    let tmp = crate::support::tempdir();
    let data = tmp.path().join("data");
    let server = Server::start_exactly(&data, &[]);
    let file = data.join("credentials.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "credentials are private to their owner"
    );
    let unsigned = server.http("GET", "/2015-03-31/functions/", "");
    assert_eq!(unsigned.status, 403);
    assert_eq!(
        unsigned.header("x-amzn-errortype"),
        Some("MissingAuthenticationTokenException")
    );
    let without = std::process::Command::new(crate::support::nimbus_bin())
        .args(["ls"])
        .env("NIMBUS_ENDPOINT", &server.endpoint)
        .env("NIMBUS_DATA_DIR", tmp.path().join("elsewhere"))
        .output()
        .expect("run");
    assert_eq!(without.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("NIMBUS_DATA_DIR"),
        "the error says where credentials come from: {}",
        String::from_utf8_lossy(&without.stderr)
    );
    let with = std::process::Command::new(crate::support::nimbus_bin())
        .args(["ls"])
        .env("NIMBUS_ENDPOINT", &server.endpoint)
        .env("NIMBUS_DATA_DIR", &data)
        .output()
        .expect("run");
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    // A restart keeps the same credentials.
    let before = std::fs::read_to_string(&file).expect("read");
    server.stop();
    let _again = Server::start_exactly(&data, &[]);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), before);
}

#[test]
fn the_cli_finds_the_default_data_dir_from_a_subdirectory() {
    let tmp = crate::support::tempdir();
    let project = tmp.path().join("project");
    let server = Server::start_exactly(&project.join(".nimbus"), &[]);
    let deep = project.join("functions").join("hello");
    std::fs::create_dir_all(&deep).expect("mkdir");
    let listed = std::process::Command::new(crate::support::nimbus_bin())
        .args(["ls"])
        .current_dir(&deep)
        .env("NIMBUS_ENDPOINT", &server.endpoint)
        .env_remove("NIMBUS_DATA_DIR")
        .env_remove("NIMBUS_ACCESS_KEY_ID")
        .env_remove("NIMBUS_SECRET_ACCESS_KEY")
        .output()
        .expect("run");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
}
