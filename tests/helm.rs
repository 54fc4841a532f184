//! The Helm chart (charts/secretscope): `helm lint --strict` passes for every value set below,
//! `helm template` renders exactly the kustomize install where the two overlap (default values =
//! `deploy/`, provided certificates = `overlays/plain`, `tenancy.grant=clusterRole` =
//! `overlays/grant-clusterrole`, monitoring and network policy = the components), every rendering
//! carries no webhook configuration and only valid objects, and secretscope's own strict check of
//! it finds exactly what README "Own RBAC" explains, in any release namespace. Helm is built from
//! its pinned Go module (tests/helm/build-helm.sh); tests/real_cluster.rs installs the rendered
//! chart into a real API server.

mod common;
#[path = "common/install.rs"]
mod install;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use install::{
    assert_no_lockout_install, assert_own_findings, by_key, check_strict, deploy_copy, documents,
    find, kubectl, kustomize, OWN_FINDINGS,
};

/// Labels the chart adds to every object (Helm's conventions); the kustomize install has the
/// other two (`name`, `part-of`).
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];
const CHECKSUM: &str = "secretscope.io/policy-checksum";

fn chart() -> PathBuf {
    install::repo().join("charts/secretscope")
}

fn helm_cmd(helm: &Path, verb: &str, namespace: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(helm);
    cmd.arg(verb);
    if verb == "template" {
        cmd.arg("secretscope");
    }
    cmd.arg(chart()).args(["--namespace", namespace]).args(args);
    cmd
}

/// `helm template secretscope charts/secretscope --namespace NS ARGS`.
fn template(helm: &Path, namespace: &str, args: &[&str]) -> String {
    install::run_renderer(&mut helm_cmd(helm, "template", namespace, args))
}

