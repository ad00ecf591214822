//! The server's configuration: one typed [`ServerConfig`] that `nimbus server`'s flags, their
//! `NIMBUS_*` environment variables and a TOML file (`--config FILE`) all fill in.
//!
//! Each setting is declared once, as a field of a group struct that derives both clap's
//! `Args` (its flag, variable, default and help) and serde (its key in the file): the flag
//! `--keep-alive` is the key `keep_alive` of the `[limits]` table and the variable
//! `NIMBUS_KEEP_ALIVE`. [`load`] layers them: a flag wins over its variable, which wins over
//! the file, which wins over the default. Closed sets of values are enums ([`LogFormat`],
//! [`InstanceNetwork`]), backends are URLs parsed into enums ([`MetadataBackend`],
//! [`BlobBackend`]). Nothing here opens a store or probes the host: that is the server's.

mod backend;
mod layers;
mod values;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use serde::{Deserialize, Serialize};

pub use backend::{
    check_endpoint, BlobBackend, BlobUrl, MetadataBackend, NodeAddress, S3Credentials, UrlError,
};
pub use layers::{load, ConfigError, ServerArgs};
pub use values::{InstanceNetwork, LogFormat};

/// Every setting of `nimbus server`, grouped as the config file's tables are.
///
/// Deserialising fills anything missing with its default and refuses unknown keys; the
/// defaults are the flags' (a test holds the two equal).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (a non-loopback address needs API credentials).
    #[arg(long, env = "NIMBUS_LISTEN", value_name = "ADDR", default_value_t = default_listen())]
    pub listen: SocketAddr,
    /// Where the server keeps its files: the lock, credentials, code, runtime files, logs
    /// (and the metadata and blobs unless --metadata and --blobs put them elsewhere).
    #[arg(
        long,
        env = "NIMBUS_DATA_DIR",
        value_name = "DIR",
        default_value = ".nimbus"
    )]
    pub data_dir: PathBuf,
    /// Region reported in ARNs and to functions, and the one signatures are scoped to.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// How other nodes reach this one, http://HOST:PORT (default: the listen address; this
    /// host's name when listening on every interface).
    #[arg(long, env = "NIMBUS_NODE_ADDRESS", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_address: Option<NodeAddress>,
    /// Where metadata and code blobs are stored.
    #[command(flatten, next_help_heading = "Storage")]
    pub storage: Storage,
    /// The interpreters functions run under.
    #[command(flatten, next_help_heading = "Runtimes")]
    pub runtimes: Runtimes,
    /// How instances are isolated.
    #[command(flatten, next_help_heading = "Sandbox")]
    pub sandbox: Sandbox,
    /// How much runs at once, and for how long.
    #[command(flatten, next_help_heading = "Limits")]
    pub limits: Limits,
    /// What a client connection may cost.
    #[command(flatten, next_help_heading = "HTTP")]
    pub http: Http,
    /// Async invocation delivery.
    #[command(flatten, next_help_heading = "Async delivery")]
    pub async_delivery: AsyncDelivery,
    /// The server's own log and the invocation logs it keeps.
    #[command(flatten, next_help_heading = "Logs")]
    pub logs: Logs,
    /// The usage bill's prices.
    #[command(flatten, next_help_heading = "Prices")]
    pub prices: Prices,
    /// API authentication.
    #[command(flatten, next_help_heading = "Authentication")]
    pub auth: Auth,
}

/// `[storage]`: the metadata database and the blob store.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// The metadata database: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// (default: sqlite://DATA/nimbus.db).
    #[arg(long, env = "NIMBUS_METADATA", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataBackend>,
    /// The code blob store: file://DIR or s3://BUCKET/PREFIX (default: file://DATA/blobs).
    #[arg(long, env = "NIMBUS_BLOBS", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<BlobUrl>,
    /// The S3 service's URL for s3:// blobs (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
    /// else AWS's own).
    #[arg(long, env = "NIMBUS_S3_ENDPOINT", value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region for s3:// blobs (default: AWS_REGION, AWS_DEFAULT_REGION, else
    /// us-east-1).
    #[arg(long, env = "NIMBUS_S3_REGION", value_name = "REGION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// Address the bucket in the URL's path, as S3-compatible servers expect (default: on
    /// with a custom endpoint, off for AWS).
    #[arg(long, env = "NIMBUS_S3_PATH_STYLE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_path_style: Option<bool>,
    /// Seconds a code package no function version references any more is kept before its
    /// zip and unpacked files are removed (never while an instance or a deploy uses it).
    #[arg(
        long,
        env = "NIMBUS_CODE_GC_GRACE",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub code_gc_grace: u64,
}

