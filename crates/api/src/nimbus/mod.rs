//! The Nimbus extensions under `/nimbus/v1/`: what Lambda keeps in other services.

mod dead_letters;
mod health;
mod instances;
mod nodes;
mod observe;
mod scaling;
mod schedules;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use nimbus_control::{Membership, Platform};

pub use health::{CgroupVersion, Isolation};

/// The OpenAPI document describing these routes.
const OPENAPI: &str = include_str!("openapi.json");

/// The extension routes; `membership` answers for the cluster's nodes.
pub(crate) fn routes(isolation: Isolation, membership: Arc<Membership>) -> Router<Arc<Platform>> {
    let health = axum::Json(health::Health {
        status: "ok",
        isolation,
    });
    Router::new()
        .route("/nimbus/v1/health", get(move || async move { health }))
        .route("/nimbus/v1/openapi.json", get(openapi))
        .route("/nimbus/v1/instances", get(instances::list))
        .route(
            "/nimbus/v1/nodes",
            get(move || nodes::list(membership.clone())),
        )
        .route("/nimbus/v1/functions/{name}/logs", get(observe::logs))
        .route("/nimbus/v1/usage", get(observe::usage))
        .route("/metrics", get(observe::metrics))
        .route("/nimbus/v1/dead-letters", get(dead_letters::list))
        .route(
            "/nimbus/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/nimbus/v1/schedules/{name}",
            axum::routing::delete(schedules::delete),
        )
        .route(
            "/nimbus/v1/dead-letters/redrive",
            post(dead_letters::redrive_all),
        )
        .route(
            "/nimbus/v1/dead-letters/{id}",
            axum::routing::delete(dead_letters::delete),
        )
        .route(
            "/nimbus/v1/dead-letters/{id}/redrive",
            post(dead_letters::redrive_one),
        )
        .route(
            "/nimbus/v1/functions/{name}/scaling",
            get(scaling::get).put(scaling::put),
        )
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([("content-type", "application/json")], OPENAPI)
}
