//! Tenancy reconciler and RBAC cache, measured: the real release binary against the in-process
//! fake API server (`tests/fake_apiserver`), each figure beside a baseline from the same run.
//!
//! 1. Namespace created -> Role and RoleBinding present, over `--namespaces` (200) namespaces made
//!    one at a time through the watch alone (no `/mutate` nudge: the slower path). Baseline: a
//!    bare client doing the same two server-side applies itself (the floor for any reconciler).
//! 2. Backfill of `--backfill` (2,000) existing tenancy namespaces at start-up: time from
//!    leadership to the last grant, API requests, resident memory. Baseline: a bare client
//!    applying the same objects with the reconciler's concurrency (16).
//! 3. RBAC cache memory: resident memory once `--rbac-objects` (10,000) ClusterRoles and
//!    ClusterRoleBindings are cached, against the same binary with an empty cluster.
//!
//! `--api-latency-ms N` adds N ms to every API request (a remote API server); default 0.
//! `cargo bench --bench tenancy` (add `-- --namespaces 200 --backfill 2000 --api-latency-ms 2`).

#[path = "common/args.rs"]
mod args;
#[path = "../tests/fake_apiserver/mod.rs"]
mod fake_apiserver;

use args::{benchmarking, flag};

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

const ROLE: &str = "secretscope-secrets";
const POLICY: &str =
    "tenancy:\n  subjects:\n  - {kind: ServiceAccount, name: portal, namespace: platform}\n";

struct Opts {
    namespaces: u64,
    backfill: u64,
    rbac_objects: u64,
    api_latency: Duration,
}

fn opts() -> Opts {
    Opts {
        namespaces: flag("--namespaces", 200),
        backfill: flag("--backfill", 2000),
        rbac_objects: flag("--rbac-objects", 10_000),
        api_latency: Duration::from_millis(flag("--api-latency-ms", 0)),
    }
}

/// `secretscope serve` against `fake`, with its log lines collected.
struct Serve {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Serve {
    fn start(fake: &FakeApiServer, policy: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let issued =
            secretscope::cli::certs::issue(&["localhost".to_string()], &["127.0.0.1".parse()?], 1)?;
        let path = |n: &str| dir.path().join(n);
        std::fs::write(path("tls.crt"), &issued.cert_pem)?;
        std::fs::write(path("tls.key"), &issued.key_pem)?;
        std::fs::write(path("kubeconfig"), fake.kubeconfig())?;
        std::fs::write(path("policy.yaml"), policy)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_secretscope"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--tls-cert")
            .arg(path("tls.crt"))
            .arg("--tls-key")
            .arg(path("tls.key"))
            .arg("--config")
            .arg(path("policy.yaml"))
            .env("KUBECONFIG", path("kubeconfig"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("stderr"))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().map(|mut l| l.push(line)).ok();
            }
        });
        Ok(Self {
            child,
            logs,
            _dir: dir,
        })
    }

    async fn wait_for(&self, needle: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let until = Instant::now() + timeout;
        loop {
            if self
                .logs
                .lock()
                .map(|l| l.iter().any(|line| line.contains(needle)))
                .unwrap_or(false)
            {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "no log line {needle:?} in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Resident set size in MiB (Linux).
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_grant(fake: &FakeApiServer, ns: &str) -> bool {
    fake.get("roles", ns, ROLE).is_some() && fake.get("rolebindings", ns, ROLE).is_some()
}

async fn until_granted(fake: &FakeApiServer, ns: &str) {
    while !has_grant(fake, ns) {
        tokio::time::sleep(Duration::from_micros(250)).await;
    }
}

/// The two applies a reconciler must make for one namespace, by a bare client.
async fn bare_apply(client: &reqwest::Client, url: &str, ns: &str) -> anyhow::Result<()> {
    let labels = json!({"app.kubernetes.io/managed-by": "secretscope"});
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": ROLE, "namespace": ns, "labels": labels},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]});
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": ROLE, "namespace": ns, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": "portal", "namespace": "platform"}]});
    for (resource, body) in [("roles", role), ("rolebindings", binding)] {
        let resp = client
            .patch(format!(
                "{url}/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/{resource}/{ROLE}?fieldManager=bench&force=true"
            ))
            .header("content-type", "application/apply-patch+yaml")
            .body(body.to_string())
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "apply: {}", resp.status());
    }
    Ok(())
}

fn ms(d: u64) -> f64 {
    d as f64 / 1000.0
}

fn report(label: &str, h: &Histogram<u64>, base: &Histogram<u64>) {
    let (p50, p99) = (h.value_at_quantile(0.5), h.value_at_quantile(0.99));
    let (b50, b99) = (base.value_at_quantile(0.5), base.value_at_quantile(0.99));
    println!(
        "{label}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | baseline p50 {:.2} ms, p99 {:.2} ms | ratio p50 {:.1}x, p99 {:.1}x",
        ms(p50),
        ms(p99),
        ms(h.max()),
        ms(b50),
        ms(b99),
        p50 as f64 / b50.max(1) as f64,
        p99 as f64 / b99.max(1) as f64
    );
}

