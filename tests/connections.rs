//! Connection bounds through the real binary over real TLS: idle and header timeouts on every
//! request of a connection (HTTP/1.1 and HTTP/2), the connection cap and the memory of many idle
//! connections, TCP_NODELAY, the review deadline, and the graceful stop after SIGTERM.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use common::{object, review, Certs};

/// A running `secretscope serve --standalone`, killed on drop.
struct Server {
    child: Child,
    port: u16,
    certs: Certs,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `state` is manifest YAML (may be empty); `rust_log` the log filter.
    fn start(state: &str, extra: &[&str], rust_log: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_path = dir.path().join("state.yaml");
        std::fs::write(&state_path, state).expect("state");
        Self::start_with(dir, &state_path, extra, rust_log)
    }

    fn start_with(dir: tempfile::TempDir, state: &Path, extra: &[&str], rust_log: &str) -> Self {
        let certs = Certs::new();
        let (child, addr, logs) = common::spawn_serve(
            Command::new(common::BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
                .arg("--standalone")
                .arg("--state")
                .arg(state)
                .arg("--tls-cert")
                .arg(certs.path("tls.crt"))
                .arg("--tls-key")
                .arg(certs.path("tls.key"))
                .args(extra)
                .env("RUST_LOG", rust_log),
        );
        let port = addr.rsplit(':').next().unwrap().parse().expect("port");
        Self {
            child,
            port,
            certs,
            logs,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn client(&self) -> reqwest::Client {
        common::client(&self.certs.ca_pem(), &[b"h2", b"http/1.1"], None)
    }

    /// The status of `GET /healthz`.
    async fn health(&self, client: &reqwest::Client) -> u16 {
        let r = client.get(self.url("/healthz")).send().await;
        r.expect("healthz").status().as_u16()
    }

    fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(l) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    /// A raw TLS connection offering `alpn`, for tests that must see the server close it.
    async fn connect(&self, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&self.certs.ca_pem()) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let addr = self.logs().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some(v.get("metrics_addr")?.as_str()?.to_string())
        })?;
        common::scrape_metric(&self.client(), &format!("http://{addr}/metrics"), name).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a kept-alive connection: the response head and body.
async fn exchange(conn: &mut TlsStream<TcpStream>, request: &[u8]) -> std::io::Result<String> {
    conn.write_all(request).await?;
    conn.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(text.into_owned());
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn post_validate(body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut req = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// Waits until the server closes `conn` (EOF or a reset), at most `limit`; the time it took.
async fn closed_within(conn: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: pods}\nrules: [{apiGroups: [\"\"], resources: [pods], verbs: [get]}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is shorter than the idle timeout: idle time must not count toward it.
    let srv = Server::start(
        "",
        &["--idle-timeout", "2s", "--header-timeout", "1s"],
        "info",
    );
    let mut conn = srv.connect(b"http/1.1").await.expect("connect");
    let resp = exchange(&mut conn, HEALTHZ).await.expect("first request");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let after = closed_within(&mut conn, Duration::from_secs(6))
        .await
        .expect("an idle connection must be closed after --idle-timeout");
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_secs(4),
        "closed after {after:?}, idle timeout 2s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_second_request_is_closed_within_the_header_timeout() {
    let srv = Server::start(
        "",
        &["--header-timeout", "1s", "--idle-timeout", "30s"],
        "info",
    );
    let mut conn = srv.connect(b"http/1.1").await.expect("connect");
    let resp = exchange(&mut conn, HEALTHZ).await.expect("first request");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Idle for longer than the header timeout: still open, the clock starts at the first byte.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let first_byte = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(conn);
    let trickle = tokio::spawn(async move {
        for b in head.iter() {
            if wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Never finish the head.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return first_byte.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    let after = closed.expect("a trickled request head must be cut off at --header-timeout");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed {after:?} after the first byte, header timeout 1s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_goaway_after_the_idle_timeout() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    let srv = Server::start("", &["--idle-timeout", "2s"], "info");
    let tls = srv.connect(b"h2").await.expect("connect");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    for _ in 0..3 {
        let req = hyper::Request::get(srv.url("/healthz"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.expect("h2 request");
        assert_eq!(resp.status(), 200);
    }
    let idle = Instant::now();
    // The client connection ends when the server's GOAWAY arrives and no stream is open.
    let ended = tokio::time::timeout(Duration::from_secs(6), conn).await;
    let after = idle.elapsed();
    assert!(
        ended.is_ok(),
        "an idle h2 connection must get GOAWAY after --idle-timeout"
    );
    assert!(
        after >= Duration::from_millis(1800) && after < Duration::from_secs(4),
        "ended after {after:?}, idle timeout 2s"
    );
}

/// N idle connections (each after one request, as a pooling client leaves them) stay within a
/// memory bound; reviews are served on them meanwhile; connections past the cap are closed at
/// once while the held ones keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_capped_and_cheap_and_reviews_go_on() {
    const N: usize = 500;
    let srv = Server::start(
        "",
        &[
            "--max-connections",
            "500",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "info",
    );
    let body = review("CREATE", Some(&object(ROLE)), None);
    // Warm up (allocator arenas, TLS, the state) before the baseline.
    let mut first = srv.connect(b"http/1.1").await.expect("connect");
    for _ in 0..20 {
        let r = exchange(&mut first, &post_validate(&body))
            .await
            .expect("warm");
        assert!(r.contains(r#""allowed":true"#), "{r}");
    }
    let before = srv.rss_kib();
    let mut held = vec![first];
    while held.len() < N {
        let mut c = srv
            .connect(b"http/1.1")
            .await
            .expect("connect below the cap");
        let r = exchange(&mut c, HEALTHZ)
            .await
            .expect("request below the cap");
        assert!(r.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    let after = srv.rss_kib();
    let per_conn = (after.saturating_sub(before)) * 1024 / N as u64;
    eprintln!("RSS {before} KiB -> {after} KiB with {N} idle connections ({per_conn} B each)");
    // The stated bound: 64 KiB per idle connection (about 22 KiB measured).
    assert!(
        after < before + 64 * N as u64,
        "RSS grew by {} KiB for {N} idle connections",
        after - before
    );
    assert_eq!(
        srv.metric("secretscope_open_connections").await,
        Some(N as f64)
    );

    // Past the cap: accepted and closed before the TLS handshake completes.
    for _ in 0..3 {
        assert!(
            srv.connect(b"http/1.1").await.is_err(),
            "a connection past --max-connections must be refused"
        );
    }
    assert_eq!(
        srv.metric("secretscope_connections_rejected_total").await,
        Some(3.0)
    );
    // The held ones keep working: reviews on a spread of them.
    for i in (0..N).step_by(50) {
        let r = exchange(&mut held[i], &post_validate(&body))
            .await
            .expect("review on a held connection");
        assert!(r.contains(r#""allowed":true"#), "{r}");
    }
    // Closing some frees room for new ones.
    held.truncate(N - 10);
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut c) = srv.connect(b"http/1.1").await {
            if exchange(&mut c, HEALTHZ).await.is_ok() {
                break;
            }
        }
        assert!(
            Instant::now() < until,
            "room freed by closed connections not reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_connections_have_tcp_nodelay() {
    let srv = Server::start("", &[], "info,secretscope::server::conn=debug");
    let mut conn = srv.connect(b"http/1.1").await.expect("connect");
    exchange(&mut conn, HEALTHZ).await.expect("request");
    // Logged from getsockopt(TCP_NODELAY) on the server's end of this connection.
    let line = srv
        .wait_for_log("connection accepted", Duration::from_secs(5))
        .expect("accept logged at debug");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["nodelay"], true, "{line}");
}

/// The status line and the value of one header of a raw response.
fn status_and(response: &str, header: &str) -> (String, Option<String>) {
    let status = response.lines().next().unwrap_or_default().to_string();
    let value = response.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(header).then(|| v.trim().to_string())
    });
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_answers_its_methods_and_an_oversized_body_is_refused_unread() {
    let srv = Server::start(ROLE, &["--request-timeout", "30s"], "info");
    let mut conn = srv.connect(b"http/1.1").await.expect("connect");
    let ask = |method: &str, path: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
    };
    for (method, path, status, allow) in [
        ("GET", "/validate", "405", Some("POST")),
        ("PUT", "/mutate", "405", Some("POST")),
        ("POST", "/healthz", "405", Some("GET, HEAD")),
        ("DELETE", "/readyz", "405", Some("GET, HEAD")),
        ("GET", "/metrics", "404", None),
        ("GET", "/validate/x", "404", None),
        ("GET", "/healthz", "200", None),
        ("GET", "/readyz?verbose", "200", None),
        // The API server appends its timeout to the webhook's path.
        ("POST", "/validate?timeout=5s", "400", None),
    ] {
        let response = exchange(&mut conn, ask(method, path).as_bytes())
            .await
            .expect("answered on the same connection");
        let (line, allowed) = status_and(&response, "allow");
        assert!(line.contains(status), "{method} {path}: {response}");
        assert_eq!(allowed.as_deref(), allow, "{method} {path}: {response}");
    }
    let mut with_query = post_validate(&review("CREATE", Some(&object(ROLE)), None));
    with_query.splice(
        .."POST /validate".len(),
        b"POST /validate?timeout=5s".iter().copied(),
    );
    let ok = exchange(&mut conn, &with_query).await.expect("review");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains(r#""allowed":true"#), "{ok}");

    // HEAD: the status and headers of GET, no body, on every path and over HTTP/2 too (where
    // DATA on a HEAD is a protocol error the client resets the stream for).
    let h2 = common::client(&srv.certs.ca_pem(), &[b"h2"], None);
    for (path, status) in [("/healthz", 200), ("/validate", 405), ("/nope", 404)] {
        let r = h2.head(srv.url(path)).send().await.expect("HEAD");
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), status, "HEAD {path}");
        let len = r.headers().get("content-length").cloned();
        assert!(r.bytes().await.expect("no reset").is_empty(), "HEAD {path}");
        if path == "/healthz" {
            assert_eq!(len.as_ref().and_then(|v| v.to_str().ok()), Some("2"));
        }
    }

    // A declared length past the 3 MiB limit is refused before any of it is sent: not after
    // waiting out --request-timeout for a body that never comes.
    let mut conn = srv.connect(b"http/1.1").await.expect("connect");
    let started = Instant::now();
    let refused = exchange(
        &mut conn,
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3145729\r\n\r\n",
    )
    .await
    .expect("answered");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains("larger than 3 MiB"), "{refused}");

    // With no declared length (chunked), refused once the bytes read pass the limit; the
    // terminating chunk is never needed. Written beside the read: the server may close before
    // the client has written it all.
    let conn = srv.connect(b"http/1.1").await.expect("connect");
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        for _ in 0..4 {
            let mut chunk = format!("{:x}\r\n", 1 << 20).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 1 << 20));
            chunk.extend_from_slice(b"\r\n");
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.flush().await;
        wr
    });
    let mut refused = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut refused)).await;
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains("larger than 3 MiB"), "{refused}");
    writer.abort();

    // Over HTTP/2, declared and streamed.
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let r = h2
        .post(srv.url("/validate"))
        .body(big.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 413);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    let r = h2
        .post(srv.url("/validate"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server may reset the rest of the stream once it has answered; nothing else passes.
    match r {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            let text = r.text().await.unwrap_or_default();
            assert!(text.contains("larger than 3 MiB"), "{text}");
        }
        Err(e) => assert!(format!("{e:?}").contains("Reset"), "{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_share_one_budget_and_no_room_is_refused_at_once() {
    // A declared length reserves its whole share before a byte of it arrives; a chunked body
    // takes its share as its bytes arrive.
    for declared in [true, false] {
        no_room_is_refused_at_once(declared).await;
    }
}

async fn no_room_is_refused_at_once(declared: bool) {
    let srv = Server::start(
        ROLE,
        &[
            "--body-budget-mib",
            "3",
            "--request-timeout",
            "30s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "info",
    );
    // One client holds all but 1 KiB of the budget and stalls: by declaring that length and
    // sending one byte, or by sending that much of a chunked body.
    let held = 3 * 1024 * 1024 - 1024;
    let mut hog = srv.connect(b"http/1.1").await.expect("connect");
    let head = "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n";
    if declared {
        let head = format!("{head}Content-Length: {held}\r\n\r\n ");
        hog.write_all(head.as_bytes()).await.unwrap();
    } else {
        let head = format!("{head}Transfer-Encoding: chunked\r\n\r\n");
        hog.write_all(head.as_bytes()).await.unwrap();
        for size in [1 << 20, 1 << 20, (1 << 20) - 1024] {
            let mut chunk = format!("{size:x}\r\n").into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', size));
            chunk.extend_from_slice(b"\r\n");
            hog.write_all(&chunk).await.unwrap();
        }
    }
    hog.flush().await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = srv.metric("secretscope_request_body_bytes_held").await;
        if now.is_some_and(|b| b >= held as f64) {
            break;
        }
        assert!(Instant::now() < until, "declared {declared}, held: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A 1.7 KB review needs more than is left: refused at once with the reason (over HTTP/2 a
    // stream left unread would stall its whole connection); health still answers.
    let client = srv.client();
    let body = review("CREATE", Some(&object(ROLE)), None);
    let r = client.post(srv.url("/validate")).json(&body).send().await;
    let r = r.expect("answered");
    assert_eq!(r.status(), 503, "declared {declared}");
    assert_eq!(r.headers()["retry-after"], "1");
    let text = r.text().await.unwrap();
    assert!(text.contains("3 MiB of request bodies"), "{text}");
    assert_eq!(
        srv.metric("secretscope_request_bodies_refused_total").await,
        Some(1.0)
    );
    assert_eq!(srv.health(&client).await, 200);
    // The hog goes; its share returns and the review is answered.
    drop(hog);
    let until = Instant::now() + Duration::from_secs(5);
    while srv.metric("secretscope_request_body_bytes_held").await != Some(0.0) {
        assert!(Instant::now() < until, "the hog's share was not returned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client.post(srv.url("/validate")).json(&body).send().await;
    let r = r.expect("answered");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["response"]["allowed"], true, "{v}");
}

/// A ClusterRole with `rules` rules: a big body that takes a while to decode and judge whatever
/// the engine's indexes.
fn big_role(rules: usize) -> Value {
    let rules: Vec<Value> = (0..rules)
        .map(|i| {
            serde_json::json!({"apiGroups": [format!("g{i}.example.com")],
                "resources": [format!("r{i}"), format!("s{i}")],
                "verbs": ["get", "list", "watch"], "resourceNames": [format!("n{i}")]})
        })
        .collect();
    let mut role = object(ROLE);
    role["metadata"]["name"] = "big".into();
    role["rules"] = Value::Array(rules);
    role
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_past_the_deadline_is_denied_and_health_still_answers() {
    let srv = Server::start(
        "",
        &[
            "--review-deadline",
            "5ms",
            "--judges",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        "info",
    );
    assert_eq!(
        srv.metric("secretscope_review_timeouts_total").await,
        Some(0.0)
    );
    let client = srv.client();
    let body = review("CREATE", Some(&big_role(20_000)), None);
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(bytes.len() < 3 * 1024 * 1024);
    let slow = {
        let (client, url) = (client.clone(), srv.url("/validate"));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(bytes)
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 200);
            (started.elapsed(), r.json::<Value>().await.expect("review"))
        })
    };
    // The async workers stay free while the judge works.
    for _ in 0..5 {
        assert_eq!(srv.health(&client).await, 200);
    }
    let (took, out) = slow.await.expect("slow review");
    let r = &out["response"];
    assert_eq!(r["uid"], body["request"]["uid"], "uid echoed");
    assert_eq!(r["allowed"], false, "{out}");
    let msg = r["status"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(
            "secretscope: this review took longer than 5ms to judge and was denied (fail closed)"
        ),
        "{msg}"
    );
    // Answered at the deadline, not when judging ends (the upload itself takes a moment).
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        srv.metric("secretscope_review_timeouts_total").await,
        Some(1.0)
    );
    assert!(srv
        .wait_for_log(
            "review not judged in time; denied (fail closed)",
            Duration::from_secs(2)
        )
        .is_some());
}

#[test]
fn sigterm_keeps_serving_through_the_delay_then_drains_and_exits() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut srv = Server::start(
        "",
        &["--shutdown-delay", "2s", "--shutdown-grace", "2s"],
        "info",
    );
    let body = review("CREATE", Some(&object(ROLE)), None);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let sigterm_at = Arc::new(Mutex::new(None::<Instant>));
    let mut workers = Vec::new();
    for worker in 0..3 {
        // Two pooled clients (h2 and h1.1) and one that connects anew for every review.
        let (stop, ok, refused, sigterm_at) = (
            stop.clone(),
            ok.clone(),
            refused.clone(),
            sigterm_at.clone(),
        );
        let (url, body, ca) = (srv.url("/validate"), body.clone(), srv.certs.ca_pem());
        workers.push(rt.spawn(async move {
            let alpn: &[&[u8]] = if worker == 1 {
                &[b"http/1.1"]
            } else {
                &[b"h2"]
            };
            let mut client = common::client(&ca, alpn, None);
            while !stop.load(Ordering::Relaxed) {
                if worker == 2 {
                    client = common::client(&ca, alpn, None);
                }
                let sent = Instant::now();
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        let since = sigterm_at.lock().unwrap().map(|t| sent.duration_since(t));
                        refused.lock().unwrap().push(format!(
                            "worker {worker}, {since:?} after SIGTERM: {other:?}"
                        ));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let at = Instant::now();
    *sigterm_at.lock().unwrap() = Some(at);
    let status = Command::new("kill")
        .args(["-TERM", &srv.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    // /readyz fails at once, while reviews are still served.
    let readyz = rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        srv.client().get(srv.url("/readyz")).send().await
    });
    assert_eq!(readyz.expect("readyz during the delay").status(), 503);
    let before = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1700));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        rt.block_on(w).expect("worker");
    }
    let during = ok.load(Ordering::Relaxed) - before;
    let refused = refused.lock().unwrap().clone();
    assert!(refused.is_empty(), "refused during the delay: {refused:#?}");
    assert!(during > 20, "only {during} reviews during the delay");

    let exited = loop {
        if let Some(s) = srv.child.try_wait().expect("wait") {
            break (s, at.elapsed());
        }
        assert!(
            at.elapsed() < Duration::from_secs(8),
            "did not exit after delay + grace"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exited.0.success(), "exit status {:?}", exited.0);
    assert!(
        exited.1 >= Duration::from_secs(2) && exited.1 < Duration::from_millis(4500),
        "exited {:?} after SIGTERM; delay 2s, grace 2s",
        exited.1
    );
    let logs = srv.logs();
    assert!(
        logs.iter().any(|l| l.contains("stopped accepting")),
        "{logs:?}"
    );
}
