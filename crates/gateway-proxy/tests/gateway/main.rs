//! End-to-end tests of the gateway core over real sockets: one test binary,
//! a module per behaviour, shared setup in `harness`.

mod harness;

mod admin;
mod authority;
mod cache;
mod cache_disk;
mod cache_protocol;
mod connections;
mod console;
mod cors;
mod deploy_kit;
mod discovery;
mod framing;
mod grpc;
mod ip_rules;
mod keys;
mod mtls;
mod oidc;
mod openapi;
mod protocols;
mod reload;
mod resilience;
mod routing;
mod shadow;
mod streaming;
mod tracing;
mod workers;