async fn latency(o: &Opts) -> anyhow::Result<()> {
    let fake = FakeApiServer::start().await;
    fake.create_namespace("secretscope", &[]);
    fake.set_latency(o.api_latency);
    let serve = Serve::start(&fake, POLICY)?;
    serve
        .wait_for("leading: reconciling", Duration::from_secs(30))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut h = Histogram::<u64>::new(3)?;
    for i in 0..o.namespaces {
        let ns = format!("az-lat{i}");
        let t0 = Instant::now();
        fake.create_namespace(&ns, &[]);
        tokio::time::timeout(Duration::from_secs(30), until_granted(&fake, &ns)).await?;
        h.record(t0.elapsed().as_micros() as u64)?;
    }
    let client = reqwest::Client::new();
    let mut base = Histogram::<u64>::new(3)?;
    for i in 0..o.namespaces {
        let ns = format!("az-base{i}");
        fake.create_namespace(&ns, &[]);
        let t0 = Instant::now();
        bare_apply(&client, &fake.url, &ns).await?;
        base.record(t0.elapsed().as_micros() as u64)?;
    }
    report(
        &format!(
            "namespace -> Role+RoleBinding ({} namespaces, watch only)",
            o.namespaces
        ),
        &h,
        &base,
    );
    Ok(())
}

async fn backfill(o: &Opts) -> anyhow::Result<()> {
    let fake = FakeApiServer::start().await;
    fake.create_namespace("secretscope", &[]);
    fake.set_latency(o.api_latency);
    let n = o.backfill;
    for i in 0..n {
        fake.create_namespace(&format!("az-bf{i}"), &[]);
    }
    let requests_before = fake.requests.lock().map(|r| r.len()).unwrap_or_default();
    let serve = Serve::start(&fake, POLICY)?;
    let led = serve
        .wait_for("leading: reconciling", Duration::from_secs(30))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // Bindings are applied after their Role: all bindings present means all done.
        let done = fake.count("rolebindings");
        if done as u64 >= n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "backfill incomplete: {done}/{n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = led.elapsed();
    anyhow::ensure!(
        fake.count("roles") as u64 >= n,
        "every namespace has its Role"
    );
    let writes = fake.request_count("PATCH roles") + fake.request_count("PATCH rolebindings");
    let all = fake.requests.lock().map(|r| r.len()).unwrap_or_default() - requests_before;
    let rss = serve.rss_mib();
    drop(serve);

    // Baseline: the same applies from a bare client, 16 at a time.
    let fake2 = FakeApiServer::start().await;
    fake2.set_latency(o.api_latency);
    for i in 0..n {
        fake2.create_namespace(&format!("az-bf{i}"), &[]);
    }
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let (client, url) = (client.clone(), fake2.url.clone());
            async move { bare_apply(&client, &url, &format!("az-bf{i}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    anyhow::ensure!(results.iter().all(Result::is_ok), "baseline applies failed");
    let base = t0.elapsed();
    println!(
        "backfill of {n} namespaces: {:.2} s after leadership ({:.0} namespaces/s), {writes} apply requests, {all} API requests in all, RSS {rss:.1} MiB | baseline {:.2} s ({:.0}/s) | ratio {:.2}x",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        base.as_secs_f64(),
        n as f64 / base.as_secs_f64(),
        took.as_secs_f64() / base.as_secs_f64()
    );
    Ok(())
}

async fn cache_memory(o: &Opts) -> anyhow::Result<()> {
    let empty = FakeApiServer::start().await;
    let serve = Serve::start(&empty, "")?;
    serve
        .wait_for("RBAC cache synced", Duration::from_secs(30))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = serve.rss_mib();
    drop(serve);

    let fake = FakeApiServer::start().await;
    let half = o.rbac_objects / 2;
    for i in 0..half {
        fake.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("role-{i}"), "labels": {"app": format!("app-{}", i % 50)}},
            "rules": [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments", "configmaps"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]}));
        fake.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("binding-{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("role-{i}")},
            "subjects": [{"kind": "ServiceAccount", "name": format!("sa-{i}"), "namespace": "apps"}]}));
    }
    let serve = Serve::start(&fake, "")?;
    serve
        .wait_for("\"objects\":", Duration::from_secs(60))
        .await?;
    // Both kinds synced.
    let until = Instant::now() + Duration::from_secs(60);
    while serve
        .logs
        .lock()
        .map(|l| l.iter().filter(|x| x.contains("RBAC cache synced")).count())
        .unwrap_or(0)
        < 2
    {
        anyhow::ensure!(Instant::now() < until, "cache did not sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = serve.rss_mib();
    println!(
        "RBAC cache of {} objects: RSS {loaded:.1} MiB | baseline (empty cluster) {baseline:.1} MiB | cache cost {:.1} MiB",
        half * 2,
        loaded - baseline
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if !benchmarking() {
        return Ok(());
    }
    let o = opts();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "tenancy: fake API server in process, API latency {:?}",
        o.api_latency
    );
    rt.block_on(async {
        latency(&o).await?;
        backfill(&o).await?;
        cache_memory(&o).await
    })
}
