//! The latency secretscope adds to RBAC writes, measured through a REAL API server (issue 9):
//! etcd + kube-apiserver + kube-controller-manager from `tests/real_apiserver` (built by
//! `tests/controlplane/build.sh`), the release `secretscope` binary against it in cluster mode as
//! its ServiceAccount with exactly `deploy/base/rbac.yaml`'s permissions, serving over TLS with a
//! certificate from the cluster CA.
//!
//! `--creates` (300) sequential ClusterRole CREATEs by the admin client (unique names, one harmless
//! rule: get/list on configmaps; deleted after each phase, untimed) in each of four
//! configurations, interleaved in `--rounds` (3) rounds of creates/rounds each, the order rotating
//! per round so drift of a loaded machine falls on all four alike:
//!
//! - **none**: no admission webhook or policy;
//! - **secretscope**: the ValidatingWebhookConfiguration it registers (`src/cluster/webhooks.yaml`) with only
//!   `clientConfig` replaced (URL of the local secretscope, caBundle the cluster CA);
//! - **kube-rs example**: kube-rs's admission controller example (benches/common/ceiling.rs: it
//!   decodes `AdmissionReview<DynamicObject>`, denies objects labelled `illegal`, admits the rest),
//!   served from this process, registered with the same rules and matchConditions: what any
//!   webhook costs the API server, the floor for secretscope's added latency;
//! - **CEL**: an equivalent ValidatingAdmissionPolicy + binding (admissionregistration.k8s.io/v1):
//!   the same resources, operations and matchConditions, denying a rule that reaches core
//!   Secrets (apiGroups "" or "*", resources secrets or "*", any verb) without resourceNames.
//!
//! After each switch the bench waits until a dry-run probe shows the configuration in effect and
//! makes `--warmup` (10) untimed creates (connections to the webhook established), then times
//! creates/rounds. Prints p50 and p99 per configuration, the added latency over **none**, and the
//! ratios of secretscope-added to CEL-added and to kube-rs-example-added.
//!
//! `make bench-apiserver` (builds the control plane first), or `cargo bench --bench apiserver`
//! (`-- --creates 300 --rounds 3 --warmup 10`). Without Go the control plane cannot be built: the
//! bench says so and exits 0 (with `CI=true` it fails), as the real-cluster tests do.

#[path = "common/args.rs"]
mod args;
#[path = "common/ceiling.rs"]
mod ceiling;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/real_apiserver/mod.rs"]
mod real_apiserver;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use args::{benchmarking, flag};
use base64::Engine as _;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use real_apiserver::ControlPlane;
use serde_json::{json, Value};

const NAMESPACE: &str = "secretscope";
const CEL_NAME: &str = "secretscope-cel-equivalent";
const CEL_MESSAGE: &str = "cel: this role grants access to Secrets without resourceNames";

/// Reaches core Secrets without resourceNames: the gist of secretscope's ClusterRole check, not
/// its whole (no aggregation, bindings, tenancy namespaces or self-protection).
const CEL_EXPRESSION: &str = "!has(object.rules) || !object.rules.exists(r, \
    has(r.apiGroups) && has(r.resources) && \
    r.apiGroups.exists(g, g == '' || g == '*') && \
    r.resources.exists(x, x == 'secrets' || x == '*') && \
    r.verbs.exists(v, v in ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', \
      'deletecollection', '*']) && \
    (!has(r.resourceNames) || size(r.resourceNames) == 0))";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Config {
    None,
    Secretscope,
    Cel,
    KubeRs,
}

const CONFIGS: [Config; 4] = [
    Config::None,
    Config::Secretscope,
    Config::Cel,
    Config::KubeRs,
];