/// `[runtimes]`: the interpreters.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runtimes {
    /// Python interpreter for python3.* functions (default: the fastest real one found).
    #[arg(long, env = "NIMBUS_PYTHON", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PathBuf>,
    /// Node.js for nodejs* functions (default: `node` found on the system).
    #[arg(long, env = "NIMBUS_NODE", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<PathBuf>,
}

/// `[sandbox]`: isolation.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sandbox {
    /// Run instances as plain child processes: no namespaces, cgroups or limits (for
    /// measuring what the sandbox costs; never for untrusted code).
    #[arg(long, env = "NIMBUS_NO_SANDBOX", value_parser = BoolishValueParser::new())]
    pub no_sandbox: bool,
    /// A host directory every instance also sees, read-only at the same path (repeatable;
    /// `:`-separated in the variable; e.g. an interpreter installed outside /usr). Instances
    /// otherwise see only the system directories, their code at /var/task and the runtime
    /// at /var/runtime.
    #[arg(long, env = "NIMBUS_EXPOSE", value_name = "DIR", value_delimiter = ':')]
    pub expose: Vec<PathBuf>,
    /// Sandboxed processes kept started ahead of demand (in their cgroups, waiting for a
    /// function), so cold starts skip that set-up; 0 starts each on demand.
    #[arg(
        long,
        env = "NIMBUS_WARM_SHELLS",
        value_name = "N",
        default_value_t = 2
    )]
    pub warm_shells: usize,
    /// The network instances get.
    #[arg(long, env = "NIMBUS_INSTANCE_NETWORK", value_name = "NETWORK", value_enum, default_value_t = InstanceNetwork::Host)]
    pub instance_network: InstanceNetwork,
}

/// `[limits]`: concurrency, memory and time.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds an idle instance is kept warm (a function may override it).
    #[arg(
        long,
        env = "NIMBUS_KEEP_ALIVE",
        value_name = "SECS",
        default_value_t = 600
    )]
    pub keep_alive: u64,
    /// Most invocations running at once on this node.
    #[arg(
        long,
        env = "NIMBUS_MAX_CONCURRENCY",
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_concurrency: u32,
    /// Most memory live instances may be configured with together, MB (default: 80% of RAM).
    #[arg(long, env = "NIMBUS_MEMORY_BUDGET", value_name = "MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// Milliseconds an invocation over a limit waits for capacity before a 429.
    #[arg(
        long,
        env = "NIMBUS_QUEUE_TIMEOUT",
        value_name = "MS",
        default_value_t = 300
    )]
    pub queue_timeout: u64,
    /// Seconds a new instance may take to initialise before the init is retried.
    #[arg(
        long,
        env = "NIMBUS_INIT_TIMEOUT",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub init_timeout: u64,
}

/// `[http]`: what a client connection may cost, and how long shutting down may take.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// Seconds a client may take to send a request's head (an idle keep-alive connection
    /// is closed after as long); a half-sent head is answered 408 and closed.
    #[arg(
        long,
        env = "NIMBUS_HEADER_READ_TIMEOUT",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub header_read_timeout: u64,
    /// Seconds a request body may pause before the request is cut off with a 408 (after as
    /// long a grace, a body arriving slower than 4 KiB/s on average is cut off too).
    #[arg(
        long,
        env = "NIMBUS_BODY_IDLE_TIMEOUT",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub body_idle_timeout: u64,
    /// Most client connections open at once; one more is answered 503 (which clients
    /// retry) and closed, never queued.
    #[arg(
        long,
        env = "NIMBUS_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_connections: usize,
    /// Most connections open at once from one client address (behind a proxy every
    /// client has the proxy's: raise it there); one more is answered 503 and closed.
    #[arg(
        long,
        env = "NIMBUS_MAX_CONNECTIONS_PER_CLIENT",
        value_name = "N",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,
    /// MB of request body held at once, until their signature is checked, for requests that
    /// can only be verified at the end of their body (botocore's; their senders may not
    /// hold the secret). One request may hold at most the whole budget (a larger body still
    /// passes alone); one that finds no room within --body-idle-timeout is answered 429.
    /// Requests without a body owe it nothing.
    #[arg(
        long,
        env = "NIMBUS_UNVERIFIED_BODY_BUDGET",
        value_name = "MB",
        default_value_t = 512
    )]
    pub unverified_body_budget: u32,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "NIMBUS_SHUTDOWN_GRACE",
        value_name = "SECS",
        default_value_t = 10
    )]
    pub shutdown_grace: u64,
}

