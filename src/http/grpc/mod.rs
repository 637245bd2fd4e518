//! Envoy's front door: `envoy.service.ratelimit.v3.RateLimitService` over
//! gRPC on a listener of its own (`[grpc] listen`), with
//! `grpc.health.v1.Health` beside it.
//!
//! A `RateLimitRequest`'s domain selects a `[[grpc.domains]]` mapping; each
//! descriptor becomes a check ([`mapping`]) decided by the limiter exactly
//! as `/check` decides it, so rules, tiers, overrides, lists, shadow mode,
//! the failure modes, the stats and the metrics all apply.
//!
//! The descriptors of one request are all or nothing: they are decided in
//! order, and when one is over its limit the ones already decided give
//! back what they took (a refund, or a lease released), so nothing stays
//! consumed. Each check is atomic on its own; between a check and its
//! refund another request may see the units taken — a brief
//! under-admission, never an over-admission (docs/DECISIONS.md).
//! Descriptors with Envoy's negative hits are refunds, applied whatever
//! the checks decide.

pub mod mapping;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use self::mapping::{map, Mapped};
use crate::context::Context;
use crate::core::Units;
use crate::http::headers::rate_limit_headers;
use crate::http::log::{note_denial, LogSampler};
use crate::limiter::{Reason, Verdict};
use crate::settings::{GrpcDomain, GrpcSettings};

/// The RateLimitService over one process's limiter.
pub struct RateLimiter {
    ctx: Arc<Context>,
    /// Denied descriptors are logged as denied checks are, sampled.
    log: LogSampler,
    domains: std::collections::BTreeMap<String, GrpcDomain>,
    max_descriptors: usize,
}

impl RateLimiter {
    pub fn new(ctx: Arc<Context>, settings: &GrpcSettings, raw_keys: bool) -> RateLimiter {
        RateLimiter {
            ctx,
            log: LogSampler::new(20).with_raw_keys(raw_keys),
            domains: mapping::domains(&settings.domains),
            max_descriptors: settings.max_descriptors,
        }
    }

