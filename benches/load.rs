//! Load tool: the real `secretscope serve` over TLS against a baseline measured in the same run.
//!
//! The baseline is what DESIGN.md measures: a bare axum + rustls server (same TLS and HTTP stack,
//! same ALPN) answering every POST with a fixed AdmissionReview response, without reading it.
//! Both run as separate processes; the same client drives both, in turn, on this machine.
//!
//! Two runs per body size:
//! - closed loop: `--connections` h2 connections, each with `--in-flight` requests in flight, for
//!   `--seconds`: maximum throughput and its latency;
//! - open loop at `--rate` requests/s (default 2,000, DESIGN.md's bar): latency measured from each
//!   request's scheduled start, so a stalled server cannot hide its queueing.
//!
//! `cargo bench --bench load` (add `-- --seconds 5 --rate 2000 --connections 4 --in-flight 8`).
//! Sends traffic to 127.0.0.1 only and stops by itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;

#[path = "common/args.rs"]
mod args;
#[path = "common/bodies.rs"]
mod bodies;

use args::{benchmarking, flag};

const BASELINE_ENV: &str = "SECRETSCOPE_LOAD_BASELINE";

struct Opts {
    seconds: u64,
    rate: u64,
    connections: usize,
    in_flight: usize,
}

fn opts() -> Opts {
    Opts {
        seconds: flag("--seconds", 5),
        rate: flag("--rate", 2000),
        connections: flag("--connections", 4) as usize,
        in_flight: flag("--in-flight", 8) as usize,
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::var(BASELINE_ENV).is_ok() {
        return baseline_server();
    }
    if !benchmarking() {
        return Ok(());
    }
    let o = opts();
    let dir = tempfile::tempdir()?;
    let issued =
        secretscope::cli::certs::issue(&["localhost".to_string()], &["127.0.0.1".parse()?], 1)?;
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &issued.cert_pem)?;
    std::fs::write(&key, &issued.key_pem)?;

    let mut real = Command::new(env!("CARGO_BIN_EXE_secretscope"));
    real.args([
        "serve",
        "--standalone",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ])
    .arg("--tls-cert")
    .arg(&cert)
    .arg("--tls-key")
    .arg(&key);
    for p in bodies::state_paths() {
        real.arg("--state").arg(p);
    }
    real.env("RUST_LOG", "secretscope::server=info,warn");
    let mut base = Command::new(std::env::current_exe()?);
    base.env(BASELINE_ENV, "1")
        .env("CERT", &cert)
        .env("KEY", &key);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "load: {}s per run, closed loop {} connections x {} in flight, open loop {} req/s",
        o.seconds, o.connections, o.in_flight, o.rate
    );
    for (label, body) in [
        (
            "1.5 KB ClusterRole review",
            bodies::review_body("ingress-nginx", 6, 1),
        ),
        (
            "20 KB ClusterRole review",
            bodies::review_body("ingress-nginx", 60, 25),
        ),
    ] {
        println!("\n== {label} ({} bytes)", body.len());
        let mut results = Vec::new();
        for (name, cmd) in [
            ("baseline (fixed response)", &mut base),
            ("secretscope", &mut real),
        ] {
            let server = Server::start(cmd)?;
            let client = client(&issued.ca_pem)?;
            let url = format!("https://localhost:{}/validate", server.port);
            let closed = rt.block_on(closed_loop(&client, &url, &body, &o))?;
            let open = rt.block_on(open_loop(&client, &url, &body, &o))?;
            println!(
                "{name:<26} closed: {}   open@{}/s: {}",
                closed.line(),
                o.rate,
                open.line()
            );
            results.push((closed, open));
            drop(server);
        }
        let (b, s) = (&results[0], &results[1]);
        println!(
            "{:<26} throughput {:.2}x, closed p50 {:.2}x p99 {:.2}x, open p50 {:.2}x p99 {:.2}x",
            "secretscope / baseline",
            s.0.rps / b.0.rps,
            s.0.p50 / b.0.p50,
            s.0.p99 / b.0.p99,
            s.1.p50 / b.1.p50,
            s.1.p99 / b.1.p99
        );
    }
    Ok(())
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["addr"].as_str().map(String::from))
            {
                let port = addr.rsplit(':').next().unwrap_or_default().parse()?;
                // Keep draining stderr so the server never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return Ok(Self { child, port });
            }
        }
        let _ = child.kill();
        anyhow::bail!("server did not report its address")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(ca_pem: &str) -> anyhow::Result<reqwest::Client> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?)
}

struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

impl Summary {
    fn of(h: &Histogram<u64>, elapsed: Duration, errors: u64) -> Self {
        Self {
            rps: h.len() as f64 / elapsed.as_secs_f64(),
            p50: h.value_at_quantile(0.50) as f64 / 1000.0,
            p99: h.value_at_quantile(0.99) as f64 / 1000.0,
            errors,
        }
    }

    fn line(&self) -> String {
        format!(
            "{:>8.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  errors {}",
            self.rps, self.p50, self.p99, self.errors
        )
    }
}

async fn send(client: &reqwest::Client, url: &str, body: &[u8]) -> bool {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
        _ => false,
    }
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    // Microseconds, 1 µs to 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

async fn finish(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    hist: &Mutex<Histogram<u64>>,
    start: Instant,
    errors: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<Summary> {
    for t in tasks {
        t.await?;
    }
    let h = hist.lock().await;
    Ok(Summary::of(
        &h,
        start.elapsed(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    o: &Opts,
) -> anyhow::Result<Summary> {
    // Warm up connections and caches.
    for _ in 0..200 {
        send(client, url, body).await;
    }
    let hist = Arc::new(Mutex::new(histogram()?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for _ in 0..o.connections * o.in_flight {
        let (client, url, body) = (client.clone(), url.to_string(), body.to_vec());
        let (hist, errors) = (hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            while Instant::now() < end {
                let t = Instant::now();
                if send(&client, &url, &body).await {
                    if let Some(h) = local.as_mut() {
                        let _ = h.record(t.elapsed().as_micros() as u64);
                    }
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            if let Some(h) = local {
                let _ = hist.lock().await.add(h);
            }
        }));
    }
    finish(tasks, &hist, start, &errors).await
}

async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    o: &Opts,
) -> anyhow::Result<Summary> {
    let hist = Arc::new(Mutex::new(histogram()?));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let interval = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
    let total = o.rate * o.seconds;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, url, body) = (client.clone(), url.to_string(), body.to_vec());
        let (hist, errors) = (hist.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            if send(&client, &url, &body).await {
                let _ = hist
                    .lock()
                    .await
                    .record(scheduled.elapsed().as_micros() as u64);
            } else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    finish(tasks, &hist, start, &errors).await
}

/// The baseline: same server stack, a fixed response, the body never read into a JSON value.
fn baseline_server() -> anyhow::Result<()> {
    use axum::routing::post;
    use axum_server::tls_rustls::RustlsConfig;
    let cert = std::env::var("CERT")?;
    let key = std::env::var("KEY")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let files = secretscope::server::tls::TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
        };
        let config = RustlsConfig::from_config(Arc::new(files.load()?));
        const RESPONSE: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;
        let app = axum::Router::new().route(
            "/validate",
            post(|_body: axum::body::Bytes| async {
                ([(axum::http::header::CONTENT_TYPE, "application/json")], RESPONSE)
            }),
        );
        let handle: axum_server::Handle<std::net::SocketAddr> = axum_server::Handle::new();
        let announce = handle.clone();
        tokio::spawn(async move {
            if let Some(addr) = announce.listening().await {
                eprintln!("{{\"addr\":\"{addr}\"}}");
            }
        });
        axum_server::bind_rustls("127.0.0.1:0".parse()?, config)
            .handle(handle)
            .serve(app.into_make_service())
            .await?;
        anyhow::Ok(())
    })
}
