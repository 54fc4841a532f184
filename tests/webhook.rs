//! The validating webhook end to end: real binary, real TLS, real AdmissionReview JSON.

mod common;

use std::time::Duration;

use common::{object, review, Webhook};
use serde_json::Value;

const STATE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secrets-reader}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
"#;

const BIND_BOB: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-reads-secrets}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
"#;

const BIND_BOB_PODS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
"#;

const EXEC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-exec}
rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
"#;

fn response(v: &Value) -> &Value {
    &v["response"]
}

#[tokio::test]
async fn enforce_denies_a_cluster_wide_secrets_binding_and_allows_the_rest() {
    let wh = Webhook::start(STATE, "", &[]);
    let body = review("CREATE", Some(&object(BIND_BOB)), None);
    let out = wh.review(&body).await;
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let r = response(&out);
    assert_eq!(r["uid"], body["request"]["uid"], "uid echoed");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        r["status"]["message"],
        r#"secretscope: ClusterRoleBinding "bob-reads-secrets" grants User "bob" cluster-wide read of Secrets (get, list) via ClusterRole "secrets-reader" rule 2 (apiGroups [""], resources ["secrets"], verbs ["get","list"])"#
    );

    let ok = wh
        .review(&review("CREATE", Some(&object(BIND_BOB_PODS)), None))
        .await;
    assert_eq!(response(&ok)["allowed"], true);
    assert!(response(&ok).get("warnings").is_none());
    assert!(response(&ok).get("status").is_none());

    // Deleting the dangerous binding is always allowed.
    let del = wh
        .review(&review("DELETE", None, Some(&object(BIND_BOB))))
        .await;
    assert_eq!(response(&del)["allowed"], true);
    assert!(wh.wait_for_log("\"verdict\":\"denied\"", Duration::from_secs(5)));
}