/// The rendered objects keyed as `by_key` does, with the chart's own labels and the pod
/// template's policy checksum taken out (asserted present first): what is left is what the
/// kustomize install must hold too.
fn without_helm_metadata(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut docs = by_key(docs);
    for (key, d) in docs.iter_mut() {
        let labels = d["metadata"]["labels"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{key} has no labels"));
        for l in HELM_LABELS {
            assert!(labels.remove(l).is_some(), "{key} lacks label {l}");
        }
        if d["kind"] == "Deployment" {
            let annotations = d["spec"]["template"]["metadata"]["annotations"]
                .as_object_mut()
                .expect("pod template annotations");
            let sum = annotations.remove(CHECKSUM).expect("policy checksum");
            assert_eq!(sum.as_str().map(str::len), Some(64), "{sum}");
            if annotations.is_empty() {
                d["spec"]["template"]["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("annotations");
            }
        }
    }
    docs
}

/// The chart's rendering equals the kustomize rendering, object for object; the policy file in
/// the ConfigMap is compared as the YAML it is (an overlay's patch may reword a comment).
fn assert_equal_to_kustomize(helm_yaml: &str, kustomize_yaml: &str, context: &str) {
    let mut helm = without_helm_metadata(documents(helm_yaml));
    let mut kust = by_key(documents(kustomize_yaml));
    for docs in [&mut helm, &mut kust] {
        if let Some(cm) = docs.get_mut("ConfigMap/secretscope/secretscope-policy") {
            let text = cm["data"]["secretscope.yaml"].as_str().unwrap_or_default();
            let parsed: Value = serde_saphyr::from_str(text)
                .unwrap_or_else(|e| panic!("{context}: the policy is not YAML: {e}\n{text}"));
            cm["data"]["secretscope.yaml"] = parsed;
        }
    }
    assert_eq!(
        helm.keys().collect::<Vec<_>>(),
        kust.keys().collect::<Vec<_>>(),
        "{context}"
    );
    for (k, v) in &kust {
        assert_eq!(&helm[k], v, "{context}: {k}");
    }
}

/// What every rendering must be: no webhook configuration, valid objects, the own check's
/// exact findings.
fn assert_sound(yaml: &str, objects: u64, context: &str) {
    assert_no_lockout_install(&documents(yaml), context);
    assert_own_findings(&check_strict(yaml), objects, OWN_FINDINGS, context);
}

#[test]
fn default_values_render_the_kustomize_install() {
    let (Some(helm), Some(kubectl)) = (install::helm(), kubectl()) else {
        return;
    };
    let yaml = template(&helm, "secretscope", &["--set", "namespace.create=true"]);
    assert_sound(&yaml, 6, "helm defaults");
    // The defaults render the shipped policy byte for byte, comments included.
    assert_eq!(
        install::shipped_policy(&documents(&yaml)),
        install::shipped_policy(&documents(&kustomize(
            &kubectl,
            &install::repo().join("deploy")
        )))
    );
    assert_equal_to_kustomize(
        &yaml,
        &kustomize(&kubectl, &install::repo().join("deploy")),
        "helm defaults vs deploy/",
    );
    // As Helm charts go, the namespace is the release's and not created by default.
    let plain = template(&helm, "secretscope", &[]);
    assert!(!documents(&plain).iter().any(|d| d["kind"] == "Namespace"));
}

#[test]
fn provided_certificates_render_the_plain_overlay() {
    let (Some(helm), Some(kubectl)) = (install::helm(), kubectl()) else {
        return;
    };
    let copy = deploy_copy();
    let plain = copy.path().join("deploy/overlays/plain");
    let certs = plain.join("certs");
    let files = format!(
        "tls.cert={},tls.key={},tls.ca={}",
        certs.join("tls.crt").display(),
        certs.join("tls.key").display(),
        certs.join("ca.crt").display()
    );
    let yaml = template(
        &helm,
        "secretscope",
        &[
            "--set",
            "namespace.create=true,certManager.enabled=false",
            "--set-file",
            &files,
        ],
    );
    assert_sound(&yaml, 6, "helm provided certificates");
    // by_key unwraps the Secret's base64, which kustomize wraps and Helm does not.
    assert_equal_to_kustomize(
        &yaml,
        &kustomize(&kubectl, &plain),
        "helm tls.* vs overlays/plain",
    );

    // An existing Secret: none rendered, the pods mount that one.
    let yaml = template(
        &helm,
        "secretscope",
        &[
            "--set",
            "certManager.enabled=false,tls.existingSecret=corp-issued",
        ],
    );
    let docs = documents(&yaml);
    assert!(!docs.iter().any(|d| d["kind"] == "Secret"
        || d["apiVersion"]
            .as_str()
            .is_some_and(|a| a.starts_with("cert-manager.io"))));
    let deployment = find(&docs, "Deployment", "secretscope");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "tls" && v["secret"]["secretName"] == "corp-issued"),
        "{volumes:?}"
    );
}

