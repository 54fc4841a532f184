//! Harness for tests that run the real `secretscope` binary: dev certificates made by the
//! binary itself, a real HTTPS client that trusts only that CA, real AdmissionReview JSON.

#![allow(dead_code)] // each test file uses part of the harness

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_secretscope");

pub fn bin() -> Command {
    Command::new(BIN)
}

/// A temporary directory with dev certificates made by `secretscope certs`.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = bin()
            .args(["certs", "--dns", "localhost", "--ip", "127.0.0.1", "--out"])
            .arg(dir.path())
            .output()
            .expect("run secretscope certs");
        assert!(
            out.status.success(),
            "certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.crt")).expect("ca.crt")
    }
}

/// Where a webhook under test gets its RBAC state.
pub enum Source<'a> {
    /// Manifest YAML, `serve --standalone --state`.
    Standalone(&'a str),
    /// A kubeconfig (YAML text) for `serve` against a (fake) API server.
    Cluster(&'a str),
}

/// The value of the first sample whose line starts with `prefix` on the `/metrics` page at `url`.
pub async fn scrape_metric(client: &reqwest::Client, url: &str, prefix: &str) -> Option<f64> {
    let text = scrape(client, url).await?;
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

/// The whole `/metrics` page at `url`.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Option<String> {
    client.get(url).send().await.ok()?.text().await.ok()
}

/// Spawns a `secretscope serve` command (stderr piped, JSON logs) and waits until it announces
/// its address: the child, the address and its log lines as they arrive.
pub fn spawn_serve(cmd: &mut Command) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn secretscope serve");
    let stderr = child.stderr.take().expect("stderr");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(addr) = v.get("addr").and_then(|a| a.as_str()) {
                    let _ = tx.send(addr.to_string());
                }
            }
            sink.lock().map(|mut l| l.push(line)).ok();
        }
    });
    // Generous: a debug build on a loaded 2-core machine.
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (child, addr, logs),
        Err(_) => {
            let _ = child.kill();
            panic!(
                "webhook did not start: {:?}",
                logs.lock().map(|l| l.clone())
            );
        }
    }
}

/// A running `secretscope serve`, killed on drop.
pub struct Webhook {
    pub child: Child,
    pub addr: String,
    pub certs: Certs,
    pub logs: Arc<Mutex<Vec<String>>>,
    _files: tempfile::TempDir,
}

impl Webhook {
    /// Starts `serve --standalone` with `state` (manifest YAML) and `policy` (YAML, may be empty).
    pub fn start(state: &str, policy: &str, extra: &[&str]) -> Self {
        let certs = Certs::new();
        let tls = (certs.path("tls.crt"), certs.path("tls.key"));
        Self::launch(Source::Standalone(state), policy, extra, certs, tls)
    }

    /// Starts `serve` against the cluster that `kubeconfig` (YAML text) points at.
    pub fn start_cluster(kubeconfig: &str, policy: &str, extra: &[&str]) -> Self {
        let certs = Certs::new();
        let tls = (certs.path("tls.crt"), certs.path("tls.key"));
        Self::launch(Source::Cluster(kubeconfig), policy, extra, certs, tls)
    }

    /// Like `start`, serving the certificate and key at `tls` (clients trust `certs`' CA).
    pub fn launch(
        source: Source<'_>,
        policy: &str,
        extra: &[&str],
        certs: Certs,
        tls: (PathBuf, PathBuf),
    ) -> Self {
        let files = tempfile::tempdir().expect("tempdir");
        let policy_path = files.path().join("secretscope.yaml");
        std::fs::write(&policy_path, policy).expect("write policy");
        let mut cmd = bin();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
        match source {
            Source::Standalone(state) => {
                let state_path = files.path().join("state.yaml");
                std::fs::write(&state_path, state).expect("write state");
                cmd.arg("--standalone").arg("--state").arg(&state_path);
            }
            Source::Cluster(kubeconfig) => {
                let path = files.path().join("kubeconfig");
                std::fs::write(&path, kubeconfig).expect("write kubeconfig");
                cmd.env("KUBECONFIG", &path);
            }
        }
        cmd.arg("--config")
            .arg(&policy_path)
            .arg("--tls-cert")
            .arg(&tls.0)
            .arg("--tls-key")
            .arg(&tls.1)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (child, addr, logs) = spawn_serve(&mut cmd);
        Self {
            child,
            addr,
            certs,
            logs,
            _files: files,
        }
    }

