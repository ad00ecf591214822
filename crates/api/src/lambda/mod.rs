//! The Lambda API (restJson, as botocore sends it): one module per resource.

mod account;
mod aliases;
mod concurrency;
mod event_config;
mod functions;
mod invoke;
mod provisioned;
mod shapes;
mod urls;
mod versions;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use nimbus_control::Platform;
use nimbus_core::{Error, ErrorKind};
use serde::de::DeserializeOwned;

/// The Lambda API's routes.
pub(crate) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route(
            "/2015-03-31/functions",
            post(functions::create).get(functions::list),
        )
        .route("/2015-03-31/functions/", get(functions::list))
        .route(
            "/2015-03-31/functions/{name}",
            get(functions::get).delete(functions::delete),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(functions::get_configuration).put(functions::update_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            put(functions::update_code),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(versions::publish).get(versions::list),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(aliases::create).get(aliases::list),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(aliases::get)
                .put(aliases::update)
                .delete(aliases::delete),
        )
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(concurrency::put).delete(concurrency::delete),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(concurrency::get),
        )
        .route(
            "/2019-09-30/functions/{name}/provisioned-concurrency",
            put(provisioned::put)
                .get(provisioned::get)
                .delete(provisioned::delete),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            post(urls::create)
                .get(urls::get)
                .put(urls::update)
                .delete(urls::delete),
        )
        .route("/2021-10-31/functions/{name}/urls", get(urls::list))
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            put(event_config::put)
                .post(event_config::update)
                .get(event_config::get)
                .delete(event_config::delete),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(event_config::list),
        )
        .route("/2016-08-19/account-settings", get(account::get))
        .route("/2016-08-19/account-settings/", get(account::get))
        .route(
            "/nimbus/v1/functions/{name}/code",
            get(functions::download_code),
        )
}

/// Reads a body of at most `limit` bytes, answering Lambda's error when it is larger (and
/// 408 or 400 when it stalls or is malformed).
pub(crate) async fn read_body(body: Body, limit: usize, operation: &str) -> Result<Bytes, Error> {
    crate::intake::read(body, limit, Some(operation)).await
}

/// The `Qualifier` query parameter, if given.
pub(crate) fn qualifier(params: &std::collections::HashMap<String, String>) -> Option<&str> {
    params.get("Qualifier").map(String::as_str)
}

/// The `MaxItems` query parameter, if given.
pub(crate) fn max_items(
    params: &std::collections::HashMap<String, String>,
) -> Result<Option<i64>, Error> {
    params
        .get("MaxItems")
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                Error::validation(
                    raw,
                    "maxItems",
                    "Member must be an integer between 1 and 10000",
                )
            })
        })
        .transpose()
}

/// Parses a JSON request body (an empty body reads as `{}`).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequestContent,
            format!("Could not parse request body into json: {e}"),
        )
    })
}
