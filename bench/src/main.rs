//! `nimbus-bench`: measures Nimbus against baselines taken in the same run on the same
//! machine (see `../shared/spec/performance.md`) and prints one table row per target.
//!
//! Run: `cargo run --release -p nimbus-bench` (it starts `target/release/nimbus` itself).

mod echo;
mod load;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use load::{Length, Stats, Target};

/// Benchmarks Nimbus against same-run baselines.
#[derive(Debug, Parser)]
struct Args {
    /// The nimbus binary (default: `nimbus` beside this one).
    #[arg(long)]
    nimbus: Option<PathBuf>,
    /// Python for functions and the process floor.
    #[arg(long, default_value = "/usr/bin/python3")]
    python: PathBuf,
    /// Node.js for functions and the process floor.
    #[arg(long, default_value = "/usr/bin/node")]
    node: PathBuf,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds of the overload run (P10).
    #[arg(long, default_value_t = 30)]
    overload_seconds: u64,
    /// Cold starts measured per runtime.
    #[arg(long, default_value_t = 20)]
    cold_samples: usize,
    /// Serve the HTTP floor (used internally).
    #[arg(long, hide = true)]
    echo_server: bool,
}

/// A child process reporting its address on its first stdout line; killed on drop.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(mut command: Command, prefix: &str) -> anyhow::Result<Service> {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a service")?;
        let stdout = child.stdout.take().context("service stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix(prefix)
            .with_context(|| format!("unexpected first line {line:?}"))?
            .trim_start_matches("http://")
            .parse()?;
        Ok(Service { child, addr })
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_nimbus(args: &Args, bin: &Path, data: &Path, flags: &[&str]) -> anyhow::Result<Service> {
    let mut command = Command::new(bin);
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--python")
        .arg(&args.python)
        .arg("--node")
        .arg(&args.node)
        .arg("--no-auth")
        .args(flags)
        .env("NIMBUS_LOG", "warn");
    Service::start(command, "nimbus listening on ")
}

fn zip_of(files: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        writer.start_file(*name, zip::write::SimpleFileOptions::default())?;
        writer.write_all(text.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

fn post(addr: SocketAddr, method: hyper::Method, path: &str, body: String) -> Target {
    Target {
        addr,
        method,
        path: path.to_owned(),
        body: Bytes::from(body),
        event_invocation: false,
    }
}

async fn create(
    addr: SocketAddr,
    name: &str,
    runtime: &str,
    handler: &str,
    files: &[(&str, &str)],
) -> anyhow::Result<()> {
    let zip = base64::engine::general_purpose::STANDARD.encode(zip_of(files)?);
    let body = serde_json::json!({
        "FunctionName": name, "Runtime": runtime, "Handler": handler, "Timeout": 60,
        "Role": "arn:aws:iam::000000000000:role/bench", "Code": {"ZipFile": zip},
    });
    let (status, _, answer) = load::once(&post(
        addr,
        hyper::Method::POST,
        "/2015-03-31/functions",
        body.to_string(),
    ))
    .await?;
    if status != 201 {
        bail!(
            "creating {name}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}

fn invoke_target(addr: SocketAddr, name: &str, event: &str) -> Target {
    post(
        addr,
        hyper::Method::POST,
        &format!("/2015-03-31/functions/{name}/invocations"),
        event.to_owned(),
    )
}

/// Median wall time of running `program args` to completion.
fn process_floor(program: &Path, args: &[&str], samples: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..samples {
        let begun = Instant::now();
        let status = Command::new(program).args(args).status()?;
        times.push(begun.elapsed());
        if !status.success() {
            bail!("{} failed", program.display());
        }
    }
    Ok(median(&mut times))
}

/// The median of `times` (which must not be empty).
fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Median time of an invoke that must cold-start (a config change retires the warm one).
async fn cold_starts(addr: SocketAddr, name: &str, samples: usize) -> anyhow::Result<Duration> {
    // Every sample changes the configuration, whoever called before.
    static SAMPLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut times = Vec::new();
    for _ in 0..samples {
        let i = SAMPLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let update = post(
            addr,
            hyper::Method::PUT,
            &format!("/2015-03-31/functions/{name}/configuration"),
            serde_json::json!({"Description": format!("sample {i}")}).to_string(),
        );
        let (status, _, _) = load::once(&update).await?;
        if status != 200 {
            bail!("updating {name}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, took, body) =
            load::once(&invoke_target(addr, name, r#"{"name":"bench"}"#)).await?;
        if status != 200 {
            bail!(
                "cold invoke of {name}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        times.push(took);
    }
    Ok(median(&mut times))
}

/// Durable inserts per second into a fresh Nimbus metadata database (WAL, the same
/// settings and the same statement the server uses), from `tasks` concurrent writers.
async fn raw_inserts(path: &Path, tasks: usize, length: Duration) -> anyhow::Result<f64> {
    use nimbus_store::MetadataStore as _;
    let meta = std::sync::Arc::new(nimbus_store::SqliteMetadata::open(path).await?);
    let function = nimbus_core::FunctionConfig {
        name: "raw".into(),
        version: "$LATEST".into(),
        spec: nimbus_core::validate::SpecPatch {
            runtime: Some("python3.11".into()),
            handler: Some("app.handler".into()),
            role: Some("arn:aws:iam::000000000000:role/bench".into()),
            ..Default::default()
        }
        .into_new_spec()
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        code_sha256_hex: "00".into(),
        code_size: 0,
        code_unzipped_size: 0,
        revision_id: "r".into(),
        last_modified: String::new(),
    };
    meta.insert_function(&function).await?;
    let begun = Instant::now();
    let mut writers = Vec::new();
    for t in 0..tasks {
        let meta = meta.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while begun.elapsed() < length {
                let event = nimbus_core::AsyncEvent {
                    id: format!("{t}-{n}"),
                    function: "raw".into(),
                    qualifier: None,
                    payload: br#"{"hello":"world"}"#.to_vec(),
                    attempts: 0,
                    enqueued_at: 0,
                    last_error: None,
                };
                if meta.enqueue_event(&event, 0).await.is_err() {
                    break;
                }
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for w in writers {
        total += w.await?;
    }
    Ok(total as f64 / begun.elapsed().as_secs_f64())
}

struct Row {
    id: &'static str,
    metric: String,
    ours: String,
    baseline: String,
    ratio: f64,
    target: &'static str,
    met: bool,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn print(rows: &[Row]) {
    println!("| # | metric | Nimbus | baseline (same run) | ratio | target | met |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.2}x | {} | {} |",
            r.id,
            r.metric,
            r.ours,
            r.baseline,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "no" }
        );
    }
}

fn statuses(stats: &Stats) -> String {
    let mut parts: Vec<String> = stats
        .statuses
        .iter()
        .map(|(s, n)| format!("{n}×{s}"))
        .collect();
    if stats.failures > 0 {
        parts.push(format!("{} failed", stats.failures));
    }
    parts.join(", ")
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let nimbus = match &args.nimbus {
        Some(p) => p.clone(),
        None => me.with_file_name("nimbus"),
    };
    if !nimbus.is_file() {
        bail!(
            "no nimbus binary at {}; build it (cargo build --release) or pass --nimbus",
            nimbus.display()
        );
    }
    let tmp = tempfile::tempdir()?;
    let mut echo_cmd = Command::new(&me);
    echo_cmd.arg("--echo-server");
    let echo = Service::start(echo_cmd, "echo listening on ")?;
    let server = start_nimbus(
        &args,
        &nimbus,
        &tmp.path().join("main"),
        &["--memory-budget", "1000000"],
    )?;
    let addr = server.addr;
    let echo_fn = [("app.py", "def handler(event, context):\n    return event\n")];
    let hello_py = [("app.py", "def handler(event, context):\n    return {'message': 'Hello, ' + event.get('name', 'world') + '!'}\n")];
    let hello_node = [(
        "index.js",
        "exports.handler = async (event) => ({ message: `Hello, ${event.name || 'world'}!` });\n",
    )];
    create(addr, "py-echo", "python3.11", "app.handler", &echo_fn).await?;
    let logging_fn = [("app.py", "def handler(event, context):\n    print('handled', context.aws_request_id)\n    return event\n")];
    create(addr, "py-log", "python3.11", "app.handler", &logging_fn).await?;
    create(addr, "py-hello", "python3.11", "app.handler", &hello_py).await?;
    create(
        addr,
        "node-hello",
        "nodejs20.x",
        "index.handler",
        &hello_node,
    )
    .await?;
    create(addr, "py-burst", "python3.11", "app.handler", &hello_py).await?;
    let event = r#"{"hello":"world"}"#;
    let mut rows = Vec::new();
    eprintln!("measuring floors…");

    let floor = Target {
        addr: echo.addr,
        ..invoke_target(echo.addr, "x", event)
    };
    load::run(&floor, 1, Length::Requests(500)).await?;
    let floor_c1 = load::run(&floor, 1, Length::Requests(5000)).await?;
    let floor_c32 = load::run(&floor, 32, Length::Time(Duration::from_secs(args.seconds))).await?;
    let py_floor = process_floor(&args.python, &["-c", "pass"], 20)?;
    let node_floor = process_floor(&args.node, &["-e", "0"], 20)?;

    eprintln!("P1/P2: warm invokes…");
    let warm = invoke_target(addr, "py-echo", event);
    load::run(&warm, 1, Length::Requests(500)).await?;
    let p1 = load::run(&warm, 1, Length::Requests(5000)).await?;
    for (p, factor, target) in [(50.0, 4.0, "≤ 4x"), (99.0, 8.0, "≤ 8x")] {
        let ratio = p1.percentile(p).as_secs_f64() / floor_c1.percentile(p).as_secs_f64();
        rows.push(Row {
            id: "P1",
            metric: format!("warm invoke p{p}, concurrency 1, Python echo"),
            ours: ms(p1.percentile(p)),
            baseline: format!("{} (hyper echo p{p})", ms(floor_c1.percentile(p))),
            ratio,
            target,
            met: ratio <= factor,
        });
    }
    load::run(&warm, 32, Length::Time(Duration::from_secs(1))).await?;
    let p2 = load::run(&warm, 32, Length::Time(Duration::from_secs(args.seconds))).await?;
    let ratio = p2.throughput() / floor_c32.throughput();
    rows.push(Row {
        id: "P2",
        metric: format!(
            "warm throughput, 32 clients, Python echo ({})",
            statuses(&p2)
        ),
        ours: format!("{:.0} req/s", p2.throughput()),
        baseline: format!("{:.0} req/s (hyper echo)", floor_c32.throughput()),
        ratio,
        target: "≥ 0.04x",
        met: ratio >= 0.04,
    });

    eprintln!("logging on the warm path…");
    let logging = invoke_target(addr, "py-log", event);
    load::run(&logging, 1, Length::Requests(500)).await?;
    let quiet_c1 = load::run(&warm, 1, Length::Requests(3000)).await?;
    let log_c1 = load::run(&logging, 1, Length::Requests(3000)).await?;
    let ratio = log_c1.percentile(50.0).as_secs_f64() / quiet_c1.percentile(50.0).as_secs_f64();
    rows.push(Row {
        id: "LOG",
        metric: "warm p50, a handler printing a line vs one printing nothing".into(),
        ours: ms(log_c1.percentile(50.0)),
        baseline: format!("{} (silent handler)", ms(quiet_c1.percentile(50.0))),
        ratio,
        target: "≤ 1.1x",
        met: ratio <= 1.1,
    });
    load::run(&logging, 32, Length::Time(Duration::from_secs(1))).await?;
    let log_c32 = load::run(
        &logging,
        32,
        Length::Time(Duration::from_secs(args.seconds)),
    )
    .await?;
    let ratio = p2.throughput() / log_c32.throughput();
    rows.push(Row {
        id: "LOG",
        metric: "warm throughput at 32 clients, silent vs printing handler".into(),
        ours: format!("{:.0} req/s", log_c32.throughput()),
        baseline: format!("{:.0} req/s (silent handler, P2)", p2.throughput()),
        ratio,
        target: "≤ 1.1x",
        met: ratio <= 1.1,
    });

    eprintln!("P3/P4: cold starts (Python alternating with a --no-sandbox server, for SBX)…");
    let bare = start_nimbus(
        &args,
        &nimbus,
        &tmp.path().join("bare"),
        &["--no-sandbox", "--memory-budget", "1000000"],
    )?;
    create(
        bare.addr,
        "py-hello",
        "python3.11",
        "app.handler",
        &hello_py,
    )
    .await?;
    // One sample of each in turn, so a slow spell of the machine hits both alike.
    let (mut sandboxed, mut unsandboxed) = (Vec::new(), Vec::new());
    for _ in 0..args.cold_samples {
        sandboxed.push(cold_starts(addr, "py-hello", 1).await?);
        unsandboxed.push(cold_starts(bare.addr, "py-hello", 1).await?);
    }
    drop(bare);
    let (p3, p3_bare) = (median(&mut sandboxed), median(&mut unsandboxed));
    let ratio = p3.as_secs_f64() / py_floor.as_secs_f64();
    rows.push(Row {
        id: "P3",
        metric: "cold start, Python hello (median)".into(),
        ours: ms(p3),
        baseline: format!("{} (`python3 -c pass`)", ms(py_floor)),
        ratio,
        target: "≤ 1.5x",
        met: ratio <= 1.5,
    });
    let p4 = cold_starts(addr, "node-hello", args.cold_samples).await?;
    let ratio = p4.as_secs_f64() / node_floor.as_secs_f64();
    rows.push(Row {
        id: "P4",
        metric: "cold start, Node hello (median)".into(),
        ours: ms(p4),
        baseline: format!("{} (`node -e 0`)", ms(node_floor)),
        ratio,
        target: "≤ 1.3x",
        met: ratio <= 1.3,
    });

    let ratio = p3.as_secs_f64() / p3_bare.as_secs_f64();
    rows.push(Row {
        id: "SBX",
        metric: "Python cold start with the sandbox vs without (--no-sandbox)".into(),
        ours: ms(p3),
        baseline: format!("{} (no namespaces, cgroups or limits)", ms(p3_bare)),
        ratio,
        target: "≤ 1.2x",
        met: ratio <= 1.2,
    });

    eprintln!("P6: 200 concurrent first requests…");
    let burst_target = invoke_target(addr, "py-burst", r#"{"name":"burst"}"#);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let t = burst_target.clone();
            tokio::spawn(async move { load::once(&t).await })
        })
        .collect();
    let mut burst = Stats::default();
    let begun = Instant::now();
    for task in tasks {
        match task.await? {
            Ok((status, took, _)) => {
                burst.latencies.push(took);
                *burst.statuses.entry(status).or_default() += 1;
            }
            Err(_) => burst.failures += 1,
        }
    }
    burst.elapsed = begun.elapsed();
    let all_ok = burst.statuses.get(&200) == Some(&200);
    let ratio = burst.percentile(99.0).as_secs_f64() / p3.as_secs_f64();
    rows.push(Row {
        id: "P6",
        metric: format!("200 concurrent first requests, p99 ({})", statuses(&burst)),
        ours: ms(burst.percentile(99.0)),
        baseline: format!("{} (one cold start, P3)", ms(p3)),
        ratio,
        target: "all 200; ≤ 5x",
        met: all_ok && ratio <= 5.0,
    });

    eprintln!("HTTP trigger and P9 async intake…");
    let url_config = post(
        addr,
        hyper::Method::POST,
        "/2021-10-31/functions/py-echo/url",
        r#"{"AuthType": "NONE"}"#.to_owned(),
    );
    load::once(&url_config).await?;
    let via_url = Target {
        method: hyper::Method::GET,
        path: "/fn/py-echo/hello?x=1".to_owned(),
        body: Bytes::new(),
        ..warm.clone()
    };
    load::run(&via_url, 1, Length::Requests(300)).await?;
    let trigger = load::run(&via_url, 1, Length::Requests(3000)).await?;
    let direct = load::run(&warm, 1, Length::Requests(3000)).await?;
    let ratio = trigger.percentile(50.0).as_secs_f64() / direct.percentile(50.0).as_secs_f64();
    rows.push(Row {
        id: "URL",
        metric: "HTTP trigger p50 vs direct Invoke p50, same function, concurrency 1".into(),
        ours: ms(trigger.percentile(50.0)),
        baseline: format!("{} (Invoke API)", ms(direct.percentile(50.0))),
        ratio,
        target: "report",
        met: true,
    });
    // Intake alone: the function's reserved concurrency is 0, so deliveries wait.
    create(addr, "py-async", "python3.11", "app.handler", &echo_fn).await?;
    load::once(&post(
        addr,
        hyper::Method::PUT,
        "/2017-10-31/functions/py-async/concurrency",
        r#"{"ReservedConcurrentExecutions": 0}"#.to_owned(),
    ))
    .await?;
    let mut event_target = invoke_target(addr, "py-async", event);
    event_target.event_invocation = true;
    let intake = load::run(
        &event_target,
        32,
        Length::Time(Duration::from_secs(args.seconds)),
    )
    .await?;
    let raw = raw_inserts(
        &tmp.path().join("raw.db"),
        32,
        Duration::from_secs(args.seconds),
    )
    .await?;
    let ratio = intake.throughput() / raw;
    rows.push(Row {
        id: "P9",
        metric: format!("async intake, 32 clients ({})", statuses(&intake)),
        ours: format!("{:.0} events/s", intake.throughput()),
        baseline: format!("{raw:.0} inserts/s (same SQLite setup, 32 tasks)"),
        ratio,
        target: "≥ 0.5x",
        met: ratio >= 0.5,
    });
    drop(server);

    eprintln!(
        "P10: {} s at 10x the concurrency limit…",
        args.overload_seconds
    );
    let limited = start_nimbus(
        &args,
        &nimbus,
        &tmp.path().join("overload"),
        &["--max-concurrency", "4", "--queue-timeout", "100"],
    )?;
    let sleepy = [(
        "app.py",
        "import time\ndef handler(event, context):\n    time.sleep(0.05)\n    return 'ok'\n",
    )];
    create(
        limited.addr,
        "py-sleepy",
        "python3.11",
        "app.handler",
        &sleepy,
    )
    .await?;
    let overload = load::run(
        &invoke_target(limited.addr, "py-sleepy", event),
        40,
        Length::Time(Duration::from_secs(args.overload_seconds)),
    )
    .await?;
    let bad: u64 = overload
        .statuses
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 429)
        .map(|(_, n)| n)
        .sum::<u64>()
        + overload.failures;
    rows.push(Row {
        id: "P10",
        metric: format!("40 clients vs a limit of 4 ({})", statuses(&overload)),
        ours: format!("{bad} other answers"),
        baseline: "0".into(),
        ratio: bad as f64,
        target: "only 200/429",
        met: bad == 0,
    });
    rows.push(forwarding(&args, &nimbus, tmp.path(), &echo_fn, event).await?);
    print(&rows);
    Ok(())
}

/// This node's id and the live nodes it sees, from `GET /nimbus/v1/nodes`.
async fn nodes(addr: SocketAddr) -> anyhow::Result<(String, usize)> {
    let target = post(addr, hyper::Method::GET, "/nimbus/v1/nodes", String::new());
    let (_, _, body) = load::once(&target).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let list = answer["nodes"].as_array().cloned().unwrap_or_default();
    let me = list
        .iter()
        .find(|n| n["this_node"] == true)
        .and_then(|n| n["id"].as_str())
        .context("the node does not list itself")?
        .to_owned();
    let live = list.iter().filter(|n| n["live"] == true).count();
    Ok((me, live))
}

/// FWD: the latency a forwarded invoke adds. Two nodes share their stores; a function whose
/// home is B is invoked through B (local) and through A (forwarded to B).
async fn forwarding(
    args: &Args,
    nimbus: &Path,
    tmp: &Path,
    function: &[(&str, &str)],
    event: &str,
) -> anyhow::Result<Row> {
    eprintln!("FWD: a forwarded invoke vs a local one (two nodes sharing their stores)…");
    let shared = tmp.join("cluster");
    std::fs::create_dir_all(&shared)?;
    let metadata = format!("sqlite://{}", shared.join("nimbus.db").display());
    let blobs = format!("file://{}", shared.join("blobs").display());
    let flags = [
        "--metadata",
        metadata.as_str(),
        "--blobs",
        blobs.as_str(),
        "--memory-budget",
        "1000000",
    ];
    let a = start_nimbus(args, nimbus, &tmp.join("node-a"), &flags)?;
    let b = start_nimbus(args, nimbus, &tmp.join("node-b"), &flags)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let (id_a, id_b) = loop {
        let ((id_a, live_a), (id_b, live_b)) = (nodes(a.addr).await?, nodes(b.addr).await?);
        if live_a == 2 && live_b == 2 {
            break (id_a, id_b);
        }
        if Instant::now() > deadline {
            bail!("the two nodes did not see each other");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = (0..)
        .map(|i| format!("fwd-{i}"))
        .find(|n| {
            nimbus_core::placement::home(n, [id_a.as_str(), id_b.as_str()]) == Some(id_b.as_str())
        })
        .context("no function name lands on B")?;
    create(a.addr, &name, "python3.11", "app.handler", function).await?;
    let (local, forwarded) = (
        invoke_target(b.addr, &name, event),
        invoke_target(a.addr, &name, event),
    );
    load::run(&local, 1, Length::Requests(500)).await?;
    load::run(&forwarded, 1, Length::Requests(500)).await?;
    let local = load::run(&local, 1, Length::Requests(3000)).await?;
    let forwarded = load::run(&forwarded, 1, Length::Requests(3000)).await?;
    let (ours, base) = (forwarded.percentile(50.0), local.percentile(50.0));
    let added = ours.saturating_sub(base);
    Ok(Row {
        id: "FWD",
        metric: format!(
            "forwarded invoke p50 vs local on the home node, concurrency 1 (+{})",
            ms(added)
        ),
        ours: ms(ours),
        baseline: format!("{} (local, home node)", ms(base)),
        ratio: ours.as_secs_f64() / base.as_secs_f64(),
        target: "≤ +0.3 ms",
        met: added <= Duration::from_micros(300),
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.echo_server {
        return runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            echo::serve(listener).await
        });
    }
    runtime.block_on(bench(args))
}
