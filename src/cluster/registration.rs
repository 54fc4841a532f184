//! Self-registration: secretscope writes its own ValidatingWebhookConfiguration and
//! MutatingWebhookConfiguration, and only once it is ready (RBAC state synced, listener up).
//!
//! Why: a webhook configuration with `failurePolicy: Fail` that exists before any pod can answer
//! refuses every RBAC write in the cluster (an image that cannot be pulled is enough). Installed
//! this way, nothing can block until a secretscope is actually there to answer; the install itself
//! carries no webhook configuration at all.
//!
//! The configurations are never deleted on shutdown (a rolling update must not open a window
//! without enforcement). They are owned by secretscope's ClusterRole of the same name, so deleting
//! the install (which deletes that ClusterRole) garbage-collects them: no lockout on uninstall.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};

/// The webhooks secretscope registers: rules, failure policies and match conditions. The
/// `clientConfig`, the names and the two match conditions about identities are set at runtime
/// (see [`Desired::render`]).
pub const TEMPLATE: &str = include_str!("webhooks.yaml");

const FIELD_MANAGER: &str = "secretscope";
const RETRY: Duration = Duration::from_secs(5);

/// Where the API server reaches this webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    /// In the cluster: a Service (`namespace/name[:port]`).
    Service {
        namespace: String,
        name: String,
        port: u16,
    },
    /// Outside it (development, tests): `https://host:port`, to which the paths are appended.
    Url(String),
}

impl std::str::FromStr for WebhookTarget {
    type Err = String;

    /// `NAMESPACE/NAME[:PORT]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, rest) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected NAMESPACE/NAME[:PORT]"))?;
        let (name, port) = match rest.split_once(':') {
            Some((name, port)) => (
                name,
                port.parse::<u16>()
                    .map_err(|_| format!("{s:?}: {port:?} is not a port"))?,
            ),
            None => (rest, 443),
        };
        if namespace.is_empty() || name.is_empty() || port == 0 {
            return Err(format!("{s:?}: expected NAMESPACE/NAME[:PORT]"));
        }
        Ok(Self::Service {
            namespace: namespace.into(),
            name: name.into(),
            port,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Name of both configurations, and of the ClusterRole that owns them.
    pub name: String,
    pub target: WebhookTarget,
    /// PEM of the CA that signs the serving certificate: the configurations' `caBundle`.
    pub ca_bundle: PathBuf,
    /// secretscope's own namespace, which its mutating webhook leaves alone.
    pub namespace: String,
    /// This process's webhook listener: registration waits until it accepts connections, so the
    /// API server's first call finds it (None when the port is chosen at bind time).
    pub listener: Option<SocketAddr>,
    /// Re-applied this often (a no-op apply changes nothing), so an edit such as
    /// `failurePolicy: Ignore` or a deleted configuration is repaired.
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("cannot read the CA bundle {path}: {source}")]
    CaUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA bundle {0} holds no PEM certificate")]
    CaInvalid(PathBuf),
    #[error("the webhook template is invalid: {0}")]
    Template(String),
    #[error("cannot learn secretscope's own username (SelfSubjectReview): {0}")]
    WhoAmI(kube::Error),
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
}

/// The two configurations as they should be.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub validating: Value,
    pub mutating: Value,
}

/// What is known at runtime and goes into the template.
pub struct Inputs<'a> {
    pub config: &'a RegistrationConfig,
    /// base64 of the CA PEM.
    pub ca_bundle: String,
    /// The username the API server gives secretscope's requests: exempt from its own webhook.
    pub username: &'a str,
    /// UID of the owning ClusterRole, when it exists.
    pub owner_uid: Option<&'a str>,
}

