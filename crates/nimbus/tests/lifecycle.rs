//! Server lifecycle: restarts keep everything; a killed server leaves no instance behind.

use std::time::{Duration, Instant};

use crate::support::{function_dir, process_gone, Server};

const PID_FUNCTION: &str =
    "import os\ndef handler(event, context):\n    return {'pid': os.getpid()}\n";

fn deploy_pid_function(server: &Server, root: &std::path::Path, name: &str) {
    let dir = function_dir(root, name, &[("app.py", PID_FUNCTION, 0o644)]);
    server.cli_ok(&[
        "deploy",
        dir.to_str().expect("path"),
        "--name",
        name,
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
    ]);
}

fn invoke_pid(server: &Server, name: &str) -> i32 {
    let out = server.cli_ok(&["invoke", name]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    v["pid"].as_i64().expect("pid") as i32
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn restart_keeps_functions_and_code() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let server = Server::start(&data);
    deploy_pid_function(&server, tmp.path(), "survivor");
    let before: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["get", "survivor", "--output", "json"]))
            .expect("json");
    let pid = invoke_pid(&server, "survivor");
    server.stop();
    assert!(wait_gone(pid), "SIGTERM left instance {pid} running");
    let server = Server::start(&data);
    let after: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["get", "survivor", "--output", "json"]))
            .expect("json");
    assert_eq!(before["Configuration"], after["Configuration"]);
    assert!(invoke_pid(&server, "survivor") > 0);
}

#[test]
fn sigkill_of_the_server_leaves_no_instance_behind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut server = Server::start(&tmp.path().join("data"));
    deploy_pid_function(&server, tmp.path(), "orphan-check");
    let pid = invoke_pid(&server, "orphan-check");
    assert!(!process_gone(pid), "the warm instance should be alive");
    server.child.kill().expect("SIGKILL the server");
    let _ = server.child.wait();
    assert!(wait_gone(pid), "instance {pid} outlived a SIGKILLed server");
}

#[test]
fn a_code_update_retires_the_warm_instance() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Server::start(&tmp.path().join("data"));
    deploy_pid_function(&server, tmp.path(), "retiree");
    let first = invoke_pid(&server, "retiree");
    assert_eq!(
        invoke_pid(&server, "retiree"),
        first,
        "second call reuses the warm instance"
    );
    server.cli_ok(&[
        "deploy",
        tmp.path().join("retiree").to_str().expect("path"),
        "--name",
        "retiree",
        "--memory",
        "256",
    ]);
    let second = invoke_pid(&server, "retiree");
    assert_ne!(first, second, "a config update must start a fresh instance");
    assert!(
        wait_gone(first),
        "the retired instance {first} is still running"
    );
}
