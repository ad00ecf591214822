//! Layering the sources of settings: a flag wins over its `NIMBUS_*` variable (clap sees to
//! that), which wins over the config file, which wins over the default.
//!
//! The file is read into a TOML table and checked against [`ServerConfig`] on its own, so its
//! mistakes are reported with the file, the key and the line. Then every value that clap took
//! from the command line or the environment (its `ValueSource`) is written over the table,
//! and the result is deserialised once more, defaults filling the rest.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::ArgMatches;
use toml::{Table, Value};

use crate::ServerConfig;

/// `nimbus server`'s arguments: a config file, and every setting as a flag.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// A TOML file holding any of the settings below, grouped in tables as
    /// examples/nimbus.toml shows; flags and NIMBUS_* variables override it.
    #[arg(long, env = "NIMBUS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The settings the flags and variables gave.
    #[command(flatten)]
    pub settings: ServerConfig,
}

/// A configuration that cannot be used, saying where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not TOML, has a key Nimbus does not know, or a value of the
    /// wrong kind.
    #[error("config file {}{}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// The line the mistake is on, where known.
        line: Option<usize>,
        /// What is wrong, naming the key (`limits.keep_alive`).
        message: String,
    },
    /// A setting's value is wrong, or settings contradict each other.
    #[error("{key}: {message}")]
    Invalid {
        /// The setting (`http.max_connections`) or variable (`AWS_ENDPOINT_URL`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The configuration `args` describe, with `matches` (the `server` subcommand's) telling
/// which settings came from a flag or variable rather than a default: the file's values,
/// overridden by those, defaults for the rest; validated.
pub fn load(args: &ServerArgs, matches: &ArgMatches) -> Result<ServerConfig, ConfigError> {
    let mut table = match &args.config {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    let given = Table::try_from(&args.settings).map_err(|e| ConfigError::Invalid {
        key: "flags".to_owned(),
        message: e.to_string(),
    })?;
    overlay(&mut table, &given, &|id| {
        matches
            .try_get_raw(id)
            .ok()
            .and_then(|_| matches.value_source(id))
    });
    let config: ServerConfig =
        serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
            ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.into_inner().message().to_owned(),
            }
        })?;
    config.validate()?;
    Ok(config)
}

/// The TOML table in `path`, checked against [`ServerConfig`].
pub(crate) fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

/// `text` (the contents of `path`) as a table, checked against [`ServerConfig`].
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<Table, ConfigError> {
    let line_of = |e: &toml::de::Error| e.span().map(|span| line_at(text, span.start));
    let syntax = |e: toml::de::Error| ConfigError::File {
        path: path.to_owned(),
        line: line_of(&e),
        message: e.message().to_owned(),
    };
    let table: Table = toml::from_str(text).map_err(syntax)?;
    let deserializer = toml::Deserializer::parse(text).map_err(syntax)?;
    if let Err(e) = serde_path_to_error::deserialize::<_, ServerConfig>(deserializer) {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = match inner.message().strip_prefix("unknown field `") {
            // The path ends with the unknown key itself.
            Some(rest) => {
                let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
                let full = if key.is_empty() || key == "." {
                    name
                } else {
                    &key
                };
                format!(
                    "unknown key `{full}`{}",
                    expected.replacen(", expected", "; expected", 1)
                )
            }
            None => format!("{key}: {}", inner.message()),
        };
        return Err(ConfigError::File {
            path: path.to_owned(),
            line: line_of(&inner),
            message,
        });
    }
    Ok(table)
}

/// Writes over `base` every value of `given` (a table shaped as [`ServerConfig`]) whose
/// argument `source` says came from the command line or the environment. A setting's
/// argument id is its field's name, unique across groups (clap refuses duplicates).
fn overlay(base: &mut Table, given: &Table, source: &dyn Fn(&str) -> Option<ValueSource>) {
    let overrides = |id: &str| source(id).is_some_and(|s| s != ValueSource::DefaultValue);
    for (key, value) in given {
        match value {
            Value::Table(group) => {
                let target = base
                    .entry(key.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                if !target.is_table() {
                    *target = Value::Table(Table::new());
                }
                if let Value::Table(target) = target {
                    for (field, value) in group {
                        if overrides(field) {
                            target.insert(field.clone(), value.clone());
                        }
                    }
                }
            }
            leaf => {
                if overrides(key) {
                    base.insert(key.clone(), leaf.clone());
                }
            }
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}