    pub fn url(&self, path: &str) -> String {
        // The certificate is for localhost and 127.0.0.1; connect by name to check SANs.
        let port = self.addr.rsplit(':').next().unwrap_or_default();
        format!("https://localhost:{port}{path}")
    }

    pub fn client(&self) -> reqwest::Client {
        client(&self.certs.ca_pem(), &[b"h2", b"http/1.1"], None)
    }

    /// The plain-HTTP metrics address, when started with `--metrics-listen`.
    pub fn metrics_url(&self) -> Option<String> {
        self.logs().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some(format!(
                "http://{}/metrics",
                v.get("metrics_addr")?.as_str()?
            ))
        })
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.logs().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The value of the first sample whose line starts with `prefix` (name and labels).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        scrape_metric(&self.client(), &self.metrics_url()?, prefix).await
    }

    /// POSTs an AdmissionReview to `path` and returns the response review.
    pub async fn post_review(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST review");
        assert_eq!(resp.status(), 200, "status");
        resp.json().await.expect("AdmissionReview JSON")
    }

    pub async fn review(&self, body: &Value) -> Value {
        self.post_review("/validate", body).await
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client that trusts only `ca_pem`, offering `alpn`, optionally limited to one TLS version.
pub fn client(
    ca_pem: &[u8],
    alpn: &[&[u8]],
    version: Option<&'static rustls::SupportedProtocolVersion>,
) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = match version {
        Some(v) => vec![v],
        None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// An HTTPS client presenting `identity` (PEM certificate followed by its key) as a client
/// certificate, as the API server does when the webhook requires one.
pub fn client_with_identity(ca_pem: &[u8], identity_pem: &[u8]) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(identity_pem)
        .collect::<Result<_, _>>()
        .expect("client cert");
    let key = PrivateKeyDer::from_pem_slice(identity_pem).expect("client key");
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// Converts manifest YAML into the JSON object an API server would put in `request.object`,
/// with server-populated metadata (uid, managedFields, ...) that the webhook must skip over.
pub fn object(yaml: &str) -> Value {
    let mut v: Value =
        serde_saphyr::from_str_with_options(yaml, serde_saphyr::options! { strict_booleans: true })
            .expect("test manifest");
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert("uid".into(), json!("0b6a5ba2-36d3-4d6c-9a3b-5b8b35c7ad10"));
        meta.insert("resourceVersion".into(), json!("48213"));
        meta.insert("creationTimestamp".into(), json!("2026-11-23T02:00:00Z"));
        meta.insert(
            "managedFields".into(),
            json!([{"manager": "kubectl-client-side-apply", "operation": "Update",
                    "apiVersion": "rbac.authorization.k8s.io/v1", "time": "2026-11-23T02:00:00Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}}}]),
        );
    }
    v
}

/// A full AdmissionReview request as the API server sends it.
pub fn review(operation: &str, new: Option<&Value>, old: Option<&Value>) -> Value {
    let obj = new.or(old).expect("an object");
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"].clone();
    let resource = match kind.as_str() {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Namespace" => "namespaces",
        _ => "unknown",
    };
    let group = obj["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map_or("", |(g, _)| g)
        .to_string();
    let mut req = json!({
        "uid": format!("uid-{}", std::process::id()),
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "requestKind": {"group": group, "version": "v1", "kind": kind},
        "requestResource": {"group": group, "version": "v1", "resource": resource},
        "name": name,
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
        "object": new,
        "oldObject": old,
        "dryRun": false,
        "options": {"kind": format!("{}Options", operation.to_lowercase()), "apiVersion": "meta.k8s.io/v1"}
    });
    if let Some(ns) = obj["metadata"].get("namespace") {
        req["namespace"] = ns.clone();
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

pub fn corpus_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/rbac");
    dir.is_dir().then_some(dir)
}
