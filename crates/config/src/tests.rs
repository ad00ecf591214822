//! Parsing and layering: every setting has a flag, a variable and a key; precedence is
//! flag > variable > file > default; the file's mistakes name the file and the key.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::*;

#[derive(Debug, Parser)]
struct TestCli {
    #[command(flatten)]
    server: ServerArgs,
}

/// The command without its environment variables, so tests do not see the machine's.
fn command_without_env() -> clap::Command {
    TestCli::command().mut_args(|a| a.env(None))
}

/// Parses `flags` (after `nimbus server`) with `file` as the config file, variables off.
fn parse(flags: &[&str], file: Option<&str>) -> Result<ServerConfig, String> {
    parse_with(command_without_env(), flags, file)
}

fn parse_with(
    command: clap::Command,
    flags: &[&str],
    file: Option<&str>,
) -> Result<ServerConfig, String> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("nimbus.toml");
    let mut argv = vec!["nimbus".to_owned()];
    if let Some(text) = file {
        std::fs::write(&path, text).expect("write config");
        argv.extend(["--config".to_owned(), path.display().to_string()]);
    }
    argv.extend(flags.iter().map(|f| (*f).to_owned()));
    let matches = command
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    let cli = TestCli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    load(&cli.server, &matches).map_err(|e| e.to_string())
}

/// Every leaf key of `table`, as `group.key`.
fn leaf_keys(table: &toml::Table) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(group) => {
                keys.extend(group.keys().map(|k| format!("{key}.{k}")));
            }
            _ => {
                keys.insert(key.clone());
            }
        }
    }
    keys
}

/// A configuration with every optional setting given, so every key is serialised.
fn everything_set() -> ServerConfig {
    let mut config = ServerConfig {
        node_address: Some("10.0.0.1:9300".parse().expect("address")),
        ..ServerConfig::default()
    };
    config.storage.metadata = Some("postgres://db/nimbus".parse().expect("url"));
    config.storage.blobs = Some("s3://bucket/prefix".parse().expect("url"));
    config.storage.s3_endpoint = Some("http://127.0.0.1:9000".to_owned());
    config.storage.s3_region = Some("eu-west-1".to_owned());
    config.storage.s3_path_style = Some(true);
    config.runtimes.python = Some("/usr/bin/python3".into());
    config.runtimes.node = Some("/usr/bin/node".into());
    config.sandbox.expose = vec!["/opt".into()];
    config.limits.memory_budget = Some(2048);
    config.auth.credentials_file = Some("/etc/nimbus/credentials.json".into());
    config
}

#[test]
fn the_flags_defaults_are_the_files_defaults() {
    assert_eq!(parse(&[], None), Ok(ServerConfig::default()));
    let empty: ServerConfig = toml::from_str("").expect("empty file");
    assert_eq!(empty, ServerConfig::default());
}

#[test]
fn the_command_is_well_formed() {
    TestCli::command().debug_assert();
}

#[test]
fn every_setting_has_a_flag_a_variable_and_a_key_of_the_same_name() {
    let command = TestCli::command();
    let mut ids = BTreeSet::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let long = arg.get_long().expect("every setting has a long flag");
        let env = arg.get_env().expect("every flag has a variable");
        assert_eq!(
            env.to_string_lossy(),
            format!("NIMBUS_{}", long.replace('-', "_").to_uppercase()),
            "--{long}'s variable"
        );
        if id != "config" {
            ids.insert(id.to_owned());
        }
    }
    let table = toml::Table::try_from(everything_set()).expect("serialise");
    let keys = leaf_keys(&table);
    let key_names: BTreeSet<String> = keys
        .iter()
        .map(|k| k.rsplit('.').next().unwrap_or(k).to_owned())
        .collect();
    assert_eq!(
        ids, key_names,
        "flags (left) and config keys (right) differ"
    );
    assert_eq!(keys.len(), key_names.len(), "a key name is used twice");
}

