//! The Redis store against real `redis-server` processes (standalone and a
//! 3-master cluster) started by the tests on free loopback ports.

mod admin;
mod batch;
mod cluster_changes;
mod cluster_demo;
mod cluster_script;
mod common;
mod contract;
mod differential;
mod exactness;
mod expiry;
mod faults;
mod footprint;
mod grpc;
mod leases;
mod observability;
#[path = "../shared/otlp.rs"]
mod otlp;
mod recovery;
mod reports;
mod secrets;
mod sentinel;
mod support_selftest;
mod tls;
mod traces;
