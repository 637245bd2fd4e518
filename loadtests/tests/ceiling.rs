//! The `ceiling` binary on a free loopback port: it answers a `/check` body
//! with the service's answer shape, always allowed, and a body it cannot
//! read with a 4xx JSON error naming `body`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The fields of the service's `/check` answer (`src/http/wire.rs`).
const ANSWER_FIELDS: [&str; 9] = [
    "allowed",
    "limit",
    "remaining",
    "reset_after_ms",
    "retry_after_ms",
    "rule",
    "tier",
    "algorithm",
    "reason",
];

#[test]
fn the_small_answer_is_allowed_and_nothing_else() {
    let ceiling = Ceiling::start(&["--answer", "small"]);
    let (status, body) = post(ceiling.addr, "application/json", r#"{"key":"user:1"}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"allowed":true}"#));
    let (status, _) = post(ceiling.addr, "application/json", "not json");
    assert!((400..500).contains(&status));
}

#[test]
fn answers_check_bodies_like_the_service_and_refuses_others_with_json() {
    let ceiling = Ceiling::start(&[]);

    let (status, body) = post(
        ceiling.addr,
        "application/json",
        r#"{"key":"user:1","endpoint":"GET /","cost":2}"#,
    );
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    let mut fields: Vec<&str> = answer.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    let mut expected = ANSWER_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(
        (&answer["allowed"], &answer["reason"]),
        (&Value::Bool(true), &Value::from("allowed"))
    );

    for (content_type, bad) in [
        ("application/json", r#"{"endpoint":"GET /"}"#),
        ("application/json", "not json"),
        ("text/plain", r#"{"key":"user:1"}"#),
    ] {
        let (status, body) = post(ceiling.addr, content_type, bad);
        assert!(
            (400..500).contains(&status),
            "{bad:?} as {content_type}: {status} {body}"
        );
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(error["field"], "body", "{body}");
        assert!(!error["error"].as_str().unwrap().is_empty());
    }
}

/// One `POST /check` on a fresh connection; the status and the body.
fn post(addr: SocketAddr, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "POST /check HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the answer");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The ceiling on a free loopback port, killed on drop.
struct Ceiling {
    child: Child,
    addr: SocketAddr,
}

impl Ceiling {
    fn start(args: &[&str]) -> Ceiling {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ceiling"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ceiling");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ceiling: listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ceiling {
                addr: addr.parse().expect("a socket address"),
                child,
            },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ceiling did not say where it listens within 20 s");
            }
        }
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