#[test]
fn precedence_is_flag_then_variable_then_file_then_default() {
    let file = "listen = \"127.0.0.1:9400\"\n\
                [limits]\nkeep_alive = 5\nmax_concurrency = 7\nqueue_timeout = 9\n\
                [http]\nshutdown_grace = 3\n";
    // The only test that reads variables: names no other test sets.
    std::env::set_var("NIMBUS_MAX_CONCURRENCY", "70");
    std::env::set_var("NIMBUS_QUEUE_TIMEOUT", "90");
    std::env::set_var("NIMBUS_ASYNC_WORKERS", "3");
    let parsed = parse_with(
        TestCli::command(),
        &["--queue-timeout", "900", "--no-sandbox"],
        Some(file),
    );
    for name in [
        "NIMBUS_MAX_CONCURRENCY",
        "NIMBUS_QUEUE_TIMEOUT",
        "NIMBUS_ASYNC_WORKERS",
    ] {
        std::env::remove_var(name);
    }
    let config = parsed.expect("parses");
    assert_eq!(
        config.limits.queue_timeout, 900,
        "flag over variable and file"
    );
    assert_eq!(config.limits.max_concurrency, 70, "variable over file");
    assert_eq!(config.async_delivery.workers, 3, "variable over default");
    assert_eq!(config.limits.keep_alive, 5, "file over default");
    assert_eq!(config.http.shutdown_grace, 3, "file over default");
    assert_eq!(config.listen.port(), 9400, "file over default");
    assert!(config.sandbox.no_sandbox, "flag over default");
    assert_eq!(config.limits.init_timeout, 10, "default");
}

#[test]
fn a_flag_overrides_the_file_even_when_it_gives_the_default() {
    let file = "[limits]\nkeep_alive = 5\n[logs]\nformat = \"json\"\n[auth]\nno_auth = true\n";
    let config =
        parse(&["--keep-alive", "600", "--log-format", "text"], Some(file)).expect("parses");
    assert_eq!(config.limits.keep_alive, 600);
    assert_eq!(config.logs.format, LogFormat::Text);
    assert!(
        config.auth.no_auth,
        "a flag left out leaves the file's value"
    );
}

#[test]
fn an_unknown_key_names_the_key_and_the_file() {
    let err = parse(&[], Some("[limits]\nkeep_alive = 5\nkeep_alvie = 6\n")).expect_err("unknown");
    assert!(err.contains("unknown key `limits.keep_alvie`"), "{err}");
    assert!(err.contains("nimbus.toml, line 3"), "{err}");
    assert!(err.contains("keep_alive"), "says what is expected: {err}");
    let err = parse(&[], Some("colour = \"blue\"\n")).expect_err("unknown");
    assert!(err.contains("unknown key `colour`"), "{err}");
    let err = parse(&[], Some("[limit]\nkeep_alive = 5\n")).expect_err("unknown table");
    assert!(err.contains("unknown key `limit`"), "{err}");
}

#[test]
fn a_bad_value_names_the_key() {
    let cases = [
        ("[limits]\nkeep_alive = \"ten\"\n", "limits.keep_alive"),
        ("[limits]\nmax_concurrency = -1\n", "limits.max_concurrency"),
        ("[logs]\nformat = \"yaml\"\n", "logs.format"),
        (
            "[sandbox]\ninstance_network = \"bridge\"\n",
            "sandbox.instance_network",
        ),
        ("[storage]\nmetadata = \"mysql://db\"\n", "storage.metadata"),
        ("[storage]\nblobs = \"s3://B\"\n", "storage.blobs"),
        ("listen = \"localhost\"\n", "listen"),
        ("node_address = \"ftp://x\"\n", "node_address"),
    ];
    for (file, key) in cases {
        let err = parse(&[], Some(file)).expect_err(file);
        assert!(err.contains(&format!(": {key}: ")), "{file}: {err}");
        assert!(err.contains("nimbus.toml, line"), "{file}: {err}");
    }
    let err = parse(&[], Some("[limits\n")).expect_err("not TOML");
    assert!(err.contains("nimbus.toml, line 1"), "{err}");
}

#[test]
fn a_bad_flag_is_refused_by_clap_with_the_accepted_values() {
    let err = parse(&["--instance-network", "bridge"], None).expect_err("bad enum");
    assert!(err.contains("host") && err.contains("none"), "{err}");
    let err = parse(&["--metadata", "mysql://x"], None).expect_err("bad url");
    assert!(err.contains("sqlite://PATH or postgres://"), "{err}");
}