#[test]
fn grant_cluster_role_renders_the_overlay() {
    let (Some(helm), Some(kubectl)) = (install::helm(), kubectl()) else {
        return;
    };
    let yaml = template(
        &helm,
        "secretscope",
        &["--set", "namespace.create=true,tenancy.grant=clusterRole"],
    );
    assert_sound(&yaml, 7, "helm grant clusterRole");
    assert_equal_to_kustomize(
        &yaml,
        &kustomize(
            &kubectl,
            &install::repo().join("deploy/overlays/grant-clusterrole"),
        ),
        "helm grant clusterRole vs overlays/grant-clusterrole",
    );
    let out = helm_cmd(
        &helm,
        "template",
        "secretscope",
        &["--set", "tenancy.grant=ClusterRoles"],
    )
    .output()
    .expect("helm");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("tenancy.grant must be role or clusterRole, not \"ClusterRoles\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn monitoring_and_network_policy_render_the_components() {
    let (Some(helm), Some(kubectl)) = (install::helm(), kubectl()) else {
        return;
    };
    let copy = deploy_copy();
    let kit = install::overlay(&copy, "deploy/overlays/kit", install::KIT);
    let yaml = template(
        &helm,
        "secretscope",
        &[
            "--set",
            "namespace.create=true,monitoring.enabled=true,networkPolicy.enabled=true",
        ],
    );
    assert_sound(&yaml, 6, "helm kit");
    let mut helm_docs = without_helm_metadata(documents(&yaml));
    let mut kust_docs = by_key(documents(&kustomize(&kubectl, &kit)));
    // The dashboard is JSON text: compare it as JSON (kustomize keeps the file's bytes).
    for docs in [&mut helm_docs, &mut kust_docs] {
        let d = docs
            .get_mut("ConfigMap/secretscope/secretscope-dashboard")
            .expect("dashboard");
        let text = d["data"]["secretscope.json"]
            .as_str()
            .expect("json")
            .to_string();
        d["data"]["secretscope.json"] = serde_json::from_str(&text).expect("dashboard JSON");
    }
    assert_eq!(
        helm_docs.keys().collect::<Vec<_>>(),
        kust_docs.keys().collect::<Vec<_>>()
    );
    for (k, v) in &kust_docs {
        assert_eq!(&helm_docs[k], v, "{k}");
    }

    // The values reach the objects: the metrics namespace, and the leader alert left out.
    let yaml = template(
        &helm,
        "secretscope",
        &[
            "--set",
            "monitoring.enabled=true,monitoring.leaderAlert=false,networkPolicy.enabled=true,networkPolicy.metricsNamespace=observability",
        ],
    );
    let docs = documents(&yaml);
    let policy = find(&docs, "NetworkPolicy", "secretscope");
    assert_eq!(
        policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"],
        json!({"kubernetes.io/metadata.name": "observability"})
    );
    let alerts: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PrometheusRule")
        .flat_map(|d| install::prometheus_rules(d))
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert!(!alerts.is_empty());
    assert!(!alerts.contains(&"SecretscopeLeaderCount"), "{alerts:?}");
}

/// The policy values reach the shipped `secretscope.yaml`, which secretscope parses as given; the
/// release namespace replaces `secretscope` everywhere it names the install (the exempt
/// ServiceAccount, the Service, the guard policy's identity), and the own check still finds
/// exactly its two explained routes.
#[test]
fn values_reach_the_policy_and_the_release_namespace_is_used_throughout() {
    let Some(helm) = install::helm() else { return };
    let ns = "platform-security";
    let yaml = template(
        &helm,
        ns,
        &[
            "--set",
            "namespace.create=true,mode=audit,scope=strict,indirect=deny,exemptions.annotation=true,tenancy.prune=true,replicas=3,image.tag=v9.9.9",
            "--set",
            "exemptions.clusterRoles={vendor-operator}",
            "--set",
            "tenancy.namePattern=^tenant-(?P<tenant>.+)$,tenancy.label=example.com/tenant,tenancy.roleName=tenant-secrets",
            "--set",
            "tenancy.verbs={get,list}",
            "--set-json",
            r#"tenancy.subjects=[{"kind":"ServiceAccount","namespace":"portal","name":"portal-api"}]"#,
            "--set-json",
            r#"exemptions.extraSubjects=[{"kind":"ServiceAccount","namespace":"flux-system","name":"kustomize-controller","reason":"applies platform RBAC"}]"#,
        ],
    );
    let docs = documents(&yaml);
    assert_no_lockout_install(&docs, "helm values");
    let text = install::shipped_policy(&docs);
    let policy = secretscope::policy::Policy::parse(&text, "helm values")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let file = serde_json::to_value(&policy.file).expect("policy as JSON");
    assert_eq!(file["mode"], "audit", "{text}");
    assert_eq!(file["scope"], "strict");
    assert_eq!(file["indirect"], "deny");
    assert_eq!(file["exemptions"]["annotation"], true);
    assert_eq!(
        file["exemptions"]["clusterRoles"],
        json!(["vendor-operator"])
    );
    let subjects = file["exemptions"]["subjects"].as_array().expect("subjects");
    assert!(subjects.iter().any(|s| s["namespace"] == ns
        && s["name"] == "secretscope"
        && s["kind"] == "ServiceAccount"));
    assert!(!subjects.iter().any(|s| s["namespace"] == "secretscope"));
    assert_eq!(
        subjects.last().map(|s| (&s["name"], &s["reason"])),
        Some((
            &json!("kustomize-controller"),
            &json!("applies platform RBAC")
        ))
    );
    let tenancy = &file["tenancy"];
    assert_eq!(tenancy["namePattern"], "^tenant-(?P<tenant>.+)$");
    assert_eq!(tenancy["label"], "example.com/tenant");
    assert_eq!(tenancy["roleName"], "tenant-secrets");
    assert_eq!(tenancy["verbs"], json!(["get", "list"]));
    assert_eq!(tenancy["prune"], true);
    assert_eq!(
        tenancy["subjects"],
        json!([{"kind": "ServiceAccount", "namespace": "portal", "name": "portal-api"}])
    );

    let deployment = find(&docs, "Deployment", "secretscope");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/secretscope/secretscope:v9.9.9"
    );
    for d in &docs {
        if let Some(n) = d["metadata"]["namespace"].as_str() {
            // Events about Namespaces are recorded in `default`, wherever secretscope runs.
            let want = if d["metadata"]["name"] == "secretscope-events" {
                "default"
            } else {
                ns
            };
            assert_eq!(n, want, "{} {}", d["kind"], d["metadata"]["name"]);
        }
    }
    let subjects: Vec<&Value> = docs
        .iter()
        .filter_map(|d| d["subjects"].as_array())
        .flatten()
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    for s in subjects {
        assert_eq!(s["namespace"], ns, "{s}");
    }
    assert!(
        !yaml.contains("system:serviceaccount:secretscope:"),
        "{yaml}"
    );
    assert!(!yaml.contains("secretscope.secretscope.svc"), "{yaml}");
    // The renamed role is what secretscope's own RBAC is limited to.
    let role = find(&docs, "ClusterRole", "secretscope");
    assert!(serde_json::to_string(&role["rules"])
        .unwrap()
        .contains("tenant-secrets"));

    // The defaults in another namespace: the same two explained findings.
    let yaml = template(&helm, ns, &["--set", "namespace.create=true"]);
    assert_sound(&yaml, 6, "helm in another namespace");

    // A changed policy changes the checksum, so the pods roll.
    let sum = |yaml: &str| {
        find(&documents(yaml), "Deployment", "secretscope")["spec"]["template"]["metadata"]
            ["annotations"][CHECKSUM]
            .clone()
    };
    assert_ne!(
        sum(&yaml),
        sum(&template(&helm, ns, &["--set", "mode=warn"]))
    );
    assert_eq!(
        sum(&yaml),
        sum(&template(&helm, ns, &["--set", "replicas=5"]))
    );
}

#[test]
fn no_certificate_source_fails_with_what_to_set() {
    let Some(helm) = install::helm() else { return };
    let out = helm_cmd(
        &helm,
        "template",
        "secretscope",
        &["--set", "certManager.enabled=false"],
    )
    .output()
    .expect("helm");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no serving certificate")
            && stderr.contains("tls.existingSecret")
            && stderr.contains("secretscope certs"),
        "{stderr}"
    );
}

#[test]
fn helm_lint_strict_passes_for_every_value_set() {
    let Some(helm) = install::helm() else { return };
    for set in [
        "",
        "namespace.create=true",
        "certManager.enabled=false,tls.existingSecret=corp",
        "tenancy.grant=clusterRole",
        "monitoring.enabled=true,networkPolicy.enabled=true",
        "mode=audit,priorityClassName=",
    ] {
        let mut args = vec!["--strict"];
        if !set.is_empty() {
            args.extend(["--set", set]);
        }
        let out = helm_cmd(&helm, "lint", "secretscope", &args)
            .output()
            .expect("helm lint");
        assert!(
            out.status.success(),
            "helm lint --set {set}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
