//! A small Lambda API client over reqwest.

use reqwest::{Method, Response};
use serde_json::Value;

/// A failed API call, as the server explained it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach the Nimbus server at {endpoint} ({source}); start one with `nimbus server` or set --endpoint / NIMBUS_ENDPOINT")]
    Unreachable {
        /// Where it was looked for.
        endpoint: String,
        /// The failure.
        source: reqwest::Error,
    },
    /// The server answered with a Lambda service error.
    #[error("{code}: {message}")]
    Service {
        /// HTTP status.
        status: u16,
        /// The error code, e.g. `ResourceNotFoundException`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A streamed request body without its hash in `x-amz-content-sha256`: it cannot be
    /// signed (a bug in the command that built it).
    #[error("cannot sign a streamed request body without its SHA-256 in x-amz-content-sha256")]
    UnsignableBody,
    /// The answer could not be read.
    #[error("unreadable answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether this is the server saying the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Service { status: 404, .. })
    }
}

/// A client bound to one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    /// Access key id and secret to sign requests with, from NIMBUS_ACCESS_KEY_ID and
    /// NIMBUS_SECRET_ACCESS_KEY.
    credentials: Option<(String, String)>,
}

impl Client {
    /// A client for the server at `endpoint` (e.g. `http://127.0.0.1:9300`).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(1000))
            .build()?;
        let credentials = match (
            std::env::var("NIMBUS_ACCESS_KEY_ID"),
            std::env::var("NIMBUS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
            _ => data_dir_credentials(),
        };
        Ok(Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credentials,
        })
    }

    /// Starts a request to `path` (which begins with `/`).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.endpoint))
    }

    /// Sends a request; a service error becomes [`ClientError::Service`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut request = request.build().map_err(unreachable)?;
        if let Some((key, secret)) = &self.credentials {
            sign(&mut request, key, secret)?;
        }
        let response = self.http.execute(request).await.map_err(unreachable)?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let code = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split([':', '#']).next().unwrap_or(v).to_owned())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body
            .get("message")
            .or_else(|| body.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let message = match (status, &self.credentials) {
            (403, None) => format!(
                "{message} (the server wants signed requests: set NIMBUS_ACCESS_KEY_ID and NIMBUS_SECRET_ACCESS_KEY, or NIMBUS_DATA_DIR to the server's data dir, which holds its credentials.json)"
            ),
            _ => message,
        };
        Err(ClientError::Service {
            status,
            code,
            message,
        })
    }

    /// Sends a request and reads a JSON answer.
    pub async fn json(&self, request: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// The credentials a local server generated in its data dir (`NIMBUS_DATA_DIR`, or the
/// `.nimbus` that `nimbus server` defaults to, in this directory or the nearest parent that
/// has one), if there are any.
fn data_dir_credentials() -> Option<(String, String)> {
    let file = match std::env::var_os("NIMBUS_DATA_DIR") {
        Some(dir) => std::path::PathBuf::from(dir).join("credentials.json"),
        None => std::env::current_dir()
            .ok()?
            .ancestors()
            .map(|dir| dir.join(".nimbus").join("credentials.json"))
            .find(|file| file.is_file())?,
    };
    let text = std::fs::read_to_string(file).ok()?;
    let json: Value = serde_json::from_str(&text).ok()?;
    let field = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((field("access_key_id")?, field("secret_access_key")?))
}

/// Signs `request` with SigV4 for service `lambda`. The body's hash is signed: a streamed
/// body must come with its hash already in `x-amz-content-sha256` (the server refuses
/// unsigned payloads).
fn sign(request: &mut reqwest::Request, key: &str, secret: &str) -> Result<(), ClientError> {
    use nimbus_core::sigv4::{sha256_hex, Signer};
    let url = request.url().clone();
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let claimed = request
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let payload_hash = match (claimed, request.body()) {
        (Some(hash), _) => hash,
        (None, None) => sha256_hex(b""),
        (None, Some(body)) => match body.as_bytes() {
            Some(bytes) => sha256_hex(bytes),
            None => return Err(ClientError::UnsignableBody),
        },
    };
    let region = std::env::var("NIMBUS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let signed = Signer {
        access_key_id: key,
        secret_access_key: secret,
        region: &region,
        service: "lambda",
    }
    .sign(
        request.method().as_str(),
        url.path(),
        url.query().unwrap_or(""),
        &host,
        &payload_hash,
        chrono::Utc::now(),
    );
    let headers = request.headers_mut();
    for (name, value) in signed {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(())
}

impl Client {
    /// Every item of a paged Lambda list at `path` (items under `key`), following
    /// `NextMarker`.
    pub async fn all_pages(&self, path: &str, key: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut request = self.request(reqwest::Method::GET, path);
            if let Some(m) = &marker {
                request = request.query(&[("Marker", m)]);
            }
            let page = self.json(request).await?;
            if let Some(list) = page.get(key).and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            marker = page
                .get("NextMarker")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if marker.is_none() {
                return Ok(items);
            }
        }
    }
}

/// Percent-encodes a function name for a path segment.
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
