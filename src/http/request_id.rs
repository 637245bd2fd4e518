//! Request ids: every request gets an `x-request-id` (the caller's, or a
//! new one), echoed in the response and recorded on a tracing span, so
//! every log line of the request carries it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Request ids for requests that bring none: 16 hex digits drawn at start
/// (so replicas differ) followed by a counter, as 32 hex digits. Unique per
/// process without a random draw per request (a UUIDv4 costs a
/// `getrandom` system call each).
#[derive(Clone)]
pub struct SequentialIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl SequentialIds {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        SequentialIds {
            prefix: hasher.finish(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for SequentialIds {
    fn default() -> Self {
        SequentialIds::new()
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        hex_into(&mut id[..16], self.prefix);
        hex_into(&mut id[16..], n);
        axum::http::HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

fn hex_into(out: &mut [u8], mut n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in out.iter_mut().rev() {
        *byte = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// Accepts or generates `x-request-id`, opens a span carrying it around the
/// request, and echoes it in the response. When traces are exported, the
/// span continues the caller's trace (W3C `traceparent`), see
/// [`crate::telemetry`].
pub fn with_request_ids(router: Router) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    router
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let head = crate::telemetry::Head::of(&crate::telemetry::Headers(request.headers()));
            macro_rules! request_span {
                ($target:expr) => {
                    tracing::info_span!(target: $target, "request", request_id = %id, method = %request.method(), path = %request.uri().path())
                };
            }
            if head.traced() {
                let span = request_span!(module_path!());
                head.adopt(&span);
                span
            } else {
                // The same span for the logs; the trace layer skips it.
                request_span!(crate::telemetry::UNTRACED_TARGET)
            }
        }))
        .layer(SetRequestIdLayer::new(x_request_id, SequentialIds::new()))
}
