//! Scheduling: fan-out to parallel instances, limits and throttling, the memory budget,
//! scale to zero, frozen idle instances, and the init timeout.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{eventually, processes_with_env, Answer, Server};

/// Sleeps for `event["sleep"]` seconds and says which instance ran it.
const SLEEPER: &str = r#"
import os, time
INSTANCE = os.urandom(8).hex()
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"instance": INSTANCE}
"#;

/// Fires `n` concurrent invocations of `name` with `event`.
fn burst(server: &Server, name: &str, event: &str, n: usize) -> Vec<Answer> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| server.invoke(name, event)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("invoke thread"))
            .collect()
    })
}

fn assert_throttled(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, 429);
    assert_eq!(
        answer.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert_eq!(answer.json["Reason"], reason, "{}", answer.json);
    assert_eq!(answer.json["message"], "Rate Exceeded.");
    assert!(answer.header("retry-after").is_some());
}

#[test]
fn a_burst_fans_out_to_parallel_instances_then_throttles_with_a_reason() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--max-concurrency", "3", "--queue-timeout", "200"],
    );
    server.deploy_python(tmp.path(), "sleeper", SLEEPER, &["--timeout", "10"]);
    // Ten times the limit, all at once.
    let answers = burst(&server, "sleeper", r#"{"sleep": 1.5}"#, 30);
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let throttled: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        ok.len() + throttled.len(),
        answers.len(),
        "only 200s and 429s"
    );
    assert_eq!(ok.len(), 3, "exactly the limit ran");
    let instances: HashSet<String> = ok
        .iter()
        .map(|a| a.json["instance"].as_str().expect("instance").to_owned())
        .collect();
    assert_eq!(
        instances.len(),
        3,
        "three invocations ran on three instances at once"
    );
    for answer in &throttled {
        assert_throttled(answer, "ConcurrentInvocationLimitExceeded");
    }
    let live = server.instances("sleeper");
    assert_eq!(live.len(), 3, "no instance leaked: {live:?}");
    assert!(live.iter().all(|i| i["state"] == "idle"));
    let counters = server
        .http("GET", "/nimbus/v1/instances?function=sleeper", "")
        .json;
    assert_eq!(counters["functions"][0]["throttles"], 27);
    assert_eq!(counters["functions"][0]["cold_starts"], 3);
    // Capacity is back: the next call is warm.
    assert_eq!(server.invoke("sleeper", "{}").status, 200);
    let after = server
        .http("GET", "/nimbus/v1/instances?function=sleeper", "")
        .json;
    assert_eq!(after["functions"][0]["warm_starts"], 1);
}

#[test]
fn a_queued_invocation_runs_when_capacity_frees_up_in_time() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--max-concurrency", "1", "--queue-timeout", "5000"],
    );
    server.deploy_python(tmp.path(), "sleeper", SLEEPER, &[]);
    let answers = burst(&server, "sleeper", r#"{"sleep": 0.3}"#, 3);
    assert!(
        answers.iter().all(|a| a.status == 200),
        "queued calls wait, then run"
    );
    assert_eq!(server.instances("sleeper").len(), 1);
}

