//! Where the server keeps its state, named by URL: the metadata database
//! (`sqlite://PATH`, `postgres://…`), the code blobs (`file://DIR`, `s3://BUCKET/PREFIX`),
//! and the address other nodes reach this one at.
//!
//! Each URL parses into an enum and prints back as the same URL, so a setting reads the same
//! in a flag, an environment variable and the config file. Parsing checks the URL's shape;
//! whether the backend can be opened is the server's business.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A URL that names no backend Nimbus knows, or names one badly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (got `{url}`)")]
pub struct UrlError {
    /// The URL as given (a password in it is hidden).
    pub url: String,
    /// What is wrong with it, and what would be right.
    pub reason: String,
}

impl UrlError {
    fn new(url: &str, reason: impl Into<String>) -> UrlError {
        UrlError {
            url: redact(url),
            reason: reason.into(),
        }
    }
}

/// The database that holds functions, versions, aliases, the event queue and schedules.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MetadataBackend {
    /// A SQLite file on this node (`sqlite://PATH`; `sqlite:///abs/path` for an absolute
    /// path). The default: `sqlite://DATA/nimbus.db`.
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database several nodes share (`postgres://USER:PASSWORD@HOST:PORT/DB`).
    Postgres {
        /// The connection URL, as given.
        url: String,
    },
}

impl MetadataBackend {
    /// The URL with any password replaced by `***`, for logs and messages.
    pub fn redacted(&self) -> String {
        redact(&self.to_string())
    }
}

impl fmt::Debug for MetadataBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for MetadataBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataBackend::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
            MetadataBackend::Postgres { url } => f.write_str(url),
        }
    }
}

impl FromStr for MetadataBackend {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        const EXPECTED: &str = "a metadata URL is sqlite://PATH or postgres://USER@HOST/DATABASE";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UrlError::new(s, EXPECTED));
        };
        match scheme {
            "sqlite" => Ok(MetadataBackend::Sqlite {
                path: local_path(s, rest, "sqlite://")?,
            }),
            "postgres" | "postgresql" => {
                let url = url::Url::parse(s)
                    .map_err(|e| UrlError::new(s, format!("not a PostgreSQL URL: {e}")))?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(UrlError::new(s, "a PostgreSQL URL needs a host"));
                }
                if url.fragment().is_some() {
                    return Err(UrlError::new(s, "a PostgreSQL URL has no #fragment"));
                }
                Ok(MetadataBackend::Postgres { url: s.to_owned() })
            }
            other => Err(UrlError::new(
                s,
                format!("unknown metadata scheme `{other}`: {EXPECTED}"),
            )),
        }
    }
}

impl TryFrom<String> for MetadataBackend {
    type Error = UrlError;

    fn try_from(s: String) -> Result<Self, UrlError> {
        s.parse()
    }
}

impl From<MetadataBackend> for String {
    fn from(backend: MetadataBackend) -> String {
        backend.to_string()
    }
}

/// Where code blobs are, as written in `--blobs`: the bucket's connection settings come
/// from other keys and the AWS environment (see [`BlobBackend`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BlobUrl {
    /// A directory on this node (`file://DIR`; `file:///abs/dir` for an absolute path).
    File {
        /// The directory.
        dir: PathBuf,
    },
    /// A bucket and a key prefix in it (`s3://BUCKET/PREFIX`, the prefix optional).
    S3 {
        /// The bucket's name.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (empty: the bucket's root).
        prefix: String,
    },
}

impl fmt::Display for BlobUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobUrl::File { dir } => write!(f, "file://{}", dir.display()),
            BlobUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            BlobUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl FromStr for BlobUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        const EXPECTED: &str = "a blobs URL is file://DIR or s3://BUCKET/PREFIX";
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UrlError::new(s, EXPECTED));
        };
        match scheme {
            "file" => Ok(BlobUrl::File {
                dir: local_path(s, rest, "file://")?,
            }),
            "s3" => {
                if rest.contains(['?', '#']) {
                    return Err(UrlError::new(
                        s,
                        "an s3:// URL is only BUCKET/PREFIX: set the endpoint, region and path style with --s3-endpoint, --s3-region and --s3-path-style",
                    ));
                }
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                check_bucket(s, bucket)?;
                let prefix = prefix.trim_matches('/');
                if prefix.split('/').any(|part| part == "." || part == "..") {
                    return Err(UrlError::new(s, "an S3 prefix has no `.` or `..` parts"));
                }
                Ok(BlobUrl::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                })
            }
            other => Err(UrlError::new(
                s,
                format!("unknown blobs scheme `{other}`: {EXPECTED}"),
            )),
        }
    }
}

impl TryFrom<String> for BlobUrl {
    type Error = UrlError;

    fn try_from(s: String) -> Result<Self, UrlError> {
        s.parse()
    }
}

impl From<BlobUrl> for String {
    fn from(url: BlobUrl) -> String {
        url.to_string()
    }
}

