//! The user's journey through the CLI: init, deploy, invoke, ls, get, rm.

use crate::support::{function_dir, Server};

#[test]
fn init_deploy_invoke_works_for_every_runtime() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    for (runtime, name) in [
        ("python3.12", "hello-py"),
        ("nodejs20.x", "hello-node"),
        ("provided.al2023", "hello-provided"),
    ] {
        let dir = tmp.path().join(name);
        let dir = dir.to_str().expect("utf-8 path");
        server.cli_ok(&["init", dir, "--runtime", runtime]);
        let deployed = server.cli_ok(&["deploy", dir, "--name", name]);
        assert!(deployed.contains(&format!("deployed {name}")), "{deployed}");
        // The template comes with a public URL: the HTTP trigger answers at once.
        let url = format!("{}/fn/{name}/", server.endpoint);
        assert!(deployed.contains(&format!("url: {url}")), "{deployed}");
        let answer = server.http("GET", &format!("/fn/{name}/?name=you"), "");
        assert_eq!(answer.status, 200, "{runtime}: {}", answer.json);
        assert_eq!(answer.json["message"], "Hello, you!", "{runtime}");
        let out = server.cli_ok(&["invoke", name, "--data", r#"{"name":"world"}"#]);
        let result: serde_json::Value = serde_json::from_str(out.trim()).expect("json result");
        assert_eq!(result["message"], "Hello, world!", "{runtime}");
        // The instance is warm now; it answers again with the new event.
        let out = server.cli_ok(&["invoke", name, "--data", r#"{"name":"again"}"#]);
        assert!(out.contains("Hello, again!"), "{runtime}: {out}");
    }
}

#[test]
fn invoke_reports_function_errors_on_stderr_with_exit_1() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let dir = function_dir(
        tmp.path(),
        "fails",
        &[(
            "app.py",
            "def handler(event, context):\n    raise ValueError('no good')\n",
            0o644,
        )],
    );
    server.cli_ok(&[
        "deploy",
        dir.to_str().expect("path"),
        "--name",
        "fails",
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
    ]);
    let out = server.cli(&["invoke", "fails"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("error json on stderr");
    assert_eq!(err["errorType"], "ValueError");
    assert_eq!(err["errorMessage"], "no good");
}

#[test]
fn deploy_updates_code_and_settings_and_rm_deletes() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let v1 = function_dir(
        tmp.path(),
        "v1",
        &[(
            "app.py",
            "import os\ndef handler(e, c):\n    return {'v': 1, 'g': os.environ.get('GREETING')}\n",
            0o644,
        )],
    );
    let v2 = function_dir(
        tmp.path(),
        "v2",
        &[(
            "app.py",
            "import os\ndef handler(e, c):\n    return {'v': 2, 'g': os.environ.get('GREETING')}\n",
            0o644,
        )],
    );
    let deploy = |dir: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "deploy",
            dir.to_str().expect("path"),
            "--name",
            "evolving",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
        ];
        args.extend_from_slice(extra);
        server.cli_ok(&args);
    };
    deploy(&v1, &[]);
    assert!(server.cli_ok(&["invoke", "evolving"]).contains(r#""v": 1"#));
    deploy(&v2, &["--env", "GREETING=hi", "--memory", "256"]);
    let out = server.cli_ok(&["invoke", "evolving"]);
    assert!(
        out.contains(r#""v": 2"#) && out.contains(r#""g": "hi""#),
        "{out}"
    );
    let got: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["get", "evolving", "--output", "json"]))
            .expect("json");
    assert_eq!(got["Configuration"]["MemorySize"], 256);
    let listed: serde_json::Value =
        serde_json::from_str(&server.cli_ok(&["ls", "--output", "json"])).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    server.cli_ok(&["rm", "evolving"]);
    let out = server.cli(&["get", "evolving"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceNotFoundException"));
}

#[test]
fn deploying_a_file_that_is_not_a_zip_fails_clearly_and_stores_nothing() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let bogus = tmp.path().join("bogus.zip");
    std::fs::write(&bogus, b"this is not a zip").expect("write");
    let out = server.cli(&[
        "deploy",
        bogus.to_str().expect("path"),
        "--name",
        "bogus",
        "--runtime",
        "python3.12",
        "--handler",
        "app.handler",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("InvalidParameterValueException")
            && err.contains("Could not unzip uploaded file"),
        "{err}"
    );
    assert!(server.cli_ok(&["ls"]).contains("no functions yet"));
}

#[test]
fn client_commands_explain_an_unreachable_server() {
    let out = std::process::Command::new(crate::support::nimbus_bin())
        .args(["ls", "--endpoint", "http://127.0.0.1:9"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Nimbus server"));
}

#[test]
fn publish_alias_shift_and_roll_back_from_the_cli() {
    let tmp = crate::support::tempdir();
    let server = Server::start(&tmp.path().join("data"));
    let deploy = |version: u32| {
        let dir = function_dir(
            tmp.path(),
            &format!("release{version}"),
            &[(
                "app.py",
                &format!("def handler(event, context):\n    return {{'release': {version}}}\n"),
                0o644,
            )],
        );
        server.cli_ok(&[
            "deploy",
            dir.to_str().expect("path"),
            "--name",
            "shop",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
        ]);
    };
    deploy(1);
    assert!(server.cli_ok(&["publish", "shop"]).contains("version 1"));
    deploy(2);
    assert!(server
        .cli_ok(&["publish", "shop", "--description", "second"])
        .contains("version 2"));
    let versions = server.cli_ok(&["versions", "shop"]);
    assert!(
        versions.contains("$LATEST") && versions.contains("second"),
        "{versions}"
    );

    server.cli_ok(&["alias", "set", "shop", "live", "1"]);
    assert!(server
        .cli_ok(&["invoke", "shop:live"])
        .contains(r#""release": 1"#));
    // Canary: 30% to version 2.
    let shifted = server.cli_ok(&["alias", "set", "shop", "live", "1", "--weight", "2=0.3"]);
    assert!(shifted.contains("30% to version 2"), "{shifted}");
    let runs: Vec<String> = (0..40)
        .map(|_| server.cli_ok(&["invoke", "shop:live"]))
        .collect();
    assert!(
        runs.iter().any(|r| r.contains(r#""release": 2"#)),
        "the canary got no traffic"
    );
    assert!(runs.iter().any(|r| r.contains(r#""release": 1"#)));
    // Promote, then roll back.
    server.cli_ok(&["alias", "set", "shop", "live", "2"]);
    assert!((0..5).all(|_| server
        .cli_ok(&["invoke", "shop:live"])
        .contains(r#""release": 2"#)));
    server.cli_ok(&["alias", "set", "shop", "live", "1"]);
    assert!((0..5).all(|_| server
        .cli_ok(&["invoke", "shop:live"])
        .contains(r#""release": 1"#)));
    assert!(server
        .cli_ok(&["alias", "ls", "shop"])
        .contains("live -> version 1"));

    // Provisioned instances, visible before any call.
    server.cli_ok(&["provision", "shop:live", "--count", "2"]);
    assert!(crate::support::eventually(
        std::time::Duration::from_secs(10),
        || {
            server
                .instances("shop")
                .iter()
                .filter(|i| i["provisioned"] == true && i["state"] == "idle")
                .count()
                == 2
        }
    ));
    server.cli_ok(&["provision", "shop:live", "--count", "0"]);
    assert!(crate::support::eventually(
        std::time::Duration::from_secs(5),
        || {
            server
                .instances("shop")
                .iter()
                .all(|i| i["provisioned"] != true)
        }
    ));

    let out = server.cli(&["alias", "set", "shop", "broken", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceNotFoundException"));
    server.cli_ok(&["alias", "rm", "shop", "live"]);
    assert!(server
        .cli_ok(&["alias", "ls", "shop"])
        .contains("no aliases"));
}
