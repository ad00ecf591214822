//! Schedules: fire on their expression, never twice, and skip what a stopped server missed.

use std::time::Duration;

use crate::support::{eventually, Server, Sink, POST_TO_SINK};

/// Posts the request id of each invocation (a schedule's fires carry their fire time).
fn recorder() -> String {
    format!("{POST_TO_SINK}\ndef handler(event, context):\n    post(context.aws_request_id)\n    return 'ok'\n")
}

fn fire_times(sink: &Sink) -> Vec<i64> {
    sink.received()
        .iter()
        .filter_map(|id| id.rsplit('-').next()?.parse().ok())
        .collect()
}

#[test]
fn a_two_second_schedule_fires_on_its_beat_and_survives_a_restart_without_double_fires() {
    let tmp = crate::support::tempdir();
    let data = tmp.path().join("data");
    let fires = Sink::start();
    let server = Server::start(&data);
    let env = format!("SINK={}", fires.url);
    server.deploy_python(tmp.path(), "ticker", &recorder(), &["--env", &env]);

    let bad = server.cli(&[
        "schedule",
        "add",
        "broken",
        "--function",
        "ticker",
        "--expression",
        "*/2 * *",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid schedule expression"));
    let bad = server.http(
        "POST",
        "/nimbus/v1/schedules",
        r#"{"name": "broken", "function": "ticker", "expression": "rate(3 fortnights)"}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json["message"]
        .as_str()
        .is_some_and(|m| m.contains("fortnights")));
    let missing = server.http(
        "POST",
        "/nimbus/v1/schedules",
        r#"{"name": "orphan", "function": "nope", "expression": "rate(1 minute)"}"#,
    );
    assert_eq!(missing.status, 404);

    let added = server.cli_ok(&[
        "schedule",
        "add",
        "tick",
        "--function",
        "ticker",
        "--expression",
        "*/2 * * * * *",
    ]);
    assert!(added.contains("scheduled tick"), "{added}");
    let listed = server.cli_ok(&["schedule", "ls"]);
    assert!(
        listed.contains("tick") && !listed.contains("broken") && !listed.contains("orphan"),
        "{listed}"
    );
    assert!(eventually(Duration::from_secs(12), || fire_times(&fires)
        .len()
        >= 3));

    server.stop();
    let stopped_at = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(Duration::from_secs(3));
    let restarted_at = chrono::Utc::now().timestamp_millis();
    let server = Server::start(&data);
    let before = fire_times(&fires).len();
    assert!(eventually(Duration::from_secs(12), || fire_times(&fires)
        .len()
        >= before + 2));
    server.cli_ok(&["schedule", "rm", "tick"]);

    let mut times = fire_times(&fires);
    let count = times.len();
    times.sort_unstable();
    times.dedup();
    assert_eq!(times.len(), count, "a fire was delivered twice: {times:?}");
    assert!(
        times.iter().all(|t| t % 2000 == 0),
        "fires off the 2 s beat: {times:?}"
    );
    assert!(
        times.windows(2).any(|w| w[1] - w[0] == 2000),
        "consecutive fires are 2 s apart: {times:?}"
    );
    let during_downtime: Vec<&i64> = times
        .iter()
        .filter(|t| **t > stopped_at + 1000 && **t < restarted_at)
        .collect();
    assert!(
        during_downtime.is_empty(),
        "missed fires were made up: {during_downtime:?}"
    );
}
