//! Harness for tests against a real control plane: etcd, kube-apiserver and
//! kube-controller-manager, built from the Go modules pinned in `tests/controlplane/` and run on
//! loopback with certificates made here.
//!
//! One control plane per test binary, started on first use by [`control_plane`] and stopped
//! when the test process ends. Its processes are started from one long-lived thread with
//! `PR_SET_PDEATHSIG`, so the kernel kills them even if the test process is killed; an `atexit`
//! handler also kills them and removes the run directory on a normal exit. Every run uses fresh
//! ports and a fresh directory, so leftovers of an earlier run cannot interfere.
//! [`ControlPlane::start_private`] / [`private_control_plane`] start another one, apart, for
//! tests that stop and restart its API server ([`ControlPlane::restart_apiserver`]). Tests that
//! change what every test of the control plane sees (webhook configurations, bindings of the
//! aggregated roles) hold [`exclusive`].
//!
//! Without Go the binaries cannot be built: with `CI=true` that fails the test, otherwise the
//! test prints what is missing and returns early (see [`control_plane`]).
//!
//! Environment:
//! - `SECRETSCOPE_CONTROLPLANE_BIN`: a directory already holding `etcd`, `kube-apiserver` and
//!   `kube-controller-manager` (and `kubectl`, else the one on PATH is used); skips
//!   `tests/controlplane/build.sh`.
//! - `SECRETSCOPE_KEEP_CONTROLPLANE=1`: keep the run directory (certificates, kubeconfig, logs).

#![allow(dead_code)] // each test file uses part of the harness

use std::ffi::{c_int, c_ulong};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

/// How long each stage of start-up may take (a loaded 2-core machine needs ~10-30 s in all).
const ETCD_READY: Duration = Duration::from_secs(30);
const APISERVER_READY: Duration = Duration::from_secs(120);
const CONTROLLER_MANAGER_READY: Duration = Duration::from_secs(90);
/// Start-up is retried with fresh ports when a port picked as free was taken meanwhile.
const ATTEMPTS: usize = 3;
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A running control plane. Clients are made per call: a `kube::Client` belongs to the Tokio
/// runtime it was made on, and each `#[tokio::test]` has its own.
pub struct ControlPlane {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The run directory: certificates, kubeconfig, etcd data, logs.
    pub dir: PathBuf,
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// The cluster CA (it signed the API server's serving certificate and the client certificates).
    pub ca_pem: String,
    /// An admin kubeconfig (client certificate, O=system:masters), also written to `kubeconfig_path`.
    pub kubeconfig: String,
    pub kubeconfig_path: PathBuf,
    /// `kubectl version`-style `gitVersion` of the API server.
    pub version: String,
    /// How long start-up took (after the binaries were built).
    pub startup: Duration,
    /// kubectl of the same release (built by `build.sh`), or from PATH with
    /// `SECRETSCOPE_CONTROLPLANE_BIN` when that directory has none.
    pub kubectl_bin: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    apiserver: Mutex<Component>,
    controller_manager: Mutex<Component>,
}

enum Unavailable {
    /// A tool is missing: skip unless CI.
    Missing(String),
    /// Present but broken: always a failure.
    Failed(String),
}

static CONTROL_PLANE: OnceLock<Result<ControlPlane, Unavailable>> = OnceLock::new();

/// The control plane of this test binary, started on first call (which blocks until it is ready:
/// up to a few minutes when the binaries must first be built).
///
/// `None` means the test should return early: the Go toolchain is missing and this is not CI (the
/// reason is printed). With `CI=true` a missing toolchain panics instead, as does any failure to
/// build or start.
pub fn control_plane() -> Option<&'static ControlPlane> {
    match CONTROL_PLANE.get_or_init(start_on_spawner_thread) {
        Ok(cp) => Some(cp),
        Err(Unavailable::Failed(why)) => panic!("real control plane: {why}"),
        Err(Unavailable::Missing(why)) if is_ci() => {
            panic!("real control plane: {why}\n(CI is set, so a missing tool is a failure, not a skip)")
        }
        Err(Unavailable::Missing(why)) => {
            // Past libtest's output capture, so a skip is visible in a plain `cargo test`.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (real control plane unavailable): {why}"
            );
            None
        }
    }
}

fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

