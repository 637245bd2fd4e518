//! The deployment files — `Dockerfile`, `docker-compose.yml`,
//! `deploy/docker/`, `deploy/kubernetes/` and `deploy/terraform/` — cannot
//! run here (no Docker engine, kubectl or terraform), so this binary checks
//! what can be checked without them, against the code itself:
//!
//! - every `RATELIMITER__…` variable they set loads into valid
//!   [`Settings`](ratelimiter::settings::Settings), with the configuration
//!   file they mount;
//! - every health check and probe asks a path the router serves, on the
//!   port the settings listen on, and readiness checks ask the path that
//!   turns 503 while a replica drains (liveness must not);
//! - the topologies are consistent: compose's six Redis nodes, cluster
//!   creation, three replicas, nginx upstreams and Prometheus targets;
//!   Kubernetes selectors, ports, Secrets and shutdown timing; Terraform
//!   references, inputs, the task definition, the ALB health check and
//!   ElastiCache in cluster mode;
//! - with real processes: nginx balancing three real replicas with
//!   `deploy/docker/nginx.conf`, `promtool check config` on the compose
//!   Prometheus file, and six `redis-server`s started with the compose
//!   nodes' options joined into a cluster by the compose init job's script
//!   (twice: the second run finds the cluster and exits 0);
//! - and checkov's static security checks pass on the Kubernetes
//!   manifests, the Terraform module and the `Dockerfile`, every skipped
//!   check saying why (`checkov.rs`).

mod checkov;
mod common;
mod compose;
mod docker;
mod envoy;
mod kubernetes;
mod msrv;
mod publish;
mod schema;
mod systemd;
mod terraform;
