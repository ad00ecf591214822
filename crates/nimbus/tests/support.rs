//! The harness: a real server on a free port, and the CLI pointed at it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fresh temporary directory in the target directory (where the suite keeps its files).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("nimbus-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a temporary directory")
}

/// The binary under test.
pub fn nimbus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nimbus"))
}

/// A running `nimbus server`, stopped (SIGTERM) when dropped.
pub struct Server {
    pub child: Child,
    pub endpoint: String,
}

impl Server {
    /// Starts a server on a free loopback port with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts a server with extra `nimbus server` flags (and authentication off).
    pub fn start_with(data_dir: &Path, flags: &[&str]) -> Server {
        let mut flags = flags.to_vec();
        flags.push("--no-auth");
        Server::start_exactly(data_dir, &flags)
    }

    /// Starts a server with exactly these flags (authentication on by default).
    pub fn start_exactly(data_dir: &Path, flags: &[&str]) -> Server {
        let mut command = Command::new(nimbus_bin());
        command
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .env("NIMBUS_LOG", "info")
            .stderr(Stdio::inherit());
        Server::spawn(&mut command)
    }

    /// Starts `command` (a `nimbus server` command line) and waits for its listening line.
    pub fn spawn(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nimbus server");
        let stdout = child.stdout.take().expect("server stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let endpoint = line
            .trim()
            .strip_prefix("nimbus listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Server { child, endpoint }
    }

    /// Runs a client command against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(nimbus_bin())
            .args(args)
            .env("NIMBUS_ENDPOINT", &self.endpoint)
            .output()
            .expect("run nimbus client command")
    }

    /// Runs a client command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "nimbus {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deploys a Python function from `source` (as `app.py`, handler `app.handler`).
    pub fn deploy_python(&self, root: &Path, name: &str, source: &str, flags: &[&str]) {
        let dir = function_dir(root, name, &[("app.py", source, 0o644)]);
        let mut args = vec![
            "deploy",
            dir.to_str().expect("utf-8 path"),
            "--name",
            name,
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
        ];
        args.extend_from_slice(flags);
        self.cli_ok(&args);
    }

    /// Sends an HTTP request to the server; gives status, headers and the JSON body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> Answer {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = client
            .request(method, format!("{}{path}", self.endpoint))
            .body(body.to_owned())
            .send()
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
        }
    }

    /// Invokes `name` with `event` over the Lambda API.
    pub fn invoke(&self, name: &str, event: &str) -> Answer {
        self.http(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            event,
        )
    }

    /// The live instances of `function`, as `GET /nimbus/v1/instances` lists them.
    pub fn instances(&self, function: &str) -> Vec<serde_json::Value> {
        let answer = self.http(
            "GET",
            &format!("/nimbus/v1/instances?function={function}"),
            "",
        );
        answer.json["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the server to exit.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: serde_json::Value,
}

impl Answer {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Waits up to `limit` for `condition` to hold.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Writes `files` (path, contents, mode) into a new directory under `root`.
pub fn function_dir(root: &Path, name: &str, files: &[(&str, &str, u32)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (path, text, mode) in files {
        let path = dir.join(path);
        std::fs::write(&path, text).expect("write function file");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    dir
}

/// Whether process `pid` is gone (or a zombie nobody will run again).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The live processes whose `/proc/<pid>/<file>` (NUL-separated) has an entry for which
/// `wanted` holds, given all the entries.
pub fn live_processes(file: &str, wanted: impl Fn(&[&[u8]]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|text| {
                let fields: Vec<&[u8]> = text.split(|b| *b == 0).collect();
                wanted(&fields)
            })
        })
        .filter(|pid| !process_gone(*pid))
        .collect()
}

/// The processes whose environment holds `KEY=VALUE` (an instance and what it started).
pub fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    live_processes("environ", |vars| vars.contains(&needle.as_bytes()))
}

/// A tiny HTTP endpoint on loopback that functions report to (they cannot reach the test's
/// files: an instance sees only its own root view). Each POST body is recorded; a GET
/// answers with the current `answer`.
pub struct Sink {
    /// The URL functions post to.
    pub url: String,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    answer: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Sink {
    /// Starts listening on a free port (the thread lives as long as the test process).
    pub fn start() -> Sink {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a sink");
        let url = format!("http://{}/", listener.local_addr().expect("sink address"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (seen, answering) = (received.clone(), answer.clone());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                let (mut method, mut length) = (String::new(), 0usize);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if method.is_empty() {
                        method = line.split(' ').next().unwrap_or_default().to_owned();
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let reply = if method == "POST" {
                    seen.lock()
                        .expect("sink lock")
                        .push(String::from_utf8_lossy(&body).into_owned());
                    "ok".to_owned()
                } else {
                    answering.lock().expect("sink lock").clone()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            }
        });
        Sink {
            url,
            received,
            answer,
        }
    }

    /// Every body posted so far.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("sink lock").clone()
    }

    /// Sets what a GET answers.
    pub fn answer(&self, text: &str) {
        *self.answer.lock().expect("sink lock") = text.to_owned();
    }
}

/// Python that posts `$body` to the sink named by the `SINK` variable.
pub const POST_TO_SINK: &str = r#"
import os, urllib.request
def post(body):
    request = urllib.request.Request(os.environ["SINK"], data=body.encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()
def get():
    return urllib.request.urlopen(os.environ["SINK"], timeout=10).read().decode()
"#;