impl Config {
    fn label(self) -> &'static str {
        match self {
            Config::None => "(a) no webhook",
            Config::Secretscope => "(b) secretscope webhook",
            Config::Cel => "(c) CEL ValidatingAdmissionPolicy",
            Config::KubeRs => "(d) kube-rs example webhook",
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    if !benchmarking() {
        return; // `cargo test --benches`
    }
    let creates = flag("--creates", 300).max(1);
    let rounds = flag("--rounds", 3).clamp(1, creates);
    let warmup = flag("--warmup", 10);
    let started = Instant::now();
    // Blocks until the control plane is up (building it first if needed); None: no Go, skipped.
    let Some(cp) = real_apiserver::control_plane() else {
        return;
    };
    println!(
        "control plane {} up in {:.1}s ({})",
        cp.version,
        cp.startup.as_secs_f64(),
        cp.server
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(cp, creates, rounds, warmup));
    println!("total bench time {:.1}s", started.elapsed().as_secs_f64());
}

async fn run(cp: &'static ControlPlane, creates: u64, rounds: u64, warmup: u64) {
    let ss = Secretscope::start(cp).await;
    let admin = cp.admin_client().await;
    // The least any webhook costs the API server: the kube-rs example, served from this process
    // on the same stack with secretscope's serving pair, registered with the same rules and
    // matchConditions.
    let pair = |n: &str| ss.files.path().join(n).display().to_string();
    let example = ceiling::spawn(ceiling::Ceiling::KubeRs, &pair("tls.crt"), &pair("tls.key"))
        .expect("kube-rs example server");
    let webhooks = Webhooks {
        secretscope: webhook_configuration("secretscope", ss.port, &cp.ca_pem),
        example: webhook_configuration("kube-rs-example", example.port(), &cp.ca_pem),
    };
    let mut guard = Registered {
        kubectl: cp.kubectl(),
        armed: true,
    };

    let per_round = creates / rounds;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CONFIGS.len()];
    for round in 0..rounds {
        // The last round takes the remainder, so each configuration gets `creates`.
        let n = if round + 1 == rounds {
            creates - per_round * (rounds - 1)
        } else {
            per_round
        };
        for k in 0..CONFIGS.len() {
            let i = (k + round as usize) % CONFIGS.len();
            let config = CONFIGS[i];
            let switch = Instant::now();
            switch_to(&admin, config, &webhooks).await;
            let switched = switch.elapsed();
            let prefix = format!("bench-{}-r{round}", i);
            let mut names = Vec::new();
            for w in 0..warmup {
                let name = format!("{prefix}-warm-{w}");
                create(&admin, &name).await;
                names.push(name);
            }
            let t = Instant::now();
            for j in 0..n {
                let name = format!("{prefix}-{j}");
                samples[i].push(create(&admin, &name).await);
                names.push(name);
            }
            let took = t.elapsed();
            delete_all(&admin, names).await;
            eprintln!(
                "round {} {:<36} {n} creates in {:.2}s (switch {:.2}s)",
                round + 1,
                config.label(),
                took.as_secs_f64(),
                switched.as_secs_f64()
            );
        }
    }
    switch_to(&admin, Config::None, &webhooks).await;
    guard.disarm();
    drop(ss);
    report(&samples);
}

/// One timed ClusterRole CREATE (a harmless rule); panics if it is refused.
async fn create(admin: &Client, name: &str) -> Duration {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "apiserver"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }))
    .expect("role");
    let t = Instant::now();
    api.create(&PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("create ClusterRole {name}: {e}"));
    t.elapsed()
}

