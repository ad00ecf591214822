//! Crash safety of async invocations: every accepted event is delivered, however often
//! the server is killed with SIGKILL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{eventually, Server, Sink, POST_TO_SINK};

/// Posts each event's id to the test's sink.
fn sink_function() -> String {
    format!(
        "{POST_TO_SINK}\ndef handler(event, context):\n    post(event['id'])\n    return 'ok'\n"
    )
}

/// A small xorshift generator: random enough to vary when the kills land.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn no_accepted_event_is_lost_across_twenty_kills() {
    let tmp = crate::support::tempdir();
    let data = tmp.path().join("data");
    let sink = Sink::start();
    let flags = ["--async-retry-delay", "100"];
    let server = Server::start_with(&data, &flags);
    let env = format!("SINK={}", sink.url);
    server.deploy_python(tmp.path(), "sink", &sink_function(), &["--env", &env]);
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut server = Some(server);
    let mut rng = Xorshift(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 | 1)
            .unwrap_or(0x9E37_79B9_7F4A_7C15),
    );
    let mut next_id = 0u64;
    for round in 0..20 {
        let current = server
            .take()
            .unwrap_or_else(|| Server::start_with(&data, &flags));
        let stop = Arc::new(AtomicBool::new(false));
        let endpoint = current.endpoint.clone();
        let first_id = next_id;
        next_id += 10_000;
        let producer = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("client");
                let mut id = first_id;
                while !stop.load(Ordering::SeqCst) {
                    id += 1;
                    let event = format!(r#"{{"id": "e{id}"}}"#);
                    let sent = client
                        .post(format!("{endpoint}/2015-03-31/functions/sink/invocations"))
                        .header("x-amz-invocation-type", "Event")
                        .body(event)
                        .send();
                    match sent {
                        Ok(r) if r.status().as_u16() == 202 => {
                            accepted.lock().expect("lock").push(format!("e{id}"));
                        }
                        Ok(r) => panic!("round {round}: unexpected status {}", r.status()),
                        Err(_) => break, // the server is being killed: not accepted
                    }
                }
            })
        };
        // Some load in every round however busy the machine is, then a kill at a random moment.
        let before = accepted.lock().expect("lock").len();
        eventually(Duration::from_secs(30), || {
            accepted.lock().expect("lock").len() >= before + 5
        });
        std::thread::sleep(Duration::from_millis(100 + rng.next() % 300));
        let mut current = current;
        current.child.kill().expect("SIGKILL");
        let _ = current.child.wait();
        stop.store(true, Ordering::SeqCst);
        producer.join().expect("producer");
    }
    let last = Server::start_with(&data, &flags);
    let accepted: HashSet<String> = accepted.lock().expect("lock").iter().cloned().collect();
    assert!(
        accepted.len() > 100,
        "the load was too light to mean much: {}",
        accepted.len()
    );
    let delivered = || -> HashSet<String> { sink.received().into_iter().collect() };
    let all_there = eventually(Duration::from_secs(90), || accepted.is_subset(&delivered()));
    let now = delivered();
    let missing: Vec<&String> = accepted.difference(&now).take(10).collect();
    assert!(
        all_there,
        "{} accepted events were never delivered, e.g. {missing:?}",
        accepted.difference(&now).count()
    );
    drop(last);
}

#[test]
fn a_failing_async_event_lands_in_the_dlq_and_can_be_redriven_from_the_cli() {
    let tmp = crate::support::tempdir();
    let server = Server::start_with(&tmp.path().join("data"), &["--async-retry-delay", "50"]);
    // Fails until the sink answers "fixed".
    let flaky = format!("{POST_TO_SINK}\ndef handler(event, context):\n    if get() != 'fixed':\n        raise RuntimeError('not yet')\n    return 'ok'\n");
    let sink = Sink::start();
    let env = format!("SINK={}", sink.url);
    server.deploy_python(tmp.path(), "flaky", &flaky, &["--env", &env]);
    let queued = server.cli_ok(&["invoke", "flaky", "--async", "--data", r#"{"job": 1}"#]);
    assert!(queued.starts_with("queued "), "{queued}");
    assert!(eventually(Duration::from_secs(10), || {
        server
            .cli_ok(&["dlq", "ls", "flaky"])
            .contains("RetriesExhausted")
    }));
    let listed = server.cli_ok(&["dlq", "ls", "--output", "json"]);
    let letters: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert_eq!(
        letters[0]["attempts"], 3,
        "the first try and Lambda's two retries"
    );
    assert_eq!(letters[0]["payload"]["job"], 1);
    sink.answer("fixed");
    assert!(server
        .cli_ok(&["dlq", "redrive", "--all"])
        .contains("re-driven: 1"));
    assert!(eventually(Duration::from_secs(10), || {
        server.cli_ok(&["dlq", "ls"]).contains("no dead letters")
    }));
    let out = server.cli(&["dlq", "rm", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}