impl ControlPlane {
    /// A client with cluster-admin rights (client certificate in group `system:masters`).
    pub async fn admin_client(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A kubeconfig (YAML text) authenticating with a bearer token.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        kubeconfig_yaml(&self.server, &self.ca_pem, &format!("    token: {token}\n"))
    }

    /// A kubeconfig (YAML text) authenticating with a client certificate for `user`, in `group`
    /// if given (certificate subject CN=user, O=group).
    pub fn kubeconfig_for_user(&self, user: &str, group: Option<&str>) -> String {
        let (cert, key) = client_cert(&self.issuer, user, group).expect("client certificate");
        kubeconfig_yaml(&self.server, &self.ca_pem, &client_cert_auth(&cert, &key))
    }

    /// A serving certificate and key (PEM) for `names` (DNS names or IP addresses), signed by the
    /// cluster CA: e.g. for a webhook the API server calls, with `ca_pem` as its `caBundle`.
    pub fn serving_cert(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        serving_cert(&self.issuer, names).expect("serving certificate")
    }

    /// A client authenticating with a bearer token.
    pub async fn client_with_token(&self, token: &str) -> Client {
        client_from_kubeconfig(&self.kubeconfig_with_token(token)).await
    }

    /// A client without credentials (the API server sees `system:anonymous`).
    pub async fn anonymous_client(&self) -> Client {
        client_from_kubeconfig(&kubeconfig_yaml(&self.server, &self.ca_pem, "    {}\n")).await
    }

    /// A client authenticating as `user` (in `group`) with a client certificate.
    pub async fn client_for_user(&self, user: &str, group: Option<&str>) -> Client {
        client_from_kubeconfig(&self.kubeconfig_for_user(user, group)).await
    }

    /// A bearer token for ServiceAccount `namespace/name` (which must exist), from the
    /// TokenRequest API, valid for an hour, for the API server's audience.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin_client().await, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None, // the API server's own
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
        response
            .status
            .and_then(|s| s.token)
            .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name}: no token in status"))
    }

    /// The last `lines` lines of a component's log (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`), for failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        tail(&self.dir.join(format!("{component}.log")), lines)
    }
}

/// A name no other test of this run (or an earlier run against the same cluster) has used.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{:x}",
        N.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfffff
    )
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `timeout`; panics naming
/// `what` when time runs out.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client_from_kubeconfig(yaml: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(yaml).expect("parse kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to client config");
    Client::try_from(config).expect("kube client")
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n{user}contexts:\n\
         - name: real\n  context:\n    cluster: real\n    user: user\n    namespace: default\n\
         current-context: real\n",
        ca = b64(ca_pem.as_bytes()),
    )
}

fn client_cert_auth(cert_pem: &str, key_pem: &str) -> String {
    format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(cert_pem.as_bytes()),
        b64(key_pem.as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// Certificates

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    serving: (String, String),
    admin: (String, String),
    /// The ServiceAccount token signing key (ECDSA P-256, PKCS#8) and its public key.
    sa_key_pem: String,
    sa_pub_pem: String,
}

fn pki() -> Result<Pki, rcgen::Error> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "secretscope test cluster CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);

    let serving = serving_cert(
        &issuer,
        [
            "localhost",
            "127.0.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "10.0.0.1",
        ]
        .map(String::from)
        .to_vec(),
    )?;

    let admin = client_cert(&issuer, "secretscope-test-admin", Some("system:masters"))?;
    let sa = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    Ok(Pki {
        ca_pem,
        serving,
        admin,
        sa_key_pem: sa.serialize_pem(),
        sa_pub_pem: sa.public_key_pem(),
        issuer,
    })
}

