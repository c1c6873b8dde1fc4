//! gateway-keys: the API key system of Gatehouse.
pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod feed;
pub mod jwt;
pub mod key;
pub mod keyring;
pub mod model;
pub mod ratelimit;
pub mod scope;
pub mod service;
pub mod store;
