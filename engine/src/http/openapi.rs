//! The admin API's OpenAPI 3.1 document, served at `GET /api/openapi.json`. It is made from
//! the handlers' own `#[utoipa::path]` attributes and the types they answer with, so a route
//! and its entry change together; `tests/all/openapi.rs` checks that every route the admin
//! router declares is here and answers as listed.

use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Weir admin API",
        description = "Flows, runs, payloads, live events and metrics of a Weir server. With \
            `--admin-token`, every route needs `Authorization: Bearer <token>`; without one, \
            the API answers only requests addressed to this machine."
    ),
    paths(
        super::admin::server::health,
        super::admin::flows::list_flows,
        super::admin::flows::get_flow,
        super::admin::flows::list_rejections,
        super::admin::runs::list_runs,
        super::admin::runs::get_run,
        super::admin::runs::get_payload,
        super::admin::flows::flow_stats,
        super::admin::flows::rotate_token,
        super::admin::replay::replay_run,
        super::admin::replay::replay_runs,
        super::ui::events,
        super::admin::server::metrics,
        super::admin::server::openapi,
    ),
    modifiers(&AdminToken),
    security((), ("admin_token" = [])),
    tags(
        (name = "flows", description = "The flows of the flows folder"),
        (name = "runs", description = "Runs, newest first, with their steps and payloads"),
        (name = "server", description = "Health, live events, metrics and this document"),
    )
)]
struct ApiDoc;

/// Declares the bearer token that `--admin-token` requires.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The server's --admin-token (WEIR_ADMIN_TOKEN); needed only when set",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, as JSON.
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    serde_json::to_value(doc).unwrap_or(Value::Null)
}