#[test]
fn settings_that_would_refuse_every_request_are_refused() {
    let err = parse(&["--max-connections", "0"], None).expect_err("zero");
    assert!(
        err.contains("http.max_connections: must be at least 1"),
        "{err}"
    );
    assert!(err.contains("--max-connections"), "{err}");
    let err = parse(&[], Some("[http]\nbody_idle_timeout = 0\n")).expect_err("zero");
    assert!(err.contains("http.body_idle_timeout"), "{err}");
    let err = parse(&["--expose", "relative/dir"], None).expect_err("relative");
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn the_default_backends_are_todays_files_in_the_data_dir() {
    let config = parse(&["--data-dir", "/srv/nimbus"], None).expect("parses");
    assert_eq!(
        config.metadata_backend(),
        MetadataBackend::Sqlite {
            path: "/srv/nimbus/nimbus.db".into()
        }
    );
    assert_eq!(
        config.blob_backend(|_| None).expect("blobs"),
        BlobBackend::Local {
            dir: "/srv/nimbus/blobs".into()
        }
    );
}

#[test]
fn an_s3_bucket_takes_its_settings_from_keys_then_the_aws_variables() {
    let env = |name: &str| {
        match name {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:9000"),
            "AWS_DEFAULT_REGION" => Some("eu-central-1"),
            "AWS_ACCESS_KEY_ID" => Some("AKID"),
            "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI"),
            _ => None,
        }
        .map(str::to_owned)
    };
    let config = parse(&["--blobs", "s3://code/nimbus"], None).expect("parses");
    let BlobBackend::S3 {
        bucket,
        prefix,
        endpoint,
        region,
        path_style,
        credentials,
    } = config.blob_backend(env).expect("s3")
    else {
        panic!("not s3")
    };
    assert_eq!((bucket.as_str(), prefix.as_str()), ("code", "nimbus"));
    assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(region, "eu-central-1");
    assert!(path_style, "a custom endpoint is path-style by default");
    let credentials = credentials.expect("keys");
    assert_eq!(credentials.access_key_id, "AKID");
    assert!(!format!("{credentials:?}").contains("wJalrXUtnFEMI"));

    let file = "[storage]\nblobs = \"s3://code\"\ns3_endpoint = \"https://minio.internal\"\n\
                s3_region = \"us-west-2\"\ns3_path_style = false\n";
    let config = parse(&[], Some(file)).expect("parses");
    let BlobBackend::S3 {
        endpoint,
        region,
        path_style,
        ..
    } = config.blob_backend(env).expect("s3")
    else {
        panic!("not s3")
    };
    assert_eq!(endpoint.as_deref(), Some("https://minio.internal"));
    assert_eq!(region, "us-west-2");
    assert!(!path_style);

    let config = parse(&["--blobs", "s3://code", "--s3-path-style"], None).expect("parses");
    let BlobBackend::S3 {
        endpoint,
        region,
        path_style,
        credentials,
        ..
    } = config.blob_backend(|_| None).expect("s3")
    else {
        panic!("not s3")
    };
    assert_eq!((endpoint, region.as_str()), (None, "us-east-1"));
    assert!(path_style && credentials.is_none());

    let bad_env = |name: &str| (name == "AWS_ENDPOINT_URL").then(|| "localhost:9000".to_owned());
    let err = config.blob_backend(bad_env).expect_err("bad endpoint");
    assert!(err.to_string().starts_with("AWS_ENDPOINT_URL: "), "{err}");
    let half = |name: &str| (name == "AWS_ACCESS_KEY_ID").then(|| "AKID".to_owned());
    assert!(config.blob_backend(half).is_err());
}

#[test]
fn the_example_config_holds_every_key_at_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/nimbus.toml");
    let text = std::fs::read_to_string(&path).expect("examples/nimbus.toml");
    let table = layers::parse_file(&path, &text).expect("the example parses");
    let parsed: ServerConfig = toml::Value::Table(table).try_into().expect("deserialise");
    assert_eq!(parsed, ServerConfig::default());
    // Keys without a fixed default are there too, commented out.
    let all = toml::Table::try_from(everything_set()).expect("serialise");
    for key in leaf_keys(&all) {
        let name = key.rsplit('.').next().unwrap_or(&key);
        let shown = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{name} ="))
        });
        assert!(shown, "examples/nimbus.toml lacks {key}");
    }
}

#[test]
fn the_readmes_example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (_, rest) = readme
        .split_once("### Configuration")
        .expect("a Configuration section");
    let (_, rest) = rest.split_once("```toml\n").expect("an example TOML");
    let (example, _) = rest.split_once("```").expect("its end");
    let table = layers::parse_file(&path, example).expect("the README's example parses");
    let parsed: ServerConfig = toml::Value::Table(table).try_into().expect("deserialise");
    assert_eq!(parsed.limits.max_concurrency, 200);
    assert!(matches!(
        parsed.metadata_backend(),
        MetadataBackend::Sqlite { .. }
    ));
}

#[test]
fn a_config_round_trips_through_toml() {
    let config = everything_set();
    let text = toml::to_string(&config).expect("serialise");
    let back: ServerConfig = toml::from_str(&text).expect("parse");
    assert_eq!(back, config);
}