    /// The call's span when traces are exported (else none): its domain
    /// when configured, and the caller's trace from `traceparent`.
    fn span(&self, request: &Request<RateLimitRequest>) -> tracing::Span {
        let head = crate::telemetry::Head::of(&crate::telemetry::Metadata(request.metadata()));
        if !head.traced() {
            return tracing::Span::none();
        }
        let domain = request.get_ref().domain.as_str();
        let domain = if self.domains.contains_key(domain) {
            domain
        } else {
            "unknown"
        };
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "grpc",
            method = "ShouldRateLimit",
            domain,
            descriptors = request.get_ref().descriptors.len(),
        );
        head.adopt(&span);
        span
    }

    fn count(&self, domain: &str, code: &str) {
        // Only configured domains are labels: callers choose the others.
        let domain = if self.domains.contains_key(domain) {
            domain
        } else {
            "unknown"
        };
        self.ctx
            .limiter
            .metrics()
            .grpc_requests
            .with_label_values(&[domain, code])
            .inc();
    }

    async fn decide(&self, request: RateLimitRequest) -> Result<RateLimitResponse, Status> {
        if request.domain.is_empty() {
            return Err(Status::invalid_argument("domain must not be empty"));
        }
        let Some(domain) = self.domains.get(&request.domain) else {
            let known: Vec<&str> = self.domains.keys().map(String::as_str).collect();
            return Err(Status::invalid_argument(format!(
                "unknown domain {:?}; configured domains: {known:?} ([[grpc.domains]])",
                request.domain
            )));
        };
        if request.descriptors.is_empty() {
            return Err(Status::invalid_argument("descriptors must not be empty"));
        }
        if request.descriptors.len() > self.max_descriptors {
            return Err(Status::invalid_argument(format!(
                "{} descriptors; at most {} (grpc.max_descriptors)",
                request.descriptors.len(),
                self.max_descriptors
            )));
        }
        let limiter = &self.ctx.limiter;
        // The request's hits apply where a descriptor sets none; 0 is 1.
        let default_hits = u64::from(request.hits_addend.max(1));
        let mut mapped = Vec::with_capacity(request.descriptors.len());
        for (i, descriptor) in request.descriptors.iter().enumerate() {
            let entries: Vec<(&str, &str)> = descriptor
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            let hits = descriptor.hits_addend.map_or(default_hits, |v| v.value);
            let one = map(
                domain,
                &entries,
                hits,
                descriptor.is_negative_hits,
                limiter.max_key_bytes(),
            )
            .map_err(|e| Status::invalid_argument(format!("descriptors[{i}]: {}", e.0)))?;
            if let Mapped::Check(check) = &one {
                limiter
                    .validate(check)
                    .map_err(|e| Status::invalid_argument(format!("descriptors[{i}]: {e}")))?;
            }
            mapped.push(one);
        }

        let mut verdicts: Vec<Option<Verdict>> = vec![None; mapped.len()];
        let mut taken: Vec<usize> = Vec::new();
        let mut over = None;
        for (i, one) in mapped.iter().enumerate() {
            let Mapped::Check(check) = one else { continue };
            let verdict = limiter
                .check(check)
                .await
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            note_denial(&self.log, check, &verdict);
            if verdict.reason == Reason::FailClosed {
                self.give_back(&mapped, &verdicts, &taken).await;
                return Err(Status::unavailable(format!(
                    "the store cannot decide and the rule fails closed: {}",
                    verdict.store_error.unwrap_or_default()
                )));
            }
            let allowed = verdict.allowed();
            verdicts[i] = Some(verdict);
            if !allowed {
                over = Some(i);
                break;
            }
            if !check.peek {
                taken.push(i);
            }
        }
        if let Some(denied) = over {
            self.give_back(&mapped, &verdicts, &taken).await;
            // What the others stand at now: a peek each.
            for (i, one) in mapped.iter().enumerate() {
                if let (Mapped::Check(check), true) = (one, i != denied) {
                    let mut peek = check.clone();
                    peek.peek = true;
                    peek.id = None;
                    verdicts[i] = limiter.check(&peek).await.ok();
                }
            }
        }
        for (i, one) in mapped.iter().enumerate() {
            if let Mapped::Refund(check, units) = one {
                let units = i64::try_from(*units).ok().and_then(|u| Units::new(-u.min(1 << 31)));
                if let Some(units) = units {
                    match limiter.report(check, units).await {
                        Ok(verdict) => verdicts[i] = Some(verdict),
                        Err(e) => return Err(Status::invalid_argument(format!("descriptors[{i}]: {e}"))),
                    }
                }
            }
        }

        let statuses: Vec<DescriptorStatus> = verdicts.iter().map(status).collect();
        let binding = match over {
            Some(i) => verdicts[i].as_ref(),
            None => verdicts.iter().flatten().min_by_key(|v| v.decision.remaining),
        };
        let response_headers_to_add = binding.map(headers).unwrap_or_default();
        let code = if over.is_some() { Code::OverLimit } else { Code::Ok };
        Ok(RateLimitResponse {
            overall_code: code as i32,
            statuses,
            response_headers_to_add,
            ..Default::default()
        })
    }

    /// Gives back what the checks `taken` consumed: their leases released,
    /// their costs refunded. A sliding window log cannot refund: its units
    /// stay taken (see the README).
    async fn give_back(&self, mapped: &[Mapped], verdicts: &[Option<Verdict>], taken: &[usize]) {
        let limiter = &self.ctx.limiter;
        for &i in taken {
            let (Mapped::Check(check), Some(verdict)) = (&mapped[i], &verdicts[i]) else {
                continue;
            };
            let result = match &verdict.lease {
                Some(lease) => limiter.release(&lease.token).await.map(|_| ()),
                None => {
                    let cost = i64::try_from(check.cost.get()).unwrap_or(i64::MAX);
                    match Units::new(-cost.min(1 << 31)) {
                        Some(units) => limiter.report(check, units).await.map(|_| ()),
                        None => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, rule = %verdict.rule, "could not give back a descriptor's units");
            }
        }
    }
}

/// A descriptor's status: `OK` with no limit when nothing applied to it.
fn status(verdict: &Option<Verdict>) -> DescriptorStatus {
    let Some(v) = verdict else {
        return DescriptorStatus {
            code: Code::Ok as i32,
            ..Default::default()
        };
    };
    let d = &v.decision;
    let name = match &v.limit_name {
        Some(limit) => format!("{}/{limit}", v.rule),
        None => v.rule.to_string(),
    };
    let (requests_per_unit, unit) = per_unit(d.limit, v.policy.quota().window_us());
    DescriptorStatus {
        code: if v.allowed() { Code::Ok } else { Code::OverLimit } as i32,
        current_limit: Some(RateLimit {
            name,
            requests_per_unit,
            unit: unit as i32,
        }),
        limit_remaining: u32::try_from(d.remaining).unwrap_or(u32::MAX),
        duration_until_reset: Some(duration(d.reset_after_us)),
        quota: None,
    }
}