async fn delete_all(admin: &Client, names: Vec<String>) {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    futures::stream::iter(names)
        .map(|name| {
            let api = api.clone();
            async move {
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    eprintln!("delete ClusterRole {name}: {e}");
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: f64) -> String {
    format!("{:.2} ms", d * 1e3)
}

fn report(samples: &[Vec<Duration>]) {
    let stats: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.sort();
            (
                percentile(&s, 0.50).as_secs_f64(),
                percentile(&s, 0.99).as_secs_f64(),
            )
        })
        .collect();
    println!();
    println!(
        "ClusterRole CREATE latency through the real API server ({} creates each, admin client)",
        samples[0].len()
    );
    println!("{:<38} {:>10} {:>10}", "configuration", "p50", "p99");
    for (i, config) in CONFIGS.iter().enumerate() {
        println!(
            "{:<38} {:>10} {:>10}",
            config.label(),
            ms(stats[i].0),
            ms(stats[i].1)
        );
    }
    let added = |i: usize| (stats[i].0 - stats[0].0, stats[i].1 - stats[0].1);
    let (b50, b99) = added(1);
    let (c50, c99) = added(2);
    let (d50, d99) = added(3);
    println!(
        "{:<38} {:>10} {:>10}",
        "added by secretscope (b - a)",
        ms(b50),
        ms(b99)
    );
    println!(
        "{:<38} {:>10} {:>10}",
        "added by CEL (c - a)",
        ms(c50),
        ms(c99)
    );
    println!(
        "{:<38} {:>10} {:>10}",
        "added by the kube-rs example (d - a)",
        ms(d50),
        ms(d99)
    );
    let ratio = |b: f64, c: f64| {
        if c > 0.0 {
            format!("{:.2}x", b / c)
        } else {
            "n/a".to_string() // CEL added nothing measurable
        }
    };
    println!(
        "{:<38} {:>10} {:>10}",
        "ratio secretscope-added / CEL-added",
        ratio(b50, c50),
        ratio(b99, c99)
    );
    println!(
        "{:<38} {:>10} {:>10}",
        "ratio secretscope / kube-rs-added",
        ratio(b50, d50),
        ratio(b99, d99)
    );
}

// ---------------------------------------------------------------------------------------------
// Switching configurations

/// The two webhook configurations the bench switches between.
struct Webhooks {
    secretscope: ValidatingWebhookConfiguration,
    example: ValidatingWebhookConfiguration,
}

/// Registers `hook` when `want`, else removes it.
async fn set_hook(
    hooks: &Api<ValidatingWebhookConfiguration>,
    hook: &ValidatingWebhookConfiguration,
    want: bool,
) {
    let name = hook.metadata.name.clone().expect("webhook name");
    if !want {
        let _ = hooks.delete(&name, &DeleteParams::default()).await;
    } else if hooks.get_opt(&name).await.expect("get webhook").is_none() {
        hooks
            .create(&PostParams::default(), hook)
            .await
            .expect("create ValidatingWebhookConfiguration");
    }
}

/// Makes `config` the one in effect and waits until dry-run probes show it.
async fn switch_to(admin: &Client, config: Config, webhooks: &Webhooks) {
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(admin.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(admin.clone());
    let want_hook = config == Config::Secretscope;
    let want_example = config == Config::KubeRs;
    let want_cel = config == Config::Cel;
    let dp = DeleteParams::default();
    set_hook(&hooks, &webhooks.secretscope, want_hook).await;
    set_hook(&hooks, &webhooks.example, want_example).await;
    if want_cel {
        if policies.get_opt(CEL_NAME).await.expect("get VAP").is_none() {
            policies
                .create(&PostParams::default(), &cel_policy())
                .await
                .expect("create ValidatingAdmissionPolicy");
        }
        if bindings
            .get_opt(CEL_NAME)
            .await
            .expect("get VAPB")
            .is_none()
        {
            bindings
                .create(&PostParams::default(), &cel_binding())
                .await
                .expect("create ValidatingAdmissionPolicyBinding");
        }
    } else {
        let _ = bindings.delete(CEL_NAME, &dp).await;
        let _ = policies.delete(CEL_NAME, &dp).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (hook, cel) = (hook_in_effect(admin).await, cel_in_effect(admin).await);
        let example = example_in_effect(admin).await;
        if hook == want_hook && cel == want_cel && example == want_example {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{config:?} not in effect after 30s (webhook in effect: {hook}, CEL in effect: {cel}, kube-rs example in effect: {example})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A dry-run binding of `cluster-admin` to a user: secretscope always denies it.
async fn hook_in_effect(admin: &Client) -> bool {
    let api: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bench-probe"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench-probe"}],
    }))
    .expect("probe");
    match api.create(&dry_run(), &crb).await {
        Ok(_) => false,
        Err(e) if e.to_string().contains("secretscope") => true,
        Err(e) => panic!("webhook probe: unexpected {e}"),
    }
}

/// A dry-run ClusterRole labelled `illegal`, which the kube-rs example denies.
async fn example_in_effect(admin: &Client) -> bool {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "bench-probe", "labels": {"illegal": "yes"}},
        "rules": [],
    }))
    .expect("probe");
    match api.create(&dry_run(), &role).await {
        Ok(_) => false,
        Err(e) if e.to_string().contains("illegal") => true,
        Err(e) => panic!("kube-rs example probe: unexpected {e}"),
    }
}

/// A dry-run ClusterRole reading Secrets (bound by nobody: secretscope admits it).
async fn cel_in_effect(admin: &Client) -> bool {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    let role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "bench-probe"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    }))
    .expect("probe");
    match api.create(&dry_run(), &role).await {
        Ok(_) => false,
        Err(e) if e.to_string().contains(CEL_MESSAGE) => true,
        Err(e) => panic!("CEL probe: unexpected {e}"),
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

/// The ValidatingWebhookConfiguration secretscope registers (`src/cluster/webhooks.yaml`), `clientConfig` replaced.
fn webhook_configuration(name: &str, port: u16, ca_pem: &str) -> ValidatingWebhookConfiguration {
    let text = std::fs::read_to_string(repo().join("src/cluster/webhooks.yaml")).unwrap();
    let mut doc = yaml_documents(&text)
        .into_iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("a ValidatingWebhookConfiguration in src/cluster/webhooks.yaml");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    for hook in doc["webhooks"].as_array_mut().expect("webhooks") {
        let path = hook["clientConfig"]["service"]["path"]
            .as_str()
            .expect("clientConfig.service.path")
            .to_string();
        hook["clientConfig"] = json!({
            "url": format!("https://127.0.0.1:{port}{path}"),
            "caBundle": ca,
        });
    }
    doc["metadata"]["name"] = json!(name);
    serde_json::from_value(doc).expect("ValidatingWebhookConfiguration")
}

/// The CEL equivalent: what the webhook's rules match (RBAC roles, CREATE/UPDATE), its
/// matchConditions, one validation.
fn cel_policy() -> ValidatingAdmissionPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": CEL_NAME},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": ["clusterroles", "roles"],
            }]},
            "matchConditions": [
                {"name": "not-apiserver-bootstrap",
                 "expression": "request.userInfo.username != 'system:apiserver'"},
                {"name": "not-secretscope-itself",
                 "expression": "request.userInfo.username != 'system:serviceaccount:secretscope:secretscope'"},
            ],
            "validations": [{"expression": CEL_EXPRESSION, "message": CEL_MESSAGE}],
        },
    }))
    .expect("ValidatingAdmissionPolicy")
}

