//! The shipped nginx `auth_request` configuration, with a real nginx in
//! front of a real replica: allowed requests pass with the rate-limit
//! headers, the limited one becomes a 429 with `Retry-After`, a blocked one
//! a 403.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratelimiter_testkit::ports;
use ratelimiter_testkit::service::Service;

const TOKEN: &str = "gateway-admin-token-0123456789";

/// nginx running `deploy/nginx/auth_request.conf` with its upstreams
/// pointed at `ratelimiter` (also used as the API backend: `/health/live`),
/// listening on a candidate port (offered until one is not taken).
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(ratelimiter: std::net::SocketAddr) -> Nginx {
        assert!(
            Command::new("nginx").arg("-v").output().is_ok(),
            "nginx is not installed; scripts/test.sh installs it (Debian package nginx)"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let (child, port) = ports::retry("nginx", ports::candidate, |&port| {
            let server = include_str!("../../deploy/nginx/auth_request.conf")
                .replace("127.0.0.1:8080", &ratelimiter.to_string())
                .replace("127.0.0.1:9000", &ratelimiter.to_string())
                .replace("listen 8000;", &format!("listen 127.0.0.1:{port};"));
            let d = dir.path().display();
            let config = format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log stderr warn;\nevents {{}}\n\
                 http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{server}\n}}\n"
            );
            std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
            let mut child = Command::new("nginx")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg("stderr")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start nginx");
            ports::wait_listening(&mut child, &[port], &log, Duration::from_secs(10)).map(|()| (child, port))
        });
        Nginx { child, port, _dir: dir }
    }
}

impl Drop for Nginx {
    /// SIGTERM lets the master stop its workers (a SIGKILLed master would
    /// orphan them); SIGKILL only if it has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_enforces_the_limit_and_copies_the_headers() {
    let service = Service::start(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[[rules]]\nendpoint = \"GET /health/live\"\nalgorithm = \"fixed_window\"\nlimit = 2\nwindow = \"1h\"\n"
    ));
    let nginx = Nginx::start(service.addr());
    let client = reqwest::Client::new();
    let get = |key: &'static str| {
        client
            .get(format!("http://127.0.0.1:{}/health/live", nginx.port))
            .header("x-api-key", key)
            .send()
    };
    for remaining in ["1", "0"] {
        let response = get("alice").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit"], "2");
        assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
        assert_eq!(
            response.headers()["ratelimit-policy"],
            "\"GET /health/live\";q=2;w=3600"
        );
        assert_eq!(response.text().await.unwrap(), r#"{"status":"ok"}"#, "the API answered");
    }
    let limited = get("alice").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    assert!(
        limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    // Another caller is not affected.
    assert_eq!(get("bob").await.unwrap().status(), 200);

    // A blocked caller gets ratelimiter's 403 through nginx.
    let response = client
        .put(service.url("/admin/lists/block"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"entry": "x-api-key:mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(get("mallory").await.unwrap().status(), 403);
}
