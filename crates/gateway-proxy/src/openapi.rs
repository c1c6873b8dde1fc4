//! The admin API's OpenAPI 3.1 document: the documents of every router on
//! the admin listener merged into one, with the access check described
//! once. Each router documents its own routes (`#[utoipa::path]` on its
//! handlers); the check in front of the protected ones is the admin
//! listener's, so it is added here: security on every protected operation
//! (reads: the admin token, the viewer token or a console session; changes:
//! the admin token or an admin's session with its CSRF token) and their
//! 401 and 403 answers.

use bytes::Bytes;
use gateway_core::Problem;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, SecurityRequirement,
};
use utoipa::{PartialSchema, ToResponse};

/// The document, serialized: `open` routes need no credential,
/// `protected` ones are behind the access check.
pub(crate) fn document(open: Vec<OpenApi>, protected: Vec<OpenApi>) -> Bytes {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Gatehouse admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The gateway's admin listener: health, metrics, config, upstreams, API keys, \
                     the response cache, dark launches and the console. Errors are problem+json \
                     (RFC 9457) with a stable `code` (docs/errors.md).",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .schema("Problem", Problem::schema())
                .response("Problem", <Problem as ToResponse>::response().1)
                .security_scheme("admin_token", bearer("The admin token: every endpoint."))
                .security_scheme(
                    "viewer_token",
                    bearer("The viewer token (`[admin] viewer_token`): reads only (GET)."),
                )
                .security_scheme(
                    "console_session",
                    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                        gateway_console::session::SESSION_COOKIE,
                        "A console session (`POST /v1/console/session`); changes also need \
                         its `x-csrf-token` header.",
                    ))),
                )
                .build(),
        ))
        .build();
    for mut part in protected {
        for item in part.paths.paths.values_mut() {
            for (method, op) in operations(item) {
                let read = method == "get";
                let mut options = vec![requirement("admin_token"), requirement("console_session")];
                if read {
                    options.insert(1, requirement("viewer_token"));
                }
                op.security = Some(options);
                let responses = &mut op.responses.responses;
                for status in ["401", "403"] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Problem")));
                }
            }
        }
        doc.merge(part);
    }
    for part in open {
        doc.merge(part);
    }
    Bytes::from(doc.to_json().unwrap_or_default())
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

fn requirement(scheme: &str) -> SecurityRequirement {
    SecurityRequirement::new(scheme, Vec::<String>::new())
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (&'static str, &mut utoipa::openapi::path::Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}