#[test]
fn reserved_concurrency_is_enforced_and_validated() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(&tmp.path().join("data"), &["--queue-timeout", "100"]);
    server.deploy_python(tmp.path(), "reserved", SLEEPER, &["--timeout", "10"]);
    let path = "/2017-10-31/functions/reserved/concurrency";
    let put = server.http("PUT", path, r#"{"ReservedConcurrentExecutions": 1}"#);
    assert_eq!(put.status, 200);
    assert_eq!(put.json["ReservedConcurrentExecutions"], 1);
    let get = server.http("GET", "/2019-09-30/functions/reserved/concurrency", "");
    assert_eq!(get.json["ReservedConcurrentExecutions"], 1);
    let function = server.http("GET", "/2015-03-31/functions/reserved", "");
    assert_eq!(
        function.json["Concurrency"]["ReservedConcurrentExecutions"],
        1
    );
    let settings = server.http("GET", "/2016-08-19/account-settings/", "");
    assert_eq!(
        settings.json["AccountLimit"]["UnreservedConcurrentExecutions"],
        999
    );

    let answers = burst(&server, "reserved", r#"{"sleep": 1}"#, 3);
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1);
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_throttled(answer, "ReservedFunctionConcurrentInvocationLimitExceeded");
    }

    // Bad values are refused and change nothing.
    for bad in [
        r#"{"ReservedConcurrentExecutions": -1}"#,
        r#"{"ReservedConcurrentExecutions": 901}"#,
    ] {
        let answer = server.http("PUT", path, bad);
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(
            answer.header("x-amzn-errortype"),
            Some("InvalidParameterValueException")
        );
    }
    let get = server.http("GET", "/2019-09-30/functions/reserved/concurrency", "");
    assert_eq!(get.json["ReservedConcurrentExecutions"], 1);

    // Zero reserved: the function is off.
    assert_eq!(
        server
            .http("PUT", path, r#"{"ReservedConcurrentExecutions": 0}"#)
            .status,
        200
    );
    assert_throttled(
        &server.invoke("reserved", "{}"),
        "ReservedFunctionConcurrentInvocationLimitExceeded",
    );
    assert_eq!(server.http("DELETE", path, "").status, 204);
    assert_eq!(server.invoke("reserved", "{}").status, 200);
    let get = server.http("GET", "/2019-09-30/functions/reserved/concurrency", "");
    assert_eq!(get.json, serde_json::json!({}));
    let missing = server.http(
        "PUT",
        "/2017-10-31/functions/nope/concurrency",
        r#"{"ReservedConcurrentExecutions": 1}"#,
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn the_memory_budget_evicts_idle_instances_of_other_functions_before_refusing() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(
        &tmp.path().join("data"),
        &["--memory-budget", "384", "--queue-timeout", "100"],
    );
    server.deploy_python(
        tmp.path(),
        "small",
        SLEEPER,
        &["--memory", "128", "--timeout", "10"],
    );
    server.deploy_python(
        tmp.path(),
        "large",
        SLEEPER,
        &["--memory", "256", "--timeout", "10"],
    );
    server.deploy_python(tmp.path(), "other", SLEEPER, &["--memory", "128"]);
    assert_eq!(server.invoke("small", "{}").status, 200);
    assert_eq!(server.invoke("other", "{}").status, 200);
    // 256 more than the 384 MB budget holds with both idle: the least recently used goes.
    assert_eq!(server.invoke("large", "{}").status, 200);
    assert!(
        server.instances("small").is_empty(),
        "the LRU idle instance was evicted"
    );
    assert_eq!(server.instances("other").len(), 1);
    assert_eq!(server.instances("large").len(), 1);
    // With `large` busy and `other` idle, `small` evicts `other`; a second `small` finds
    // nothing idle to evict and is refused.
    std::thread::scope(|scope| {
        let busy = scope.spawn(|| server.invoke("large", r#"{"sleep": 2}"#));
        std::thread::sleep(Duration::from_millis(500));
        let answers = burst(&server, "small", r#"{"sleep": 1}"#, 2);
        assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1);
        let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
        assert_eq!(refused.len(), 1);
        assert_throttled(refused[0], "ConcurrentInvocationLimitExceeded");
        assert_eq!(busy.join().expect("busy").status, 200);
    });
    assert!(server.instances("other").is_empty());
}

#[test]
fn idle_instances_scale_to_zero_after_their_keep_alive() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(&tmp.path().join("data"), &["--keep-alive", "1"]);
    server.deploy_python(
        tmp.path(),
        "brief",
        SLEEPER,
        &["--env", "NIMBUS_TEST_MARKER=brief-keepalive"],
    );
    server.deploy_python(tmp.path(), "lingering", SLEEPER, &[]);
    let set = server.http(
        "PUT",
        "/nimbus/v1/functions/lingering/scaling",
        r#"{"KeepAliveSeconds": 600}"#,
    );
    assert_eq!(set.status, 200);
    assert_eq!(set.json["KeepAliveSeconds"], 600);
    assert_eq!(server.invoke("brief", "{}").status, 200);
    assert_eq!(server.invoke("lingering", "{}").status, 200);
    assert_eq!(server.instances("brief").len(), 1);
    assert!(!processes_with_env("NIMBUS_TEST_MARKER", "brief-keepalive").is_empty());
    assert!(
        eventually(Duration::from_secs(5), || server
            .instances("brief")
            .is_empty()),
        "the idle instance was not reclaimed"
    );
    assert!(eventually(Duration::from_secs(5), || processes_with_env(
        "NIMBUS_TEST_MARKER",
        "brief-keepalive"
    )
    .is_empty()));
    assert_eq!(
        server.instances("lingering").len(),
        1,
        "the override keeps it warm"
    );
    let bad = server.http(
        "PUT",
        "/nimbus/v1/functions/lingering/scaling",
        r#"{"KeepAliveSeconds": -5}"#,
    );
    assert_eq!(bad.status, 400);
    let unchanged = server.http("GET", "/nimbus/v1/functions/lingering/scaling", "");
    assert_eq!(unchanged.json["KeepAliveSeconds"], 600);
}

/// CPU time (utime + stime, clock ticks) of every process carrying `marker`.
fn cpu_ticks(marker: &str) -> u64 {
    processes_with_env("NIMBUS_TEST_MARKER", marker)
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

#[test]
fn idle_instances_use_no_cpu() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let spinner = r#"
import threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
def handler(event, context):
    return "ok"
"#;
    server.deploy_python(
        tmp.path(),
        "spinner",
        spinner,
        &["--env", "NIMBUS_TEST_MARKER=spinner-idle"],
    );
    assert_eq!(server.invoke("spinner", "{}").status, 200);
    // Idle instances are frozen within a few hundred milliseconds.
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks("spinner-idle");
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_ticks("spinner-idle");
    assert!(
        after - before <= 2,
        "an idle instance burned {} ticks in 1 s",
        after - before
    );
    // And it thaws: the next call is served warm.
    assert_eq!(server.invoke("spinner", "{}").status, 200);
    assert_eq!(server.instances("spinner").len(), 1);
}

#[test]
fn a_slow_init_is_retried_within_the_function_timeout() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(&tmp.path().join("data"), &["--init-timeout", "1"]);
    let slow = "import time\ntime.sleep(1.5)\ndef handler(event, context):\n    return 'ready'\n";
    server.deploy_python(tmp.path(), "slow-ok", slow, &["--timeout", "5"]);
    let answer = server.invoke("slow-ok", "{}");
    assert_eq!(answer.status, 200);
    assert!(
        answer.header("x-amz-function-error").is_none(),
        "{}",
        answer.json
    );
    assert_eq!(answer.json, "ready");
    server.deploy_python(tmp.path(), "slow-fail", slow, &["--timeout", "1"]);
    let answer = server.invoke("slow-fail", "{}");
    assert_eq!(answer.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(answer.json["errorType"], "Sandbox.Timedout");
    assert!(
        eventually(Duration::from_secs(3), || server
            .instances("slow-fail")
            .is_empty()),
        "the timed-out instance must not stay"
    );
}

#[test]
fn the_instances_command_shows_the_pool() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    server.deploy_python(tmp.path(), "shown", SLEEPER, &[]);
    assert!(server.cli_ok(&["instances"]).contains("no live instances"));
    assert_eq!(server.invoke("shown", "{}").status, 200);
    let table = server.cli_ok(&["instances", "shown"]);
    assert!(table.contains("shown") && table.contains("idle"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["instances", "--output", "json"])).expect("json");
    let instance = &json["instances"][0];
    for field in [
        "id",
        "function",
        "version",
        "state",
        "age_ms",
        "invocations",
        "init_ms",
        "pid",
    ] {
        assert!(instance.get(field).is_some(), "missing {field}: {instance}");
    }
    assert_eq!(instance["invocations"], 1);
    assert!(instance["init_ms"].as_f64().is_some_and(|ms| ms > 0.0));
}