/// A CEL string literal: JSON's escapes (`\"`, `\\`, `\uXXXX`) are CEL's too.
fn cel_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Desired {
    pub fn render(inputs: &Inputs) -> Result<Self, RegistrationError> {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple_with_options(TEMPLATE, crate::manifest::yaml_options())
                .map_err(|e| RegistrationError::Template(e.to_string()))?;
        let mut validating = None;
        let mut mutating = None;
        for mut doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_string();
            Self::fill(&mut doc, inputs)?;
            match kind.as_str() {
                "ValidatingWebhookConfiguration" => validating = Some(doc),
                "MutatingWebhookConfiguration" => mutating = Some(doc),
                other => return Err(RegistrationError::Template(format!("unexpected {other}"))),
            }
        }
        let (Some(validating), Some(mutating)) = (validating, mutating) else {
            return Err(RegistrationError::Template(
                "needs one Validating- and one MutatingWebhookConfiguration".into(),
            ));
        };
        // Typed round trip: a template typo fails here (and in a unit test), not at the API server.
        let typed = |v: &Value, kind: &str| -> Result<(), RegistrationError> {
            let ok = match kind {
                "v" => serde_json::from_value::<ValidatingWebhookConfiguration>(v.clone()).is_ok(),
                _ => serde_json::from_value::<MutatingWebhookConfiguration>(v.clone()).is_ok(),
            };
            ok.then_some(())
                .ok_or_else(|| RegistrationError::Template(format!("not a valid object: {v}")))
        };
        typed(&validating, "v")?;
        typed(&mutating, "m")?;
        Ok(Self {
            validating,
            mutating,
        })
    }

    fn fill(doc: &mut Value, inputs: &Inputs) -> Result<(), RegistrationError> {
        let cfg = inputs.config;
        let meta = &mut doc["metadata"];
        meta["name"] = json!(cfg.name);
        meta["labels"] = json!({
            "app.kubernetes.io/name": "secretscope",
            "app.kubernetes.io/managed-by": "secretscope",
        });
        if let Some(uid) = inputs.owner_uid {
            meta["ownerReferences"] = json!([{
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "name": cfg.name,
                "uid": uid,
            }]);
        }
        let hooks = doc["webhooks"]
            .as_array_mut()
            .ok_or_else(|| RegistrationError::Template("no webhooks".into()))?;
        for hook in hooks {
            let path = hook["clientConfig"]["service"]["path"]
                .as_str()
                .ok_or_else(|| {
                    RegistrationError::Template("a webhook has no clientConfig.service.path".into())
                })?
                .to_string();
            hook["clientConfig"] = match &cfg.target {
                WebhookTarget::Service {
                    namespace,
                    name,
                    port,
                } => json!({
                    "service": {"namespace": namespace, "name": name, "path": path, "port": port},
                    "caBundle": inputs.ca_bundle,
                }),
                WebhookTarget::Url(base) => json!({
                    "url": format!("{}{path}", base.trim_end_matches('/')),
                    "caBundle": inputs.ca_bundle,
                }),
            };
            let Some(conditions) = hook["matchConditions"].as_array_mut() else {
                continue;
            };
            for c in conditions {
                match c["name"].as_str() {
                    Some("not-secretscope-itself") => {
                        c["expression"] = json!(format!(
                            "request.userInfo.username != {}",
                            cel_string(inputs.username)
                        ));
                    }
                    Some("not-system-namespaces") => {
                        let names: Vec<String> = [
                            "kube-system",
                            "kube-public",
                            "kube-node-lease",
                            "default",
                            cfg.namespace.as_str(),
                        ]
                        .iter()
                        .map(|n| cel_string(n))
                        .collect();
                        c["expression"] =
                            json!(format!("!(object.metadata.name in [{}])", names.join(", ")));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// base64 of the PEM file, checked to hold at least one certificate.
pub fn read_ca_bundle(path: &PathBuf) -> Result<String, RegistrationError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| RegistrationError::CaUnreadable {
        path: path.clone(),
        source,
    })?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| RegistrationError::CaInvalid(path.clone()))?;
    if certs.is_empty() {
        return Err(RegistrationError::CaInvalid(path.clone()));
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(&pem))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// applied or error.
    outcome: &'static str,
}

/// Registration outcomes, registered with the server's metrics.
#[derive(Clone, Default)]
pub struct RegistrationMetrics {
    applies: Family<OutcomeLabels, Counter>,
    /// 1 once this replica has applied both configurations and its last apply succeeded.
    pub registered: Gauge,
}

impl RegistrationMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_registrations",
            "Applies of the webhook configurations by this replica, by outcome (applied, error)",
            self.applies.clone(),
        );
        registry.register(
            "webhook_registered",
            "1 when this replica's last apply of the webhook configurations succeeded",
            self.registered.clone(),
        );
    }

    pub fn initialise(&self) {
        for outcome in ["applied", "error"] {
            let _ = self.applies.get_or_create(&OutcomeLabels { outcome });
        }
    }

    fn observe(&self, ok: bool) {
        let outcome = if ok { "applied" } else { "error" };
        self.applies.get_or_create(&OutcomeLabels { outcome }).inc();
        self.registered.set(i64::from(ok));
    }
}