/// The store that holds code blobs, with everything needed to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobBackend {
    /// Content-addressed files in a directory on this node. The default: `file://DATA/blobs`.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// Objects in an S3 (or S3-compatible) bucket several nodes share.
    S3 {
        /// The bucket's name.
        bucket: String,
        /// The key prefix every blob is stored under (empty: the bucket's root).
        prefix: String,
        /// The service's URL (`storage.s3_endpoint`, else `AWS_ENDPOINT_URL_S3` or
        /// `AWS_ENDPOINT_URL`); `None` is AWS's own.
        endpoint: Option<String>,
        /// The bucket's region (`storage.s3_region`, else `AWS_REGION`, else
        /// `AWS_DEFAULT_REGION`, else `us-east-1`).
        region: String,
        /// Whether the bucket is addressed in the path (`ENDPOINT/BUCKET/KEY`) rather than
        /// the host name (`storage.s3_path_style`; by default only with a custom endpoint,
        /// as S3-compatible servers expect).
        path_style: bool,
        /// Static keys from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`; `None` leaves
        /// them to the client library's own lookup.
        credentials: Option<S3Credentials>,
    },
}

/// Static AWS keys. The secret never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary keys.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Display for BlobBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobBackend::Local { dir } => write!(f, "file://{}", dir.display()),
            BlobBackend::S3 { bucket, prefix, .. } => fmt::Display::fmt(
                &BlobUrl::S3 {
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                },
                f,
            ),
        }
    }
}

/// An S3 service URL given as `storage.s3_endpoint` or `AWS_ENDPOINT_URL`: `http(s)://HOST[:PORT]`.
pub fn check_endpoint(endpoint: &str) -> Result<(), UrlError> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| UrlError::new(endpoint, format!("not an S3 endpoint URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::new(
            endpoint,
            "an S3 endpoint is http://HOST[:PORT] or https://HOST[:PORT]",
        ));
    }
    Ok(())
}

/// How other nodes reach this one: `http(s)://HOST:PORT`, normalised (a bare `HOST:PORT`
/// is taken as `http://HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeAddress(String);

impl NodeAddress {
    /// The address other nodes can use when none is configured: the address the server
    /// is bound to, or, when that is every interface (`0.0.0.0`, `::`), this host's name.
    pub fn derive(bound: SocketAddr, hostname: Option<&str>) -> NodeAddress {
        let port = bound.port();
        let host = match (bound.ip().is_unspecified(), hostname) {
            (true, Some(name)) if !name.trim().is_empty() => name.trim().to_owned(),
            (true, _) if bound.is_ipv6() => "[::1]".to_owned(),
            (true, _) => "127.0.0.1".to_owned(),
            (false, _) if bound.is_ipv6() => format!("[{}]", bound.ip()),
            (false, _) => bound.ip().to_string(),
        };
        NodeAddress(format!("http://{host}:{port}"))
    }

    /// The address as a URL string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeAddress {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        const EXPECTED: &str = "a node address is http://HOST:PORT (or https://, or HOST:PORT)";
        let full = if s.contains("://") {
            s.to_owned()
        } else {
            format!("http://{s}")
        };
        let url =
            url::Url::parse(&full).map_err(|e| UrlError::new(s, format!("{EXPECTED}: {e}")))?;
        let host = url.host_str().filter(|h| !h.is_empty());
        let (Some(host), Some(port)) = (host, url.port_or_known_default()) else {
            return Err(UrlError::new(s, EXPECTED));
        };
        if !matches!(url.scheme(), "http" | "https")
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(UrlError::new(s, EXPECTED));
        }
        Ok(NodeAddress(format!("{}://{host}:{port}", url.scheme())))
    }
}

impl TryFrom<String> for NodeAddress {
    type Error = UrlError;

    fn try_from(s: String) -> Result<Self, UrlError> {
        s.parse()
    }
}

impl From<NodeAddress> for String {
    fn from(address: NodeAddress) -> String {
        address.0
    }
}

