//! Observability from the CLI, and log retention that keeps the store bounded.

use std::time::Duration;

use crate::support::{eventually, Server};

const CHATTY: &str = "def handler(event, context):\n    print('y' * 300000)\n    return 'ok'\n";
const HELLO: &str = "def handler(event, context):\n    print('hi there')\n    return 'ok'\n";

#[test]
fn the_log_store_stays_within_its_size() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(&tmp.path().join("data"), &["--log-max-mb", "1"]);
    server.deploy_python(tmp.path(), "chatty", CHATTY, &[]);
    for _ in 0..8 {
        assert_eq!(server.invoke("chatty", "{}").status, 200);
    }
    let stored = || -> (usize, usize) {
        let answer = server.http("GET", "/nimbus/v1/functions/chatty/logs?limit=1000", "");
        let logs = answer.json["logs"].as_array().cloned().unwrap_or_default();
        let bytes = logs
            .iter()
            .filter_map(|l| l["text"].as_str())
            .map(str::len)
            .sum();
        (logs.len(), bytes)
    };
    assert!(
        eventually(Duration::from_secs(15), || {
            let (count, bytes) = stored();
            count >= 1 && bytes <= 1024 * 1024
        }),
        "retention did not trim the store: {:?}",
        stored()
    );
    // The newest invocation is the one kept.
    let last = server.invoke("chatty", "{}");
    let id = last
        .header("x-amzn-requestid")
        .expect("request id")
        .to_owned();
    assert!(eventually(Duration::from_secs(15), || {
        let answer = server.http("GET", "/nimbus/v1/functions/chatty/logs?limit=1", "");
        answer.json["logs"][0]["request_id"] == id.as_str()
    }));
}

#[test]
fn logs_usage_and_invoke_log_from_the_cli() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    server.deploy_python(tmp.path(), "greeter", HELLO, &[]);
    let out = server.cli(&["invoke", "greeter", "--log"]);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("START RequestId:")
            && log.contains("hi there")
            && log.contains("REPORT RequestId:"),
        "{log}"
    );
    assert!(eventually(Duration::from_secs(10), || {
        server
            .cli_ok(&["logs", "greeter", "--since", "5m"])
            .contains("hi there")
    }));
    assert!(server
        .cli_ok(&["logs", "greeter", "--grep", "nothing like this"])
        .is_empty());
    assert!(eventually(Duration::from_secs(10), || {
        let bill = server.cli_ok(&["usage", "--function", "greeter"]);
        bill.contains("greeter") && bill.contains("TOTAL")
    }));
    let bad = server.cli(&["logs", "greeter", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a time"));
    let metrics = server.http("GET", "/metrics", "");
    assert_eq!(metrics.status, 200);
}
