//! One classification of Redis failures, for every command the service
//! sends (checks, resets, pings, the control plane): whether a retry may
//! succeed ([`StoreError::transient`], which the circuit breaker and the
//! failure mode act on), and a low-cardinality kind for the metrics.

use fred::prelude::{Error as FredError, ErrorKind};

use crate::store::StoreError;

/// A low-cardinality name for a Redis failure.
pub fn error_kind(e: &FredError) -> &'static str {
    let details = e.details();
    match e.kind() {
        ErrorKind::Timeout => "timeout",
        ErrorKind::IO | ErrorKind::Canceled => "connection",
        ErrorKind::Cluster | ErrorKind::Routing => "cluster",
        _ if details.starts_with("OOM") => "oom",
        _ if details.starts_with("NOSCRIPT") => "noscript",
        _ if details.starts_with("LOADING") || details.starts_with("BUSY") => "busy",
        _ if details.contains("script") => "script",
        _ => "other",
    }
}

pub fn store_error(e: FredError) -> StoreError {
    let details = e.details();
    let transient = matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Cluster
            | ErrorKind::Routing
            | ErrorKind::Backpressure
    ) || [
        "LOADING",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "BUSY",
        "OOM",
        "READONLY",
    ]
    .iter()
    .any(|prefix| details.starts_with(prefix));
    StoreError {
        transient,
        message: format!("redis {:?} error: {details}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_told_apart() {
        assert!(store_error(FredError::new(ErrorKind::Timeout, "t")).transient);
        assert!(store_error(FredError::new(ErrorKind::IO, "reset")).transient);
        assert!(store_error(FredError::new(ErrorKind::Unknown, "LOADING Redis is loading")).transient);
        assert!(!store_error(FredError::new(ErrorKind::Unknown, "ERR Error running script")).transient);
    }
}