/// The path of a `sqlite://` or `file://` URL: everything after the scheme.
fn local_path(url: &str, rest: &str, scheme: &str) -> Result<PathBuf, UrlError> {
    if rest.is_empty() {
        return Err(UrlError::new(
            url,
            format!("{scheme} needs a path after it"),
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(UrlError::new(
            url,
            format!("{scheme}PATH takes no ?query or #fragment"),
        ));
    }
    Ok(PathBuf::from(rest))
}

/// S3's rules for a bucket name (3–63 lowercase letters, digits, dots and hyphens,
/// starting and ending with a letter or digit).
fn check_bucket(url: &str, bucket: &str) -> Result<(), UrlError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if bucket.is_empty() {
        return Err(UrlError::new(
            url,
            "s3:// needs a bucket: s3://BUCKET/PREFIX",
        ));
    }
    if !(3..=63).contains(&bucket.len())
        || !bucket.chars().all(allowed)
        || !edge(bucket.chars().next())
        || !edge(bucket.chars().last())
        || bucket.contains("..")
    {
        return Err(UrlError::new(
            url,
            format!("`{bucket}` is not a valid bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"),
        ));
    }
    Ok(())
}

/// `url` with the password of its user-info part, if any, replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_a_relative_or_absolute_file() {
        let parse = |s: &str| s.parse::<MetadataBackend>();
        assert_eq!(
            parse("sqlite://data/nimbus.db"),
            Ok(MetadataBackend::Sqlite {
                path: "data/nimbus.db".into()
            })
        );
        assert_eq!(
            parse("sqlite:///var/lib/nimbus/nimbus.db"),
            Ok(MetadataBackend::Sqlite {
                path: "/var/lib/nimbus/nimbus.db".into()
            })
        );
        let url = "sqlite:///var/lib/nimbus/nimbus.db";
        assert_eq!(parse(url).expect("parses").to_string(), url);
        for bad in ["sqlite://", "sqlite://x.db?mode=ro"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_their_password_never_shown() {
        let url = "postgres://nimbus:s3cret@db.internal:5432/nimbus?sslmode=require";
        let parsed: MetadataBackend = url.parse().expect("parses");
        assert_eq!(
            parsed,
            MetadataBackend::Postgres {
                url: url.to_owned()
            }
        );
        assert_eq!(parsed.to_string(), url);
        let shown = format!("{parsed:?} {}", parsed.redacted());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("nimbus:***@db.internal"), "{shown}");
        assert!("postgresql://db/nimbus".parse::<MetadataBackend>().is_ok());
        let err = "postgres:///nimbus"
            .parse::<MetadataBackend>()
            .expect_err("no host");
        assert!(err.to_string().contains("needs a host"), "{err}");
        let err = "postgres://u:pw@:5432/x"
            .parse::<MetadataBackend>()
            .expect_err("bad");
        assert!(!err.to_string().contains("pw"), "{err}");
    }

    #[test]
    fn an_unknown_or_missing_scheme_says_what_is_accepted() {
        for bad in ["mysql://db/x", "/var/lib/nimbus.db", ""] {
            let err = bad.parse::<MetadataBackend>().expect_err(bad).to_string();
            assert!(err.contains("sqlite://PATH or postgres://"), "{err}");
        }
        for bad in ["gs://bucket", "/srv/blobs"] {
            let err = bad.parse::<BlobUrl>().expect_err(bad).to_string();
            assert!(err.contains("file://DIR or s3://BUCKET/PREFIX"), "{err}");
        }
    }

    #[test]
    fn s3_urls_hold_a_valid_bucket_and_a_normalised_prefix() {
        let parse = |s: &str| s.parse::<BlobUrl>();
        assert_eq!(
            parse("s3://nimbus-code/prod/blobs/"),
            Ok(BlobUrl::S3 {
                bucket: "nimbus-code".into(),
                prefix: "prod/blobs".into()
            })
        );
        assert_eq!(
            parse("s3://nimbus-code"),
            Ok(BlobUrl::S3 {
                bucket: "nimbus-code".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            parse("s3://nimbus-code/a").expect("parses").to_string(),
            "s3://nimbus-code/a"
        );
        for bad in [
            "s3://",
            "s3:///prefix",
            "s3://ab",
            "s3://Upper",
            "s3://-dash",
            "s3://a..b",
            "s3://under_score",
            "s3://bucket/../up",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("s3://bucket/x?region=eu-west-1").expect_err("query");
        assert!(err.to_string().contains("--s3-region"), "{err}");
        assert_eq!(
            parse("file:///srv/blobs"),
            Ok(BlobUrl::File {
                dir: "/srv/blobs".into()
            })
        );
    }

    #[test]
    fn node_addresses_are_normalised_urls() {
        let parse = |s: &str| s.parse::<NodeAddress>().map(|a| a.to_string());
        assert_eq!(parse("10.0.0.5:9300"), Ok("http://10.0.0.5:9300".into()));
        assert_eq!(
            parse("https://node-a.internal/"),
            Ok("https://node-a.internal:443".into())
        );
        assert_eq!(
            parse("http://[fd00::1]:9300"),
            Ok("http://[fd00::1]:9300".into())
        );
        for bad in [
            "ftp://x:1",
            "http://x:1/path",
            "http://u@x:1",
            "http://:9300",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_derived_node_address_is_the_bound_address_or_the_host_name() {
        let derive =
            |addr: &str, host| NodeAddress::derive(addr.parse().expect("addr"), host).to_string();
        assert_eq!(derive("127.0.0.1:9300", Some("h")), "http://127.0.0.1:9300");
        assert_eq!(derive("0.0.0.0:9300", Some("node-a")), "http://node-a:9300");
        assert_eq!(derive("0.0.0.0:9300", None), "http://127.0.0.1:9300");
        assert_eq!(derive("[::]:9300", None), "http://[::1]:9300");
        assert_eq!(derive("[fd00::2]:80", None), "http://[fd00::2]:80");
    }

    #[test]
    fn endpoints_are_http_urls_with_a_host() {
        assert!(check_endpoint("http://127.0.0.1:9000").is_ok());
        assert!(check_endpoint("https://s3.eu-west-1.amazonaws.com").is_ok());
        for bad in ["127.0.0.1:9000", "ftp://x", "http://"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }
}