#[tokio::test]
async fn a_clusterrole_gaining_secrets_while_bound_is_denied_and_the_update_says_it_was_unsafe_before(
) {
    let wh = Webhook::start(&format!("{STATE}\n---\n{BIND_BOB}"), "", &[]);
    // pod-reader is not bound; secrets-reader is bound to bob.
    let old = object(
        &STATE
            .split("---")
            .next()
            .expect("first doc")
            .replace("verbs: [get, list]", "verbs: [get]"),
    );
    let new = object(STATE.split("---").next().expect("first doc"));
    let r = wh.review(&review("UPDATE", Some(&new), Some(&old))).await;
    let msg = response(&r)["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(response(&r)["allowed"], false);
    assert!(msg.contains(r#"ClusterRole "secrets-reader" grants User "bob" cluster-wide read of Secrets (get, list) through ClusterRoleBinding "bob-reads-secrets""#), "{msg}");
    assert!(
        msg.contains("it already granted this before the update: verbs get"),
        "{msg}"
    );
}

#[tokio::test]
async fn warn_mode_admits_with_warnings_and_indirect_routes_warn_in_enforce() {
    let wh = Webhook::start(STATE, "mode: warn\n", &[]);
    let r = wh
        .review(&review("CREATE", Some(&object(BIND_BOB)), None))
        .await;
    assert_eq!(response(&r)["allowed"], true);
    let warnings = response(&r)["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]
        .as_str()
        .unwrap_or_default()
        .contains("cluster-wide read of Secrets"));

    let wh = Webhook::start(&format!("{STATE}\n---\n{EXEC}"), "", &[]);
    let bind_exec = BIND_BOB.replace("name: secrets-reader", "name: pod-exec");
    let r = wh
        .review(&review("CREATE", Some(&object(&bind_exec)), None))
        .await;
    assert_eq!(response(&r)["allowed"], true);
    let w = response(&r)["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        w.contains("exec into pods (pods/exec)") && w.contains("indirect route"),
        "{w}"
    );

    let wh = Webhook::start(&format!("{STATE}\n---\n{EXEC}"), "indirect: deny\n", &[]);
    let r = wh
        .review(&review("CREATE", Some(&object(&bind_exec)), None))
        .await;
    assert_eq!(response(&r)["allowed"], false);
}

#[tokio::test]
async fn audit_mode_admits_silently_and_logs() {
    let wh = Webhook::start(STATE, "mode: audit\n", &[]);
    let r = wh
        .review(&review("CREATE", Some(&object(BIND_BOB)), None))
        .await;
    assert_eq!(response(&r)["allowed"], true);
    assert!(response(&r).get("warnings").is_none());
    assert!(
        wh.wait_for_log("\"verdict\":\"audited\"", Duration::from_secs(5)),
        "{:?}",
        wh.logs()
    );
    assert!(wh.logs().iter().any(|l| l.contains("bob-reads-secrets")));
}

#[tokio::test]
async fn strict_scope_denies_an_unbound_secrets_clusterrole() {
    let role = STATE.split("---").next().expect("first doc");
    let wh = Webhook::start("", "", &[]);
    let r = wh
        .review(&review("CREATE", Some(&object(role)), None))
        .await;
    assert_eq!(
        response(&r)["allowed"],
        true,
        "bindings scope: unbound is fine"
    );
    let wh = Webhook::start("", "scope: strict\n", &[]);
    let r = wh
        .review(&review("CREATE", Some(&object(role)), None))
        .await;
    assert_eq!(response(&r)["allowed"], false);
    assert!(response(&r)["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("scope strict"));
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_with_a_reason() {
    let wh = Webhook::start(STATE, "", &[]);
    let c = wh.client();
    // Status and text of a raw body POSTed as the API server posts a review.
    let post = |body: Vec<u8>| {
        let request = c
            .post(wh.url("/validate"))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let r = request.send().await.expect("send");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };

    let (status, text) = post(vec![b' '; 3 * 1024 * 1024 + 1]).await;
    assert_eq!(status, 413);
    assert!(text.contains("larger than 3 MiB"), "{text}");

    let (status, text) = post(b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(text.contains("body is not an AdmissionReview"), "{text}");

    // Invalid UTF-8 in a field secretscope skips unread: still not JSON, so refused.
    let mut skipped = review("CREATE", Some(&object(BIND_BOB)), None);
    skipped["request"]["options"] = "@skipped@".into();
    let mut bytes = serde_json::to_vec(&skipped).expect("encode");
    let at = bytes
        .windows(9)
        .position(|w| w == b"@skipped@")
        .expect("marker");
    bytes[at] = 0xff;
    let (status, text) = post(bytes).await;
    assert_eq!(status, 400);
    assert!(
        text.contains(&format!(
            "JSON must be UTF-8 and is not at byte offset {at}"
        )),
        "{text}"
    );

    let mut v1beta1 = review("CREATE", Some(&object(BIND_BOB)), None);
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let (status, text) = post(serde_json::to_vec(&v1beta1).expect("encode")).await;
    assert_eq!(status, 400);
    assert!(text.contains("admissionReviewVersions: [v1]"), "{text}");

    // A well-formed review of a kind we do not judge: fail closed, with the reason.
    let mut pod = review("CREATE", Some(&object(BIND_BOB)), None);
    pod["request"]["kind"] = serde_json::json!({"group": "", "version": "v1", "kind": "Pod"});
    let out = wh.review(&pod).await;
    assert_eq!(response(&out)["allowed"], false);
    assert_eq!(response(&out)["status"]["code"], 400);

    // An object that does not decode as its kind: fail closed.
    let mut bad = review("CREATE", Some(&object(BIND_BOB)), None);
    bad["request"]["object"]["subjects"] = "bob".into();
    let out = wh.review(&bad).await;
    assert_eq!(response(&out)["allowed"], false);
    assert!(response(&out)["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot decode ClusterRoleBinding"));

    // The server is still healthy after all that.
    let r = c.get(wh.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    let r = c.get(wh.url("/readyz")).send().await.expect("readyz");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn speaks_h2_and_http11_over_tls12_and_tls13() {
    let wh = Webhook::start(STATE, "", &[]);
    let body = review("CREATE", Some(&object(BIND_BOB)), None);
    let ca = wh.certs.ca_pem();
    for (alpn, version, want) in [
        (
            &[&b"h2"[..], b"http/1.1"][..],
            None,
            reqwest::Version::HTTP_2,
        ),
        (&[&b"http/1.1"[..]][..], None, reqwest::Version::HTTP_11),
        (
            &[&b"h2"[..]][..],
            Some(&rustls::version::TLS12),
            reqwest::Version::HTTP_2,
        ),
    ] {
        let c = common::client(&ca, alpn, version);
        let r = c
            .post(wh.url("/validate"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.version(), want);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["response"]["allowed"], false);
    }
    // A client that does not trust our CA cannot talk to it.
    let other = common::Certs::new();
    let c = common::client(&other.ca_pem(), &[b"h2"], None);
    assert!(c.get(wh.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn slow_clients_are_timed_out() {
    let wh = Webhook::start(STATE, "", &["--request-timeout", "1s"]);
    // A body that sends one chunk and then stalls.
    let stream = futures_stream();
    let started = std::time::Instant::now();
    let r = wh
        .client()
        .post(wh.url("/validate"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn futures_stream(
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    struct Stall(bool);
    impl futures_core::Stream for Stall {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if self.0 {
                std::task::Poll::Pending
            } else {
                self.0 = true;
                std::task::Poll::Ready(Some(Ok(b"{\"apiVersion\":".to_vec())))
            }
        }
    }
    Stall(false)
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut wh = Webhook::start(
        STATE,
        "",
        &["--shutdown-delay", "1s", "--shutdown-grace", "2s"],
    );
    let pid = wh.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = wh.child.try_wait().expect("wait") {
            assert!(s.success(), "exit status {s:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(wh.logs().iter().any(|l| l.contains("shutting down")));
}

#[test]
fn unreadable_certificates_fail_start_up_with_the_path() {
    let out = common::bin()
        .args(["serve", "--standalone", "--listen", "127.0.0.1:0"])
        .args([
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read certificate /nonexistent/tls.crt"),
        "{err}"
    );

    let certs = common::Certs::new();
    let out = common::bin()
        .args([
            "serve",
            "--standalone",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
        ])
        .arg(certs.path("tls.crt"))
        .arg("--tls-key")
        .arg(certs.path("ca.crt"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
}

/// The README's `make run` demo: the shipped example state, policy and AdmissionReviews.
#[tokio::test]
async fn the_readme_example_denies_and_allows_as_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let state =
        std::fs::read_to_string(root.join("examples/state/platform-rbac.yaml")).expect("state");
    let wh = Webhook::start(&state, "", &[]);
    let deny: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/review-deny.json")).expect("json"),
    )
    .expect("parse");
    let out = wh.review(&deny).await;
    assert_eq!(
        response(&out)["uid"],
        "3b1b4a6e-8f55-4c61-9c3e-2d7f0c1e5a10"
    );
    assert_eq!(response(&out)["allowed"], false);
    assert_eq!(
        response(&out)["status"]["message"],
        r#"secretscope: ClusterRoleBinding "portal-secrets" grants ServiceAccount "portal/portal-api" cluster-wide read and write of Secrets (get, list, create, update, patch, delete; write responses return Secret data too) via ClusterRole "portal-secrets" rule 2 (apiGroups [""], resources ["secrets"], verbs ["get","list","create","update","patch","delete"])"#
    );
    let allow: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("examples/review-allow.json")).expect("json"),
    )
    .expect("parse");
    let out = wh.review(&allow).await;
    assert_eq!(response(&out)["allowed"], true);
}

#[tokio::test]
async fn metrics_count_reviews_findings_and_expose_state_and_cert_expiry() {
    let wh = Webhook::start(STATE, "", &["--metrics-listen", "127.0.0.1:0"]);
    wh.review(&review("CREATE", Some(&object(BIND_BOB)), None))
        .await;
    wh.review(&review("CREATE", Some(&object(BIND_BOB_PODS)), None))
        .await;
    let r = wh
        .client()
        .post(wh.url("/validate"))
        .body("nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);

    let url = wh.metrics_url().expect("metrics address logged");
    let text = wh
        .client()
        .get(&url)
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has(
            r#"secretscope_reviews_total{kind="ClusterRoleBinding",operation="CREATE",verdict="denied",mode="enforce"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"secretscope_reviews_total{kind="ClusterRoleBinding",operation="CREATE",verdict="allowed",mode="enforce"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(
            r#"secretscope_reviews_total{kind="unknown",operation="unknown",verdict="error",mode="enforce"} 1"#
        ),
        "{text}"
    );
    assert!(
        has(r#"secretscope_findings_total{route="secrets",severity="deny"} 1"#),
        "{text}"
    );
    assert!(has("secretscope_review_duration_seconds_count 2"), "{text}");
    assert!(has("secretscope_state_synced 1"), "{text}");
    assert!(
        has("secretscope_state_objects 66"),
        "64 built-in + 2 given: {text}"
    );
    let expiry: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("secretscope_serving_cert_expiry_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("cert expiry gauge");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let days = (expiry - now) / 86400.0;
    assert!(
        (364.0..=366.0).contains(&days),
        "dev certificate valid for a year, got {days} days"
    );
    // The metrics listener is plain HTTP and separate: the webhook port does not serve it.
    let r = wh
        .client()
        .get(wh.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}

/// A client CA and a client certificate (clientAuth) it signed, like the API server's
/// AdmissionConfiguration identity. Returns (CA PEM, certificate + key PEM).
fn client_identity(cn: &str) -> (String, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca, &ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.distinguished_name.push(rcgen::DnType::CommonName, cn);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    (
        ca_cert.pem(),
        [cert.pem(), key.serialize_pem()].concat().into_bytes(),
    )
}

#[tokio::test]
async fn client_certificates_are_required_with_client_ca() {
    let (client_ca, identity) = client_identity("kube-apiserver");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("client-ca.crt");
    std::fs::write(&ca, client_ca).expect("write");
    let wh = Webhook::start(STATE, "", &["--client-ca", ca.to_str().unwrap_or_default()]);
    // Without a client certificate the handshake is refused.
    assert!(wh.client().get(wh.url("/healthz")).send().await.is_err());
    // With one signed by the client CA, reviews go through.
    let client = common::client_with_identity(&wh.certs.ca_pem(), &identity);
    let r = client
        .get(wh.url("/healthz"))
        .send()
        .await
        .expect("healthz with client cert");
    assert_eq!(r.status(), 200);
    // A client certificate from another CA is refused.
    let (_, stranger) = client_identity("mallory");
    let client = common::client_with_identity(&wh.certs.ca_pem(), &stranger);
    assert!(client.get(wh.url("/healthz")).send().await.is_err());
}

/// `/mutate` over TLS: a new tenancy namespace comes back with a JSON patch that labels it.
#[tokio::test]
async fn mutate_labels_new_tenancy_namespaces() {
    let wh = Webhook::start("", "", &["--metrics-listen", "127.0.0.1:0"]);
    let ns = |name: &str| {
        serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": format!("uid-{name}"), "kind": {"group": "", "version": "v1", "kind": "Namespace"},
                "resource": {"group": "", "version": "v1", "resource": "namespaces"},
                "name": name, "operation": "CREATE", "userInfo": {"username": "portal"},
                "object": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                "dryRun": false}})
    };
    let post = |body: Value| {
        let (client, url) = (wh.client(), wh.url("/mutate"));
        async move {
            let r = client
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("POST /mutate");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        }
    };
    let out = post(ns("az-acme")).await;
    let r = &out["response"];
    assert_eq!(r["uid"], "uid-az-acme");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    use base64::Engine;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap_or_default())
        .expect("base64");
    let patch: Value = serde_json::from_slice(&patch).expect("json patch");
    assert_eq!(
        patch,
        serde_json::json!([{"op": "add", "path": "/metadata/labels", "value": {"secretscope.io/tenant": "acme"}}])
    );
    let out = post(ns("payments")).await;
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
    assert!(wh.wait_for_log("labelled a new tenancy namespace", Duration::from_secs(5)));
    let text = common::scrape(&wh.client(), &wh.metrics_url().expect("metrics"))
        .await
        .expect("scrape");
    assert!(
        text.contains(r#"secretscope_namespace_mutations_total{result="labelled"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_managed_role_name_is_refused_outside_tenancy_namespaces() {
    let wh = Webhook::start(STATE, "", &[]);
    let binding = |ns: &str| {
        object(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: grab, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secretscope-secrets}}\nsubjects: [{{kind: ServiceAccount, name: app, namespace: {ns}}}]\n"
        ))
    };
    let role = |ns: &str| {
        object(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: secretscope-secrets, namespace: {ns}}}\nrules: [{{apiGroups: [\"\"], resources: [secrets], verbs: [get]}}]\n"
        ))
    };
    // Issue 9 bug 1: a binding *named* like the managed one squats the name (roleRef cannot be
    // changed later, so the reconciler could never apply its own there).
    let squatter = |ns: &str| {
        object(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: secretscope-secrets, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\nsubjects: [{{kind: User, name: mallory}}]\n"
        ))
    };
    for obj in [binding("payments"), role("payments"), squatter("payments")] {
        let resp = wh.review(&review("CREATE", Some(&obj), None)).await;
        let r = response(&resp);
        assert_eq!(r["allowed"], false, "{resp}");
        let msg = r["status"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("in namespace \"payments\" uses the name of the Secrets role secretscope manages (\"secretscope-secrets\")"),
            "{msg}"
        );
        // Standalone: a namespace's labels cannot be read, so only the name pattern counts.
        assert!(msg.contains("could not be confirmed"), "{msg}");
    }
    for obj in [binding("az-acme"), role("az-acme"), squatter("az-acme")] {
        let resp = wh.review(&review("CREATE", Some(&obj), None)).await;
        assert_eq!(response(&resp)["allowed"], true, "{resp}");
    }
}

/// The operator's series exist before their first event (an absent series is not a zero to
/// PromQL: `rate()` and alerts on it would be undefined), with build and process metrics.
#[tokio::test]
async fn every_labelled_counter_starts_at_zero_with_build_and_process_metrics() {
    let wh = Webhook::start(STATE, "", &["--metrics-listen", "127.0.0.1:0"]);
    let text = common::scrape(&wh.client(), &wh.metrics_url().expect("metrics"))
        .await
        .expect("scrape");
    for series in [
        r#"secretscope_reviews_total{kind="ClusterRoleBinding",operation="CREATE",verdict="denied",mode="enforce"} 0"#,
        r#"secretscope_reviews_total{kind="Role",operation="UPDATE",verdict="allowed",mode="enforce"} 0"#,
        r#"secretscope_reviews_total{kind="unknown",operation="unknown",verdict="error",mode="enforce"} 0"#,
        r#"secretscope_findings_total{route="secrets",severity="deny"} 0"#,
        r#"secretscope_findings_total{route="webhook-configurations",severity="warn"} 0"#,
        r#"secretscope_serving_cert_reloads_total{result="rejected"} 0"#,
        r#"secretscope_namespace_mutations_total{result="labelled"} 0"#,
        r#"secretscope_tenancy_reconciles_total{outcome="forbidden"} 0"#,
        r#"secretscope_webhook_registrations_total{outcome="error"} 0"#,
        "secretscope_webhook_registered 0",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(r#"secretscope_build_info{{version="{version}","#)),
        "{text}"
    );
    for name in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_start_time_seconds ",
        "process_open_fds ",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}in\n{text}"));
        let value: f64 = line[name.len()..].trim().parse().expect("a number");
        // CPU time of a process that has barely started can still read 0.
        let least = if name.starts_with("process_cpu") {
            0.0
        } else {
            1.0
        };
        assert!(value >= least, "{line}");
    }
}

/// Issue 13: a decision's log line says who asked for what (JSON fields an operator can query),
/// and an allowed review without findings writes no line at the default level.
#[tokio::test]
async fn decision_log_lines_carry_user_object_kind_operation_and_verdict() {
    let wh = Webhook::start(STATE, "", &[]);
    // The managed role's name outside a tenancy namespace: denied in standalone mode (no live
    // cluster to read the namespace's labels from), a namespaced denial.
    let role = object(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n\
         metadata: {name: secretscope-secrets, namespace: team-a}\n\
         rules: [{apiGroups: [\"\"], resources: [secrets], verbs: [get]}]\n",
    );
    let mut body = review("CREATE", Some(&role), None);
    body["request"]["namespace"] = "team-a".into();
    body["request"]["userInfo"]["username"] = "alice@example.com".into();
    body["request"]["uid"] = "uid-namespaced-denial".into();
    assert_eq!(response(&wh.review(&body).await)["allowed"], false);

    let mut binding = review("CREATE", Some(&object(BIND_BOB)), None);
    binding["request"]["uid"] = "uid-cluster-denial".into();
    assert_eq!(response(&wh.review(&binding).await)["allowed"], false);
    let mut allowed = review("CREATE", Some(&object(BIND_BOB_PODS)), None);
    allowed["request"]["uid"] = "uid-allowed".into();
    assert_eq!(response(&wh.review(&allowed).await)["allowed"], true);

    assert!(wh.wait_for_log("uid-cluster-denial", Duration::from_secs(5)));
    let line = |uid: &str| -> Value {
        let logs = wh.logs();
        let line = logs
            .iter()
            .find(|l| l.contains(uid))
            .unwrap_or_else(|| panic!("no log line for {uid}: {logs:?}"));
        serde_json::from_str(line).expect("a JSON log line")
    };
    let ns = line("uid-namespaced-denial");
    for (field, want) in [
        ("level", "INFO"),
        ("user", "alice@example.com"),
        ("namespace", "team-a"),
        ("name", "secretscope-secrets"),
        ("kind", "Role"),
        ("operation", "CREATE"),
        ("verdict", "denied"),
        ("mode", "enforce"),
    ] {
        assert_eq!(ns[field], want, "{field} in {ns}");
    }
    assert!(ns["message"]
        .as_str()
        .is_some_and(|m| m.contains("secretscope-secrets")));

    let crb = line("uid-cluster-denial");
    assert_eq!(crb["user"], "kubernetes-admin", "{crb}");
    assert_eq!(crb["name"], "bob-reads-secrets", "{crb}");
    assert_eq!(crb["namespace"], "", "cluster-scoped: {crb}");
    assert_eq!(crb["kind"], "ClusterRoleBinding", "{crb}");
    assert_eq!(crb["verdict"], "denied", "{crb}");

    assert!(
        !wh.logs().iter().any(|l| l.contains("uid-allowed")),
        "an allowed review without findings is logged at debug only: {:?}",
        wh.logs()
    );
}