/// `limit` per `window_us` in Envoy's units: the largest unit not longer
/// than the window, and the limit scaled to it (rounded down, at least
/// 1). Exact when the window is one unit; otherwise an approximation, as
/// the README says.
pub fn per_unit(limit: u64, window_us: u64) -> (u32, Unit) {
    const UNITS: [(u64, Unit); 5] = [
        (7 * 86_400_000_000, Unit::Week),
        (86_400_000_000, Unit::Day),
        (3_600_000_000, Unit::Hour),
        (60_000_000, Unit::Minute),
        (1_000_000, Unit::Second),
    ];
    let (unit_us, unit) = UNITS
        .iter()
        .copied()
        .find(|(unit_us, _)| *unit_us <= window_us)
        .unwrap_or((1_000_000, Unit::Second));
    let scaled = u128::from(limit) * u128::from(unit_us) / u128::from(window_us.max(1));
    (u32::try_from(scaled.max(1)).unwrap_or(u32::MAX), unit)
}

fn duration(us: u64) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(us / 1_000_000).unwrap_or(i64::MAX),
        nanos: i32::try_from(us % 1_000_000 * 1_000).unwrap_or(0),
    }
}

/// The rate-limit headers of `/check`, for Envoy to add to its response.
fn headers(verdict: &Verdict) -> Vec<HeaderValue> {
    rate_limit_headers(verdict)
        .iter()
        .filter_map(|(name, value)| {
            Some(HeaderValue {
                key: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
                ..Default::default()
            })
        })
        .collect()
}

#[tonic::async_trait]
impl RateLimitService for RateLimiter {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let span = self.span(&request);
        let request = request.into_inner();
        let domain = request.domain.clone();
        match self.decide(request).instrument(span).await {
            Ok(response) => {
                let code = if response.overall_code == Code::OverLimit as i32 {
                    "OVER_LIMIT"
                } else {
                    "OK"
                };
                self.count(&domain, code);
                Ok(Response::new(response))
            }
            Err(status) => {
                self.count(&domain, status_name(status.code()));
                Err(status)
            }
        }
    }
}

fn status_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::Unavailable => "UNAVAILABLE",
        _ => "OTHER",
    }
}

/// Serves the RateLimitService and health on `listener` until `shutdown`
/// completes, then lets in-flight calls finish. Health answers `SERVING`
/// until the replica starts draining, then `NOT_SERVING`.
pub async fn serve<F>(
    listener: TcpListener,
    ctx: Arc<Context>,
    settings: GrpcSettings,
    raw_keys: bool,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<RateLimitServiceServer<RateLimiter>>().await;
    let draining = ctx.clone();
    let watcher = tokio::spawn(async move {
        while !draining.is_draining() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        reporter.set_not_serving::<RateLimitServiceServer<RateLimiter>>().await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    });
    let service = RateLimitServiceServer::new(RateLimiter::new(ctx, &settings, raw_keys))
        .max_decoding_message_size(settings.max_message_bytes);
    let result = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    watcher.abort();
    result.map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_become_the_closest_envoy_unit() {
        const S: u64 = 1_000_000;
        // One unit: exact.
        assert_eq!(per_unit(10, S), (10, Unit::Second));
        assert_eq!(per_unit(100, 60 * S), (100, Unit::Minute));
        assert_eq!(per_unit(5, 3_600 * S), (5, Unit::Hour));
        assert_eq!(per_unit(7, 86_400 * S), (7, Unit::Day));
        assert_eq!(per_unit(7, 7 * 86_400 * S), (7, Unit::Week));
        // Several units: scaled to one, rounded down.
        assert_eq!(per_unit(100, 10 * S), (10, Unit::Second));
        assert_eq!(per_unit(100, 90 * S), (66, Unit::Minute));
        // Shorter than a second: per second, at least 1.
        assert_eq!(per_unit(5, S / 2), (10, Unit::Second));
        assert_eq!(per_unit(1, 30 * 86_400 * S), (1, Unit::Week));
        assert_eq!(per_unit(u64::MAX, 1), (u32::MAX, Unit::Second));
    }
}
