//! The HTTP contract, through the real router (`oneshot`, no socket) and
//! through the real binary on a free port.

mod admin;
mod batch;
mod binary;
mod check;
mod cli;
mod credentials;
mod errors;
mod fuzz;
mod gateway;
mod grpc;
mod helpers;
mod http2;
mod leases;
mod observability;
mod openapi;
#[path = "../shared/otlp.rs"]
mod otlp;
mod reload;
mod report;
mod schemathesis;
mod several;
mod shadow;
mod slow_clients;
mod telemetry;