/// `[async_delivery]`: async invocations.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncDelivery {
    /// Milliseconds before an async event's first retry after a function error (the n-th
    /// retry waits n times this; Lambda waits about a minute, then two).
    #[arg(
        long = "async-retry-delay",
        env = "NIMBUS_ASYNC_RETRY_DELAY",
        value_name = "MS",
        default_value_t = 60_000
    )]
    pub retry_delay: u64,
    /// Async events delivered at once.
    #[arg(
        long = "async-workers",
        env = "NIMBUS_ASYNC_WORKERS",
        value_name = "N",
        default_value_t = 16
    )]
    pub workers: usize,
    /// Seconds a node's lease on an async event it delivers lasts (renewed every third of
    /// it while the node lives): how soon another node takes over a dead one's events.
    #[arg(
        long = "async-lease",
        env = "NIMBUS_ASYNC_LEASE",
        value_name = "SECONDS",
        default_value_t = 30
    )]
    pub lease: u64,
}

/// `[logs]`: the server's log and the invocation logs.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logs {
    /// The server's own log format (stderr; its filter is NIMBUS_LOG).
    #[arg(long = "log-format", env = "NIMBUS_LOG_FORMAT", value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
    /// Hours invocation logs are kept.
    #[arg(
        long = "log-retention-hours",
        env = "NIMBUS_LOG_RETENTION_HOURS",
        value_name = "HOURS",
        default_value_t = 168
    )]
    pub retention_hours: u64,
    /// Most invocation log kept, MB; the oldest goes first.
    #[arg(
        long = "log-max-mb",
        env = "NIMBUS_LOG_MAX_MB",
        value_name = "MB",
        default_value_t = 256
    )]
    pub max_mb: u64,
}

/// `[prices]`: what the usage bill charges.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// Price of a GB-second for the usage bill, USD (Lambda x86's by default).
    #[arg(
        long = "price-gb-second",
        env = "NIMBUS_PRICE_GB_SECOND",
        value_name = "USD",
        default_value_t = 0.000_016_666_7
    )]
    pub gb_second: f64,
    /// Price of a million requests for the usage bill, USD.
    #[arg(
        long = "price-million-requests",
        env = "NIMBUS_PRICE_MILLION_REQUESTS",
        value_name = "USD",
        default_value_t = 0.20
    )]
    pub million_requests: f64,
}

/// `[auth]`: API authentication.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// A JSON file `{"access_key_id": …, "secret_access_key": …}`: every API request must
    /// then be SigV4-signed with them (without it: NIMBUS_ACCESS_KEY_ID and
    /// NIMBUS_SECRET_ACCESS_KEY, else DATA/credentials.json, generated on first start).
    /// Needed to listen on a non-loopback address.
    #[arg(long, env = "NIMBUS_CREDENTIALS_FILE", value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// Turn API authentication off (any credentials accepted; loopback only), for local
    /// experiments.
    #[arg(long, env = "NIMBUS_NO_AUTH", value_parser = BoolishValueParser::new())]
    pub no_auth: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9300))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: PathBuf::from(".nimbus"),
            region: "us-east-1".to_owned(),
            node_address: None,
            storage: Storage::default(),
            runtimes: Runtimes::default(),
            sandbox: Sandbox::default(),
            limits: Limits::default(),
            http: Http::default(),
            async_delivery: AsyncDelivery::default(),
            logs: Logs::default(),
            prices: Prices::default(),
            auth: Auth::default(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            metadata: None,
            blobs: None,
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: None,
            code_gc_grace: 600,
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            no_sandbox: false,
            expose: Vec::new(),
            warm_shells: 2,
            instance_network: InstanceNetwork::Host,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            keep_alive: 600,
            max_concurrency: 1000,
            memory_budget: None,
            queue_timeout: 300,
            init_timeout: 10,
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            header_read_timeout: 10,
            body_idle_timeout: 30,
            max_connections: 1024,
            max_connections_per_client: 256,
            unverified_body_budget: 512,
            shutdown_grace: 10,
        }
    }
}