/// A serving certificate and key (PEM) for `names`, CN the first name.
fn serving_cert(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cn = names.first().cloned().unwrap_or_default();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok((params.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
}

/// A client certificate and key (PEM) for `user` in `group`.
fn client_cert(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    group: Option<&str>,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    if let Some(group) = group {
        params
            .distinguished_name
            .push(DnType::OrganizationName, group);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok((params.signed_by(&key, issuer)?.pem(), key.serialize_pem()))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// Every process started, killed by `cleanup` at exit.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
static RUN_DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();

extern "C" {
    fn prctl(option: c_int, ...) -> c_int;
    fn getppid() -> c_int;
    fn atexit(callback: extern "C" fn()) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
}
const PR_SET_PDEATHSIG: c_int = 1;
const SIGKILL: c_ulong = 9;
const ESRCH: i32 = 3;
pub const SIG_KILL: i32 = 9;
pub const SIG_TERM: i32 = 15;

extern "C" fn cleanup() {
    // try_lock: never block process exit on a lock a dying thread may hold.
    if let Ok(mut children) = CHILDREN.try_lock() {
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
    }
    if std::env::var_os("SECRETSCOPE_KEEP_CONTROLPLANE").is_none() {
        if let Some(Ok(dir)) = RUN_DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;
static SPAWNER: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
thread_local! {
    static ON_SPAWNER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on the one thread that starts every process and then lives as long as the test
/// process: the parent-death signal fires when the *thread* that forked a child ends, and
/// libtest ends each test's thread after the test.
fn on_spawner<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    if ON_SPAWNER.with(|c| c.get()) {
        return f();
    }
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("real-control-plane".into())
            .spawn(move || {
                ON_SPAWNER.with(|c| c.set(true));
                // The sender lives in a static, so this never ends; a panicking job must not
                // end it either (that would kill every process started here).
                for job in rx {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the process-starting thread");
        Mutex::new(tx)
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("the process-starting thread is gone");
    rx.recv()
        .expect("a job on the process-starting thread panicked")
}

/// Starts `cmd` so the kernel SIGKILLs it when the test process ends (however it ends), with
/// stdout and stderr appended to `log`. Returns its pid; see [`signal`], [`wait_exit`].
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Result<u32, String> {
    let name = log.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {name}: {e}"))?;
    let file2 = file.try_clone().map_err(|e| format!("{name}: {e}"))?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
    on_spawner(move || {
        let parent = std::process::id() as c_int;
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec, no
        // allocation.
        unsafe {
            cmd.pre_exec(move || {
                if prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect: do not outlive it.
                if getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {:?}: {e}", cmd.get_program()))?;
        let pid = child.id();
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        Ok(pid)
    })
}

fn spawn(cmd: Command, dir: &Path, name: &str) -> Result<u32, String> {
    spawn_logged(cmd, &dir.join(format!("{name}.log")))
}

/// Sends `sig` (e.g. [`SIG_TERM`], [`SIG_KILL`]) to a process started by [`spawn_logged`] that
/// has not been reaped yet (never to a pid that may have been reused).
pub fn signal(pid: u32, sig: i32) {
    let children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(child) = children.iter().find(|c| c.id() == pid) {
        // SAFETY: plain syscall; the child is not reaped (it is still in CHILDREN).
        unsafe { kill(child.id() as c_int, sig) };
    }
}

/// `Some(status)` once the process `pid` started by `spawn` has exited.
pub fn exited(pid: u32) -> Option<std::process::ExitStatus> {
    let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let child = children.iter_mut().find(|c| c.id() == pid)?;
    child.try_wait().ok().flatten()
}

/// Waits up to `timeout` for `pid` to exit; then forgets it. `None`: still running.
pub fn wait_exit(pid: u32, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = exited(pid) {
            CHILDREN
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|c| c.id() != pid);
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn stop(pid: u32, grace: Duration) {
    signal(pid, SIG_TERM);
    if wait_exit(pid, grace).is_none() {
        signal(pid, SIG_KILL);
        let _ = wait_exit(pid, Duration::from_secs(10));
    }
}

fn kill_pids(pids: &[u32]) {
    for &pid in pids {
        signal(pid, SIG_KILL);
        let _ = wait_exit(pid, Duration::from_secs(10));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    // Held together, so the N ports differ.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bind a loopback port: {e}"))?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

// ---------------------------------------------------------------------------------------------
// Start-up

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built binaries: the control plane's and kubectl.
#[derive(Clone)]
struct Binaries {
    dir: PathBuf,
    kubectl: PathBuf,
}

/// The binaries, building them if needed (once per test process).
fn binaries() -> Result<Binaries, Unavailable> {
    static BUILT: OnceLock<Result<Binaries, (bool, String)>> = OnceLock::new();
    match BUILT.get_or_init(|| {
        build_binaries().map_err(|e| match e {
            Unavailable::Missing(why) => (true, why),
            Unavailable::Failed(why) => (false, why),
        })
    }) {
        Ok(b) => Ok(b.clone()),
        Err((true, why)) => Err(Unavailable::Missing(why.clone())),
        Err((false, why)) => Err(Unavailable::Failed(why.clone())),
    }
}

fn build_binaries() -> Result<Binaries, Unavailable> {
    let names = ["etcd", "kube-apiserver", "kube-controller-manager"];
    if let Some(dir) = std::env::var_os("SECRETSCOPE_CONTROLPLANE_BIN") {
        let dir = PathBuf::from(dir);
        // kubectl from there when it has one, else from PATH.
        let kubectl = if dir.join("kubectl").is_file() {
            dir.join("kubectl")
        } else {
            PathBuf::from("kubectl")
        };
        return match names.iter().find(|n| !dir.join(n).is_file()) {
            None => Ok(Binaries { dir, kubectl }),
            Some(n) => Err(Unavailable::Failed(format!(
                "SECRETSCOPE_CONTROLPLANE_BIN={} has no {n}",
                dir.display()
            ))),
        };
    }
    let script = repo_root().join("tests/controlplane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit()) // build progress, past libtest's capture
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Unavailable::Missing(
                "`bash` is not on PATH (needed to run tests/controlplane/build.sh)".into(),
            ))
        }
        Err(e) => {
            return Err(Unavailable::Failed(format!(
                "run {}: {e}",
                script.display()
            )))
        }
    };
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            return Err(Unavailable::Missing(
                "the Go toolchain (`go`, 1.26 or newer) is not on PATH; it builds kube-apiserver, \
                 kube-controller-manager, kubectl and etcd from tests/controlplane/go.mod. Install \
                 it from https://go.dev/dl/ and rerun; `bash tests/controlplane/build.sh` builds \
                 ahead."
                    .into(),
            ))
        }
        _ => {
            return Err(Unavailable::Failed(format!(
                "{} failed ({}); its output is above",
                script.display(),
                out.status
            )))
        }
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    match names
        .iter()
        .chain(&["kubectl"])
        .find(|n| !dir.join(n).is_file())
    {
        None => Ok(Binaries {
            kubectl: dir.join("kubectl"),
            dir,
        }),
        Some(n) => Err(Unavailable::Failed(format!(
            "build.sh printed {:?}, which has no {n}",
            dir.display()
        ))),
    }
}

/// `<tmp>/secretscope-controlplane/<pid>`, made once per process after removing directories of
/// runs whose process is gone; each control plane gets a subdirectory.
fn run_dir() -> Result<PathBuf, String> {
    RUN_DIR
        .get_or_init(|| {
            let root = std::env::temp_dir().join("secretscope-controlplane");
            if let Ok(entries) = std::fs::read_dir(&root) {
                for entry in entries.flatten() {
                    let stale = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                    if stale {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
            let dir = root.join(std::process::id().to_string());
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            // It holds the admin key and the ServiceAccount signing key.
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| format!("chmod {}: {e}", dir.display()))?;
            // SAFETY: registering a plain extern "C" fn, once.
            unsafe { atexit(cleanup) };
            Ok(dir)
        })
        .clone()
}

fn start_on_spawner_thread() -> Result<ControlPlane, Unavailable> {
    on_spawner(|| start("shared"))
}

/// Held by the tests of the shared control plane that change what every other test of it sees
/// (webhook configurations, bindings of the aggregated roles, secretscope's Lease): one such test
/// at a time, and no other test meanwhile if every test takes it. Poisoning is ignored (a
/// failed test has cleaned up by the time its guard drops).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Like [`exclusive`], for [`private_control_plane`].
pub fn private_exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A control plane apart from [`control_plane`]'s, started on first call and shared by the
/// tests that need one of their own (e.g. to restart its API server); they hold
/// [`private_exclusive`].
pub fn private_control_plane() -> Option<&'static ControlPlane> {
    static PRIVATE: OnceLock<Result<ControlPlane, Unavailable>> = OnceLock::new();
    match PRIVATE.get_or_init(|| on_spawner(|| start("private"))) {
        Ok(cp) => Some(cp),
        Err(Unavailable::Failed(why)) => panic!("private control plane: {why}"),
        Err(Unavailable::Missing(why)) if is_ci() => {
            panic!("private control plane: {why}\n(CI is set, so a missing tool is a failure)")
        }
        Err(Unavailable::Missing(why)) => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (real control plane unavailable): {why}"
            );
            None
        }
    }
}

impl ControlPlane {
    /// A control plane of its own (own etcd, API server and controller manager, own CA and
    /// ports), apart from [`control_plane`]'s: for tests that stop or restart parts of it. It
    /// runs until the test process ends. `None`: skip (as for [`control_plane`]).
    pub fn start_private() -> Option<&'static ControlPlane> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("private-{}", N.fetch_add(1, Ordering::Relaxed));
        match on_spawner(move || start(&name)) {
            Ok(cp) => Some(Box::leak(Box::new(cp))),
            Err(Unavailable::Failed(why)) => panic!("private control plane: {why}"),
            Err(Unavailable::Missing(why)) if is_ci() => panic!("private control plane: {why}"),
            Err(Unavailable::Missing(why)) => {
                let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
                None
            }
        }
    }

    /// `kubectl` (of the API server's release when built here) with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        self.kubectl_as(&self.kubeconfig_path)
    }

    /// `kubectl` with the kubeconfig file at `kubeconfig`.
    pub fn kubectl_as(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(&self.kubectl_bin);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Stops kube-apiserver abruptly (SIGKILL: connections and watches cut, as in a crash or
    /// a node loss; a SIGTERM'd one drains for ~30 s while clients hold watches); etcd and the
    /// controller manager keep running. `false` if it was not running.
    pub fn stop_apiserver(&self) -> bool {
        let pid = self
            .apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pid
            .take();
        match pid {
            Some(pid) => {
                signal(pid, SIG_KILL);
                let _ = wait_exit(pid, Duration::from_secs(10));
                true
            }
            None => false,
        }
    }

    /// Starts kube-apiserver again with the flags and port it had, and waits until its
    /// `/readyz` says ok (so it may fail if a post-start hook cannot finish).
    pub async fn start_apiserver(&self) -> Result<(), String> {
        let pid = {
            let mut api = self.apiserver.lock().unwrap_or_else(|e| e.into_inner());
            if api.pid.is_some() {
                return Err("kube-apiserver is already running".into());
            }
            let mut cmd = Command::new(self.bin_dir.join("kube-apiserver"));
            cmd.args(&api.args);
            let pid = spawn(cmd, &self.dir, "kube-apiserver")?;
            api.pid = Some(pid);
            pid
        };
        let admin = self.admin_client().await;
        let ready = || async {
            let req = kube::core::Request::new("")
                .get("readyz", &Default::default())
                .expect("readyz request");
            matches!(admin.request_text(req).await, Ok(body) if body.trim() == "ok")
        };
        wait_ready(&self.dir, "kube-apiserver", pid, APISERVER_READY, ready)
            .await
            .map_err(|e| match e {
                Attempt::PortTaken(why) | Attempt::Failed(why) => why,
            })
    }

    /// Stops kube-controller-manager (SIGKILL): no aggregation, namespace or garbage
    /// collection until [`start_controller_manager`](Self::start_controller_manager).
    pub fn stop_controller_manager(&self) -> bool {
        let pid = self
            .controller_manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pid
            .take();
        match pid {
            Some(pid) => {
                signal(pid, SIG_KILL);
                let _ = wait_exit(pid, Duration::from_secs(10));
                true
            }
            None => false,
        }
    }

    /// Starts kube-controller-manager again with the flags it had (its log is appended to).
    pub fn start_controller_manager(&self) -> Result<(), String> {
        let mut kcm = self
            .controller_manager
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kcm.pid.is_some() {
            return Err("kube-controller-manager is already running".into());
        }
        let mut cmd = Command::new(self.bin_dir.join("kube-controller-manager"));
        cmd.args(&kcm.args);
        kcm.pid = Some(spawn(cmd, &self.dir, "kube-controller-manager")?);
        Ok(())
    }

    /// [`stop_apiserver`](Self::stop_apiserver), `down` of downtime, then
    /// [`start_apiserver`](Self::start_apiserver).
    pub async fn restart_apiserver(&self, down: Duration) -> Result<(), String> {
        self.stop_apiserver();
        tokio::time::sleep(down).await;
        self.start_apiserver().await
    }
}

/// A process of a control plane: its flags, for a restart, and its pid while it runs.
struct Component {
    args: Vec<String>,
    pid: Option<u32>,
}

/// Starts a control plane in `<run dir>/<name>`. Runs on the spawner thread.
fn start(name: &str) -> Result<ControlPlane, Unavailable> {
    let bins = binaries()?;
    let failed = Unavailable::Failed;
    let dir = run_dir().map_err(failed)?.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| failed(format!("create {}: {e}", dir.display())))?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let pki = pki().map_err(|e| failed(format!("certificates: {e}")))?;
    let write = |name: &str, data: &str| {
        std::fs::write(dir.join(name), data).map_err(|e| failed(format!("write {name}: {e}")))
    };
    write("ca.crt", &pki.ca_pem)?;
    write("apiserver.crt", &pki.serving.0)?;
    write("apiserver.key", &pki.serving.1)?;
    write("sa.key", &pki.sa_key_pem)?;
    write("sa.pub", &pki.sa_pub_pem)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("tokio runtime: {e}")))?;
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut pids = Vec::new();
        match runtime.block_on(start_once(&bins.dir, &dir, &pki, attempt, &mut pids)) {
            Ok(up) => {
                let kubeconfig_path = dir.join("admin.kubeconfig");
                write("admin.kubeconfig", &up.kubeconfig)?;
                return Ok(ControlPlane {
                    server: up.server,
                    dir,
                    bin_dir: bins.dir,
                    kubectl_bin: bins.kubectl,
                    ca_pem: pki.ca_pem,
                    kubeconfig: up.kubeconfig,
                    kubeconfig_path,
                    version: up.version,
                    startup: started.elapsed(),
                    issuer: pki.issuer,
                    apiserver: Mutex::new(Component {
                        args: up.apiserver_args,
                        pid: Some(up.apiserver_pid),
                    }),
                    controller_manager: Mutex::new(Component {
                        args: up.kcm_args,
                        pid: Some(up.kcm_pid),
                    }),
                });
            }
            Err(Attempt::PortTaken(why)) => {
                kill_pids(&pids);
                last = why;
            }
            Err(Attempt::Failed(why)) => {
                kill_pids(&pids);
                return Err(failed(why));
            }
        }
    }
    Err(failed(format!(
        "{ATTEMPTS} attempts each found a port taken; last: {last}"
    )))
}

enum Attempt {
    PortTaken(String),
    Failed(String),
}

/// Why `name` (pid) is not up: its exit and log tail, or a timeout.
fn not_up(dir: &Path, name: &str, pid: u32, timeout: Duration) -> Attempt {
    let log = tail(&dir.join(format!("{name}.log")), 40);
    match exited(pid) {
        Some(status) if log.contains("address already in use") => {
            Attempt::PortTaken(format!("{name} {status}: {log}"))
        }
        Some(status) => Attempt::Failed(format!(
            "{name} exited ({status}); last lines of {}/{name}.log:\n{log}",
            dir.display()
        )),
        None => Attempt::Failed(format!(
            "{name} not ready within {timeout:?}; last lines of {}/{name}.log:\n{log}",
            dir.display()
        )),
    }
}

/// Polls `ready` every 200 ms while `pid` runs, for at most `timeout`.
async fn wait_ready<F, Fut>(
    dir: &Path,
    name: &str,
    pid: u32,
    timeout: Duration,
    mut ready: F,
) -> Result<(), Attempt>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if exited(pid).is_some() {
            break;
        }
        if ready().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(not_up(dir, name, pid, timeout))
}

fn etcd_healthy(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut body = String::new();
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && s.read_to_string(&mut body).is_ok()
        && body.contains("\"health\":\"true\"")
}

struct Up {
    server: String,
    kubeconfig: String,
    version: String,
    apiserver_args: Vec<String>,
    apiserver_pid: u32,
    kcm_args: Vec<String>,
    kcm_pid: u32,
}

async fn start_once(
    bin: &Path,
    dir: &Path,
    pki: &Pki,
    attempt: usize,
    pids: &mut Vec<u32>,
) -> Result<Up, Attempt> {
    let failed = Attempt::Failed;
    let [etcd_client, etcd_peer, secure] = free_ports::<3>().map_err(failed)?;
    let d = |name: &str| dir.join(name);

    // etcd: plain HTTP on loopback, data in the run directory, no fsync (throwaway data).
    let data = d(&format!("etcd-data-{attempt}"));
    let client_url = format!("http://127.0.0.1:{etcd_client}");
    let peer_url = format!("http://127.0.0.1:{etcd_peer}");
    let mut etcd = Command::new(bin.join("etcd"));
    etcd.arg("--name=default")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        .arg("--unsafe-no-fsync")
        .arg("--log-level=warn");
    let etcd_pid = spawn(etcd, dir, "etcd").map_err(failed)?;
    pids.push(etcd_pid);
    wait_ready(dir, "etcd", etcd_pid, ETCD_READY, || async {
        tokio::task::spawn_blocking(move || etcd_healthy(etcd_client))
            .await
            .unwrap_or(false)
    })
    .await?;

    let apiserver_args: Vec<String> = vec![
        format!("--etcd-servers={client_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={secure}"),
        format!("--cert-dir={}", d("apiserver-certs").display()),
        format!("--tls-cert-file={}", d("apiserver.crt").display()),
        format!("--tls-private-key-file={}", d("apiserver.key").display()),
        format!("--client-ca-file={}", d("ca.crt").display()),
        "--authorization-mode=Node,RBAC".into(),
        format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
        format!("--service-account-key-file={}", d("sa.pub").display()),
        format!(
            "--service-account-signing-key-file={}",
            d("sa.key").display()
        ),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        // The `kubernetes` Service's endpoints would be 127.0.0.1, which Endpoints validation
        // refuses.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
        "--v=1".into(),
    ];
    let mut apiserver = Command::new(bin.join("kube-apiserver"));
    apiserver.args(&apiserver_args);
    let apiserver_pid = spawn(apiserver, dir, "kube-apiserver").map_err(failed)?;
    pids.push(apiserver_pid);

    let server = format!("https://127.0.0.1:{secure}");
    let kubeconfig = kubeconfig_yaml(
        &server,
        &pki.ca_pem,
        &client_cert_auth(&pki.admin.0, &pki.admin.1),
    );
    let admin = client_from_kubeconfig(&kubeconfig).await;
    let readyz = || async {
        let req = kube::core::Request::new("")
            .get("readyz", &Default::default())
            .expect("readyz request");
        matches!(admin.request_text(req).await, Ok(body) if body.trim() == "ok")
    };
    wait_ready(
        dir,
        "kube-apiserver",
        apiserver_pid,
        APISERVER_READY,
        readyz,
    )
    .await?;
    let version = admin
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .map_err(|e| failed(format!("GET /version: {e}")))?;

    std::fs::write(d("admin.kubeconfig"), &kubeconfig)
        .map_err(|e| failed(format!("write admin.kubeconfig: {e}")))?;
    let kcm_args: Vec<String> = vec![
        format!("--kubeconfig={}", d("admin.kubeconfig").display()),
        "--controllers=clusterrole-aggregation-controller,namespace-controller,\
         garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller"
            .into(),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        "--secure-port=0".into(),
        format!(
            "--service-account-private-key-file={}",
            d("sa.key").display()
        ),
        format!("--root-ca-file={}", d("ca.crt").display()),
        "--v=1".into(),
    ];
    let mut kcm = Command::new(bin.join("kube-controller-manager"));
    kcm.args(&kcm_args);
    let kcm_pid = spawn(kcm, dir, "kube-controller-manager").map_err(failed)?;
    pids.push(kcm_pid);
    // Ready when its controllers have acted: the aggregated `view` role has rules, and the
    // `default` ServiceAccount exists.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let working = || async {
        let aggregated = matches!(roles.get_opt("view").await,
            Ok(Some(r)) if r.rules.as_ref().is_some_and(|rules| !rules.is_empty()));
        aggregated && matches!(accounts.get_opt("default").await, Ok(Some(_)))
    };
    wait_ready(
        dir,
        "kube-controller-manager",
        kcm_pid,
        CONTROLLER_MANAGER_READY,
        working,
    )
    .await?;
    Ok(Up {
        server,
        kubeconfig,
        version,
        apiserver_args,
        apiserver_pid,
        kcm_args,
        kcm_pid,
    })
}