/// Registers the webhooks once `ready()` holds, then keeps them so. Runs until the process ends.
pub async fn run(
    client: Client,
    config: RegistrationConfig,
    metrics: RegistrationMetrics,
    ready: impl Fn() -> bool + Send + 'static,
) {
    while !ready() || !accepting(config.listener).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut username: Option<String> = None;
    let mut last: Option<Desired> = None;
    loop {
        let result = async {
            let name = match &username {
                Some(u) => u.clone(),
                None => {
                    let u = whoami(&client).await?;
                    if !u.starts_with("system:serviceaccount:") {
                        // Whatever identity runs secretscope is exempt from it: with a person's
                        // kubeconfig, that person's RBAC writes would go unjudged.
                        tracing::warn!(
                            username = u,
                            "secretscope runs as a user, not a ServiceAccount: that user's RBAC writes are exempt from its webhook"
                        );
                    }
                    username = Some(u.clone());
                    u
                }
            };
            apply_once(&client, &config, &name).await
        }
        .await;
        let pause = match result {
            Ok(desired) => {
                if last.as_ref() != Some(&desired) {
                    tracing::info!(
                        name = config.name,
                        target = ?config.target,
                        "webhook configurations registered: enforcement is on"
                    );
                }
                last = Some(desired);
                metrics.observe(true);
                config.resync
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot register the webhook configurations; retrying");
                metrics.observe(false);
                RETRY
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// Whether the listener accepts a TCP connection (on loopback when it listens on all addresses).
async fn accepting(listener: Option<SocketAddr>) -> bool {
    let Some(mut addr) = listener else {
        return true;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let connect = tokio::net::TcpStream::connect(addr);
    matches!(
        tokio::time::timeout(Duration::from_secs(1), connect).await,
        Ok(Ok(_))
    )
}

async fn whoami(client: &Client) -> Result<String, RegistrationError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(RegistrationError::WhoAmI)?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

async fn apply_once(
    client: &Client,
    config: &RegistrationConfig,
    username: &str,
) -> Result<Desired, RegistrationError> {
    let ca_bundle = read_ca_bundle(&config.ca_bundle)?;
    // Not found or not readable: registered without an owner (logged), rather than not at all.
    let owner = match Api::<ClusterRole>::all(client.clone())
        .get_opt(&config.name)
        .await
    {
        Ok(role) => role.and_then(|r| r.metadata.uid),
        Err(e) => {
            tracing::warn!(error = %e, role = config.name, "cannot read the owning ClusterRole");
            None
        }
    };
    if owner.is_none() {
        tracing::warn!(
            role = config.name,
            "no ClusterRole of this name: the webhook configurations will outlive an uninstall"
        );
    }
    let desired = Desired::render(&Inputs {
        config,
        ca_bundle,
        username,
        owner_uid: owner.as_deref(),
    })?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    // Validating first: enforcement is what the install is for; the mutating one is a convenience.
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .patch(&config.name, &pp, &Patch::Apply(&desired.validating))
        .await
        .map_err(|source| RegistrationError::Apply {
            kind: "ValidatingWebhookConfiguration",
            name: config.name.clone(),
            source,
        })?;
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .patch(&config.name, &pp, &Patch::Apply(&desired.mutating))
        .await
        .map_err(|source| RegistrationError::Apply {
            kind: "MutatingWebhookConfiguration",
            name: config.name.clone(),
            source,
        })?;
    Ok(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(target: WebhookTarget) -> RegistrationConfig {
        RegistrationConfig {
            name: "secretscope".into(),
            target,
            ca_bundle: PathBuf::from("unused"),
            namespace: "guard".into(),
            listener: None,
            resync: Duration::from_secs(60),
        }
    }

    fn render(target: WebhookTarget, username: &str) -> Desired {
        Desired::render(&Inputs {
            config: &config(target),
            ca_bundle: "Q0E=".into(),
            username,
            owner_uid: Some("uid-1"),
        })
        .unwrap()
    }

    #[test]
    fn service_targets_fill_every_webhook() {
        let target: WebhookTarget = "guard/webhook:8443".parse().unwrap();
        let d = render(target, "system:serviceaccount:guard:secretscope");
        let v = &d.validating["webhooks"][0];
        assert_eq!(
            v["clientConfig"],
            json!({"service": {"namespace": "guard", "name": "webhook", "path": "/validate", "port": 8443}, "caBundle": "Q0E="})
        );
        assert_eq!(v["failurePolicy"], "Fail");
        let conditions = v["matchConditions"].to_string();
        assert!(
            conditions.contains(
                r#"request.userInfo.username != \"system:serviceaccount:guard:secretscope\""#
            ),
            "{conditions}"
        );
        let m = &d.mutating["webhooks"][0];
        assert_eq!(m["clientConfig"]["service"]["path"], "/mutate");
        assert_eq!(m["failurePolicy"], "Ignore");
        assert!(m["matchConditions"].to_string().contains(r#"\"guard\""#));
        assert_eq!(
            d.validating["metadata"]["ownerReferences"][0]["uid"],
            "uid-1"
        );
    }

    #[test]
    fn url_targets_append_the_paths() {
        let d = render(WebhookTarget::Url("https://127.0.0.1:9443/".into()), "me");
        assert_eq!(
            d.validating["webhooks"][0]["clientConfig"]["url"],
            "https://127.0.0.1:9443/validate"
        );
        assert_eq!(
            d.mutating["webhooks"][0]["clientConfig"]["url"],
            "https://127.0.0.1:9443/mutate"
        );
    }

    /// A username is data, never CEL: quotes and backslashes stay inside the literal.
    #[test]
    fn usernames_are_quoted_as_cel_literals() {
        let d = render(
            WebhookTarget::Url("https://x".into()),
            r#"a" || true || "\"#,
        );
        let expr = d.validating["webhooks"][0]["matchConditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "not-secretscope-itself")
            .unwrap()["expression"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            expr,
            r#"request.userInfo.username != "a\" || true || \"\\""#
        );
    }

    #[test]
    fn service_targets_parse_strictly() {
        assert_eq!(
            "ns/svc".parse::<WebhookTarget>(),
            Ok(WebhookTarget::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 443
            })
        );
        for bad in [
            "svc",
            "/svc",
            "ns/",
            "ns/svc:0",
            "ns/svc:http",
            "ns/svc:70000",
        ] {
            assert!(bad.parse::<WebhookTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, "not a pem").unwrap();
        assert!(matches!(
            read_ca_bundle(&path),
            Err(RegistrationError::CaInvalid(_))
        ));
        assert!(matches!(
            read_ca_bundle(&dir.path().join("missing")),
            Err(RegistrationError::CaUnreadable { .. })
        ));
    }
}