fn cel_binding() -> ValidatingAdmissionPolicyBinding {
    serde_json::from_value(json!({
        "metadata": {"name": CEL_NAME},
        "spec": {"policyName": CEL_NAME, "validationActions": ["Deny"]},
    }))
    .expect("ValidatingAdmissionPolicyBinding")
}

/// Removes whatever configuration is left when the bench panics midway.
struct Registered {
    kubectl: Command,
    armed: bool,
}

impl Registered {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut cmd = Command::new(self.kubectl.get_program());
        cmd.args(self.kubectl.get_args()).args([
            "delete",
            "--ignore-not-found",
            "validatingwebhookconfiguration/secretscope",
            "validatingwebhookconfiguration/kube-rs-example",
            &format!("validatingadmissionpolicybinding/{CEL_NAME}"),
            &format!("validatingadmissionpolicy/{CEL_NAME}"),
        ]);
        let _ = cmd.output();
    }
}

/// The documents of a YAML stream, as JSON values.
fn yaml_documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter(|d| {
            d.lines().any(|l| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// secretscope in the cluster

/// The release binary serving against the cluster as its ServiceAccount (deploy/base's
/// Namespace, ServiceAccount and rbac.yaml applied, a TokenRequest token), stopped on drop.
struct Secretscope {
    pid: u32,
    port: u16,
    log: PathBuf,
    /// Its kubeconfig, policy and serving pair (tls.crt, tls.key), which the example reuses.
    files: tempfile::TempDir,
}

impl Secretscope {
    async fn start(cp: &ControlPlane) -> Self {
        let base = repo().join("deploy/base");
        let mut apply = cp.kubectl();
        apply.arg("apply");
        for f in ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"] {
            apply.arg("-f").arg(base.join(f));
        }
        let out = apply.output().expect("kubectl apply");
        assert!(
            out.status.success(),
            "kubectl apply deploy/base: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = cp.service_account_token(NAMESPACE, "secretscope").await;
        let files = tempfile::tempdir().expect("tempdir");
        let f = |n: &str| files.path().join(n);
        std::fs::write(f("kubeconfig"), cp.kubeconfig_with_token(&token)).unwrap();
        std::fs::write(f("secretscope.yaml"), "").unwrap();
        let (cert, key) = cp.serving_cert(&["localhost", "127.0.0.1"]);
        std::fs::write(f("tls.crt"), cert).unwrap();
        std::fs::write(f("tls.key"), key).unwrap();
        let mut cmd = Command::new(common::BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--config")
            .arg(f("secretscope.yaml"))
            .arg("--tls-cert")
            .arg(f("tls.crt"))
            .arg("--tls-key")
            .arg(f("tls.key"))
            .args(["--shutdown-delay", "0s", "--shutdown-grace", "2s"])
            .args(["--lease-namespace", NAMESPACE, "--identity", "bench"])
            .env("KUBECONFIG", f("kubeconfig"))
            .env("RUST_LOG", "warn,secretscope=info");
        let log = f("secretscope.log");
        let pid = real_apiserver::spawn_logged(cmd, &log).expect("start secretscope");
        let port = wait_addr(pid, &log).await;
        let ss = Self {
            pid,
            port,
            log,
            files,
        };
        let http = common::client(cp.ca_pem.as_bytes(), &[b"http/1.1"], None);
        let url = format!("https://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if matches!(http.get(&url).send().await, Ok(r) if r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "secretscope not ready in 60s:\n{}",
                std::fs::read_to_string(&ss.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ss
    }
}

async fn wait_addr(pid: u32, log: &Path) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let addr = text.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some(v.get("addr")?.as_str()?.to_string())
        });
        if let Some(addr) = addr {
            return addr.rsplit(':').next().unwrap().parse().expect("port");
        }
        assert!(
            real_apiserver::exited(pid).is_none() && Instant::now() < deadline,
            "secretscope did not start:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Secretscope {
    fn drop(&mut self) {
        real_apiserver::stop(self.pid, Duration::from_secs(5));
    }
}
