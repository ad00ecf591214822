//! The HTTP trigger: `ANY /fn/{name}[:{alias}]/{path…}` turns a request into an API Gateway
//! HTTP API payload 2.0 event, invokes the function, and turns its result into the response.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_control::{Invoke, Platform};
use nimbus_core::{limits, ErrorKind, UrlConfig};
use serde_json::{json, Map, Value};

use crate::{ApiError, RequestId};

/// The trigger's routes.
pub(crate) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route("/fn/{target}", any(trigger))
        .route("/fn/{target}/", any(trigger))
        .route("/fn/{target}/{*path}", any(trigger))
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "Message": message }).to_string(),
    )
        .into_response()
}

async fn trigger(
    State(platform): State<Arc<Platform>>,
    Path(params): Path<HashMap<String, String>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let target = params.get("target").cloned().unwrap_or_default();
    let Some(url) = platform.url_for_trigger(&target).await? else {
        return Ok(plain(StatusCode::NOT_FOUND, "Not Found"));
    };
    let origin = headers.get("origin").and_then(|o| o.to_str().ok());
    if method == Method::OPTIONS && headers.contains_key("access-control-request-method") {
        if let (Some(cors), Some(origin)) = (&url.cors, origin) {
            return Ok(preflight(cors, origin));
        }
    }
    if url.auth_type == "AWS_IAM" && !signed(&headers) {
        return Ok(plain(StatusCode::FORBIDDEN, "Forbidden"));
    }
    let body = match crate::intake::read(body, limits::SYNC_PAYLOAD_MAX_BYTES, None).await {
        Ok(body) => body,
        Err(e) if e.kind == ErrorKind::RequestTooLarge => {
            return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, &e.message));
        }
        Err(e) => return Err(e.into()),
    };
    let path = format!("/{}", params.get("path").map(String::as_str).unwrap_or(""));
    let event = event(
        &url,
        &method,
        &path,
        uri.query(),
        &headers,
        &body,
        peer,
        &request_id,
    );
    let result = platform
        .invoke(Invoke {
            function: url.function.clone(),
            qualifier: url.qualifier.clone(),
            payload: Bytes::from(event.to_string()),
            client_context: None,
            request_id,
        })
        .await?;
    let mut response = if result.function_error {
        plain(StatusCode::BAD_GATEWAY, "Internal Server Error")
    } else {
        to_response(&result.payload)
    };
    if let (Some(cors), Some(origin)) = (&url.cors, origin) {
        add_cors(response.headers_mut(), cors, origin);
    }
    Ok(response)
}

/// Whether the request carries a SigV4 authorization (its signature is checked once the
/// server is configured with credentials; until then any credentials are accepted).
fn signed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "))
}

/// Whether a body of this content type travels as text rather than base64.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type.map(str::to_ascii_lowercase) else {
        return true;
    };
    ct.starts_with("text/")
        || [
            "json",
            "xml",
            "javascript",
            "x-www-form-urlencoded",
            "graphql",
            "yaml",
        ]
        .iter()
        .any(|t| ct.contains(t))
}

/// The payload 2.0 event for one request.
#[allow(clippy::too_many_arguments)]
fn event(
    url: &UrlConfig,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    peer: SocketAddr,
    request_id: &str,
) -> Value {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        parameters
            .entry(key.into_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let now = chrono::Utc::now();
    let domain = joined.get("host").cloned().unwrap_or_default();
    let api_id = match &url.qualifier {
        Some(q) => format!("{}-{q}", url.function),
        None => url.function.clone(),
    };
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.unwrap_or(""),
        "headers": joined,
        "requestContext": {
            "accountId": nimbus_core::arn::ACCOUNT_ID,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": api_id,
            "http": {
                "method": method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = json!(parameters);
    }
    if !body.is_empty() {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        match std::str::from_utf8(body) {
            Ok(text) if is_text(content_type) => event["body"] = json!(text),
            _ => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// The HTTP response for a function's result, by the payload 2.0 response rules.
fn to_response(payload: &[u8]) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let Some(Value::Object(shaped)) = parsed.filter(|v| v.get("statusCode").is_some()) else {
        // Any other JSON (a bare string keeps its quotes) is the body, as JSON.
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            payload.to_vec(),
        )
            .into_response();
    };
    shaped_response(&shaped)
}

fn shaped_response(shaped: &Map<String, Value>) -> Response {
    let status = shaped
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match shaped.get("body") {
        Some(Value::String(text)) => {
            if shaped.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap_or_default()
            } else {
                text.clone().into_bytes()
            }
        }
        Some(other) => other.to_string().into_bytes(),
        None => Vec::new(),
    };
    let mut response = (status, body).into_response();
    let out = response.headers_mut();
    out.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(Value::Object(headers)) = shaped.get("headers") {
        for (name, value) in headers {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(&text),
            ) {
                out.insert(name, value);
            }
        }
    }
    if let Some(Value::Array(cookies)) = shaped.get("cookies") {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                out.append("set-cookie", value);
            }
        }
    }
    response
}

fn strings(cors: &Value, key: &str) -> Vec<String> {
    cors.get(key)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The `Access-Control-Allow-Origin` value for `origin`, if the configuration allows it.
fn allowed_origin(cors: &Value, origin: &str) -> Option<String> {
    let origins = strings(cors, "AllowOrigins");
    if origins.iter().any(|o| o == origin) {
        Some(origin.to_owned())
    } else if origins.iter().any(|o| o == "*") {
        Some("*".to_owned())
    } else {
        None
    }
}

fn add_cors(out: &mut HeaderMap, cors: &Value, origin: &str) {
    let Some(allowed) = allowed_origin(cors, origin) else {
        return;
    };
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    put("access-control-allow-origin", allowed);
    let expose = strings(cors, "ExposeHeaders");
    if !expose.is_empty() {
        put("access-control-expose-headers", expose.join(","));
    }
    if cors.get("AllowCredentials").and_then(Value::as_bool) == Some(true) {
        put("access-control-allow-credentials", "true".to_owned());
    }
}

/// The answer to a CORS preflight request.
fn preflight(cors: &Value, origin: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    if allowed_origin(cors, origin).is_none() {
        return response;
    }
    add_cors(out, cors, origin);
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    };
    let methods = strings(cors, "AllowMethods");
    if !methods.is_empty() {
        put("access-control-allow-methods", methods.join(","));
    }
    let allow_headers = strings(cors, "AllowHeaders");
    if !allow_headers.is_empty() {
        put("access-control-allow-headers", allow_headers.join(","));
    }
    if let Some(age) = cors.get("MaxAge").and_then(Value::as_u64) {
        put("access-control-max-age", age.to_string());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_results_set_status_headers_cookies_and_binary_bodies() {
        let payload = json!({
            "statusCode": 201,
            "headers": {"x-custom": "yes"},
            "cookies": ["a=1", "b=2; Path=/"],
            "body": base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150]),
            "isBase64Encoded": true,
        })
        .to_string();
        let response = to_response(payload.as_bytes());
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-custom"], "yes");
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 2);
    }

    #[test]
    fn bare_json_is_the_body_as_is() {
        let response = to_response(br#""Hello""#);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    #[test]
    fn text_types_travel_as_text() {
        assert!(is_text(Some("application/json; charset=utf-8")));
        assert!(is_text(Some("text/plain")));
        assert!(is_text(None));
        assert!(!is_text(Some("application/octet-stream")));
        assert!(!is_text(Some("image/png")));
    }
}
