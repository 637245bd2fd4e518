//! Slow clients cannot hold a connection: `server.read_timeout` closes a
//! connection whose headers do not arrive (or that sends nothing at all) and
//! answers 408 to a request whose body stops coming — while other
//! connections are served as usual. Real sockets against the real binary,
//! plus the 408 through the router alone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, StatusCode};
use hyper::body::Frame;
use ratelimiter::settings::Settings;
use serde_json::Value;

use ratelimiter_testkit::service::Service;
use ratelimiter_testkit::{poll_until, POLL_INTERVAL};

const READ_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long past the timeout a connection may take to be closed.
const SLACK: Duration = Duration::from_secs(5);

/// A raw connection and what it has received so far.
struct Raw {
    name: &'static str,
    stream: TcpStream,
    received: Vec<u8>,
    /// When the client last sent something (or connected).
    since: Instant,
    closed_after: Option<Duration>,
}

impl Raw {
    fn open(name: &'static str, addr: SocketAddr, send: &[u8]) -> Raw {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(send).expect("send");
        stream.set_read_timeout(Some(POLL_INTERVAL)).unwrap();
        Raw {
            name,
            stream,
            received: Vec::new(),
            since: Instant::now(),
            closed_after: None,
        }
    }

    /// Reads what is there; records when the server closed the connection.
    fn poll(&mut self) -> bool {
        if self.closed_after.is_some() {
            return true;
        }
        let mut buf = [0_u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => self.closed_after = Some(self.since.elapsed()),
            Ok(n) => self.received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed_after = Some(self.since.elapsed()), // reset
        }
        self.closed_after.is_some()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

/// One complete request on a fresh connection; returns the status line and
/// the body.
fn complete_request(addr: SocketAddr) -> (String, String) {
    let body = r#"{"key": "patient"}"#;
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST /check HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response, then EOF");
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let service = Service::start(&format!(
        "[server]\nread_timeout = \"{}ms\"\n",
        READ_TIMEOUT.as_millis()
    ));
    let addr = service.addr();
    let mut slow = [
        Raw::open("silent", addr, b""),
        Raw::open("part of the HTTP/2 preface", addr, b"PRI * HTTP/2.0\r\n"),
        Raw::open(
            "partial headers",
            addr,
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
        ),
        Raw::open(
            "partial body",
            addr,
            b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"key\": \"slo",
        ),
    ];

    // Meanwhile, other connections are served at once.
    let started = Instant::now();
    for _ in 0..3 {
        let (status, body) = complete_request(addr);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}: {body}");
    }
    if started.elapsed() < READ_TIMEOUT / 2 {
        for raw in &mut slow {
            assert!(!raw.poll(), "{}: closed before its time", raw.name);
        }
    }

    let all_closed = poll_until(READ_TIMEOUT + SLACK, || {
        let mut all = true;
        for raw in &mut slow {
            all &= raw.poll();
        }
        all
    });
    for raw in &slow {
        let closed_after = raw
            .closed_after
            .unwrap_or_else(|| panic!("{}: still open after {:?}", raw.name, READ_TIMEOUT + SLACK));
        assert!(
            closed_after >= READ_TIMEOUT.mul_f64(0.9),
            "{}: closed after {closed_after:?}, before the timeout",
            raw.name
        );
        eprintln!("{}: closed after {closed_after:?}", raw.name);
    }
    assert!(all_closed);

    // Cut off mid-headers: closed without an answer (hyper has no request
    // to answer). Cut off mid-body: a JSON 408 first.
    assert_eq!(slow[0].text(), "", "silent");
    assert_eq!(slow[1].text(), "", "part of the HTTP/2 preface");
    assert_eq!(slow[2].text(), "", "partial headers");
    let answer = slow[3].text();
    assert!(answer.starts_with("HTTP/1.1 408"), "partial body: {answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["field"], "body", "{body}");

    // And the service goes on serving.
    let (status, _) = complete_request(addr);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
}

/// A body that never sends anything.
struct Stalled;

impl HttpBody for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[tokio::test]
async fn a_stalled_body_is_a_json_408_through_the_router() {
    let app = crate::helpers::app("");
    let router = ratelimiter::server::with_read_deadline(app.router.clone(), Duration::from_millis(200));
    let request = Request::post("/check")
        .header("content-type", "application/json")
        .body(Body::new(Stalled))
        .unwrap();
    let started = Instant::now();
    let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.headers()["connection"], "close");
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["field"], "body");
    assert!(body["error"].as_str().unwrap().contains("200ms"), "{body}");
}

#[test]
fn read_timeout_is_validated_and_defaults_to_10s() {
    assert_eq!(
        Settings::from_toml("").unwrap().server.read_timeout.0,
        Duration::from_secs(10)
    );
    for bad in ["0s", "50ms", "2h"] {
        let err = Settings::from_toml(&format!("[server]\nread_timeout = \"{bad}\"\n")).unwrap_err();
        assert!(err.to_string().contains("server.read_timeout"), "{bad}: {err}");
    }
    let ok = Settings::from_toml("[server]\nread_timeout = \"250ms\"\n").unwrap();
    assert_eq!(ok.server.read_timeout.0, Duration::from_millis(250));
}
