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
}

impl Client {
    /// A client for the server at `endpoint` (e.g. `http://127.0.0.1:9300`).
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(1000))
            .build()?;
        Ok(Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    /// Starts a request to `path` (which begins with `/`).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.endpoint))
    }

    /// Sends a request; a service error becomes [`ClientError::Service`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                endpoint: self.endpoint.clone(),
                source,
            })?;
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
