//! How a [`Problem`] appears in the OpenAPI documents of the admin and fx
//! APIs: its schema is built from the [error table](crate::errors) (every
//! `code` a client can receive, every status they are sent with), so the
//! documents cannot drift from what the servers send.

use std::borrow::Cow;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{RefOr, Response, ResponseBuilder, Schema};
use utoipa::{PartialSchema, ToResponse, ToSchema};

use crate::problem::{Problem, CONTENT_TYPE, TYPE_BASE};

impl PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        let mut codes: Vec<&str> = crate::errors::ALL.iter().map(|e| e.code).collect();
        codes.sort_unstable();
        codes.dedup();
        let mut statuses: Vec<u16> = crate::errors::ALL
            .iter()
            .map(|e| e.status.as_u16())
            .collect();
        statuses.sort_unstable();
        statuses.dedup();
        let schema = ObjectBuilder::new()
            .description(Some(
                "Problem details (RFC 9457). `code` is stable and listed in docs/errors.md; \
                 extension members (e.g. `parameter`, `upstream`) may follow.",
            ))
            .property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("uri".into())))
                    .description(Some(format!("`{TYPE_BASE}` followed by the code."))),
            )
            .required("type")
            .property("title", ObjectBuilder::new().schema_type(Type::String))
            .required("title")
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .enum_values(Some(statuses)),
            )
            .required("status")
            .property(
                "detail",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("What went wrong this time, and where.")),
            )
            .required("detail")
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .enum_values(Some(codes)),
            )
            .required("code");
        // The extension members some problems carry (`Problem::with`).
        let extensions = [
            (
                "parameter",
                "The query parameter, path segment or body field at fault.",
            ),
            ("field", "The request body's field at fault."),
            ("upstream", "The upstream cluster that failed."),
            ("target", "The cluster's target that failed."),
            ("key_id", "The API key concerned (never the key itself)."),
            ("request_id", "The request's id (`X-Request-Id`)."),
        ];
        let mut schema = schema;
        for (name, what) in extensions {
            schema = schema.property(
                name,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(what)),
            );
        }
        schema
            .property(
                "retry_after",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("Seconds before a retry may succeed.")),
            )
            .into()
    }
}

impl ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Problem")
    }
}

impl<'r> ToResponse<'r> for Problem {
    fn response() -> (&'r str, RefOr<Response>) {
        (
            "Problem",
            ResponseBuilder::new()
                .description("An error, as problem+json (RFC 9457).")
                .content(
                    CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "Problem",
                        ))))
                        .build(),
                )
                .into(),
        )
    }
}