impl Default for AsyncDelivery {
    fn default() -> Self {
        AsyncDelivery {
            retry_delay: 60_000,
            workers: 16,
            lease: 30,
        }
    }
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            format: LogFormat::Text,
            retention_hours: 168,
            max_mb: 256,
        }
    }
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            gb_second: 0.000_016_666_7,
            million_requests: 0.20,
        }
    }
}

impl ServerConfig {
    /// The metadata database: `--metadata`, else `sqlite://DATA/nimbus.db`.
    pub fn metadata_backend(&self) -> MetadataBackend {
        self.storage
            .metadata
            .clone()
            .unwrap_or_else(|| MetadataBackend::Sqlite {
                path: self.data_dir.join("nimbus.db"),
            })
    }

    /// The blob store: `--blobs`, else `file://DATA/blobs`; an S3 bucket's endpoint,
    /// region, path style and keys from the `storage.s3_*` keys, then the AWS variables
    /// `env` gives (the process environment in the server).
    pub fn blob_backend(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<BlobBackend, ConfigError> {
        let url = self.storage.blobs.clone().unwrap_or_else(|| BlobUrl::File {
            dir: self.data_dir.join("blobs"),
        });
        let (bucket, prefix) = match url {
            BlobUrl::File { dir } => return Ok(BlobBackend::Local { dir }),
            BlobUrl::S3 { bucket, prefix } => (bucket, prefix),
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        let (endpoint, key) = match &self.storage.s3_endpoint {
            Some(e) => (Some(e.clone()), "storage.s3_endpoint"),
            None => match env("AWS_ENDPOINT_URL_S3") {
                Some(e) => (Some(e), "AWS_ENDPOINT_URL_S3"),
                None => (env("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL"),
            },
        };
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint).map_err(|source| ConfigError::Invalid {
                key: key.to_owned(),
                message: source.to_string(),
            })?;
        }
        let region = self
            .storage
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let credentials = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Credentials {
                access_key_id,
                secret_access_key,
                session_token: env("AWS_SESSION_TOKEN"),
            }),
            (None, None) => None,
            _ => return Err(ConfigError::Invalid {
                key: "AWS_ACCESS_KEY_ID".to_owned(),
                message:
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both or neither"
                        .to_owned(),
            }),
        };
        Ok(BlobBackend::S3 {
            bucket,
            prefix,
            path_style: self.storage.s3_path_style.unwrap_or(endpoint.is_some()),
            endpoint,
            region,
            credentials,
        })
    }

    /// How other nodes reach this one, once the server is bound to `bound` (`hostname`
    /// names this host, for a server listening on every interface).
    pub fn node_address(&self, bound: SocketAddr, hostname: Option<&str>) -> NodeAddress {
        self.node_address
            .clone()
            .unwrap_or_else(|| NodeAddress::derive(bound, hostname))
    }

    /// Checks what no single value's type can: settings that would leave the server
    /// refusing every request, and `--expose` directories that are not absolute and
    /// existing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("http.max_connections", self.http.max_connections as u64),
            (
                "http.max_connections_per_client",
                self.http.max_connections_per_client as u64,
            ),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_idle_timeout", self.http.body_idle_timeout),
            (
                "http.unverified_body_budget",
                u64::from(self.http.unverified_body_budget),
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key: key.to_owned(),
                    message: format!(
                        "must be at least 1 (the server would refuse every request; flag {})",
                        flag_of(key)
                    ),
                });
            }
        }
        for dir in &self.sandbox.expose {
            if !dir.is_absolute() || !is_dir(dir) {
                return Err(ConfigError::Invalid {
                    key: "sandbox.expose".to_owned(),
                    message: format!(
                        "--expose {}: give an absolute path to an existing directory",
                        dir.display()
                    ),
                });
            }
        }
        if let Some(endpoint) = &self.storage.s3_endpoint {
            check_endpoint(endpoint).map_err(|e| ConfigError::Invalid {
                key: "storage.s3_endpoint".to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// The flag of a `group.key` whose flag is the key's name (`http.max_connections` →
/// `--max-connections`).
fn flag_of(key: &str) -> String {
    let name = key.rsplit('.').next().unwrap_or(key);
    format!("--{}", name.replace('_', "-"))
}

fn is_dir(path: &Path) -> bool {
    path.is_dir()
}

#[cfg(test)]
mod tests;
