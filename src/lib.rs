//! tollgate: a TLS/SNI ingress gateway that speaks Istio's configuration language.
//!
//! Data flow: [`reload`] builds a [`snapshot::Snapshot`] from the [`config`] files and swaps it in;
//! [`listener`] accepts connections and hands them to [`http`], which routes each request with
//! [`route`] and forwards it through the [`upstream`] proxy core.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod drain;
pub mod explain;
pub mod health;
pub mod hostmap;
pub mod hosts;
pub mod http;
pub mod l4;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy_protocol;
pub mod reload;
pub mod route;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;
