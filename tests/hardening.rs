//! Issue 8's holes, tried the way an attacker would: through the real binary over TLS with real
//! AdmissionReviews. Each test failed on the main before the fix.

#[path = "../benches/common/bodies.rs"]
mod bodies;
mod common;

use common::{object, review, Webhook};
use serde_json::{json, Value};

/// `view` bound cluster-wide: every subject bound to it would read what aggregates into it.
const VIEW_FOR_EVERYONE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
"#;

async fn post(wh: &Webhook, body: &Value) -> (Vec<u8>, Value) {
    let resp = wh
        .client()
        .post(wh.url("/validate"))
        .json(body)
        .send()
        .await
        .expect("review");
    assert!(resp.status().is_success(), "{}", resp.status());
    let bytes = resp.bytes().await.expect("body").to_vec();
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    (bytes, v)
}

fn message(v: &Value) -> String {
    v["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Hole 1: a role *named* `system:...` was exempt by the default glob. It aggregates a Secrets
/// rule into the cluster-wide `view`: denied, and the message says through what.
#[tokio::test]
async fn a_system_named_role_aggregating_secrets_into_a_bound_view_is_denied() {
    let wh = Webhook::start(VIEW_FOR_EVERYONE, "", &[]);
    let squatter = object(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:anything
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list, watch]}
"#,
    );
    let (_, out) = post(&wh, &review("CREATE", Some(&squatter), None)).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = message(&out);
    assert!(
        msg.contains(r#"ClusterRole "system:anything" grants Group "system:authenticated" cluster-wide read of Secrets (get, list, watch) (aggregated into ClusterRole "view") through ClusterRoleBinding "everyone-views""#),
        "{msg}"
    );
}

/// Hole 1, UPDATE: a rule added to a bootstrap role (whose extra rules the API server's
/// reconciliation keeps) is judged; the bootstrap rules themselves are not.
#[tokio::test]
async fn a_secrets_rule_added_to_a_bootstrap_role_is_denied() {
    let wh = Webhook::start(VIEW_FOR_EVERYONE, "", &[]);
    let bootstrap = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregate-to-view
  labels: {kubernetes.io/bootstrapping: rbac-defaults, rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- apiGroups: [""]
  resources: [configmaps, endpoints, persistentvolumeclaims, pods, services]
  verbs: [get, list, watch]
"#;
    let old = object(bootstrap);
    let (_, same) = post(&wh, &review("UPDATE", Some(&old), Some(&old))).await;
    assert_eq!(same["response"]["allowed"], true, "{same}");

    let new = object(&format!(
        "{bootstrap}- {{apiGroups: [\"\"], resources: [secrets], verbs: [get]}}\n"
    ));
    let (_, out) = post(&wh, &review("UPDATE", Some(&new), Some(&old))).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = message(&out);
    assert!(msg.contains("cluster-wide read of Secrets (get)"), "{msg}");
    assert!(
        msg.contains(r#"rule 2 (apiGroups [""], resources ["secrets"], verbs ["get"])"#),
        "{msg}"
    );
}

/// Hole 3: a 2.7 MB rule list was repeated in every message (61 MB out). Now the response is
/// bounded whatever the body, in enforce and in warn mode, and the server's peak memory stays
/// a small multiple of the body.
#[tokio::test]
async fn a_huge_rule_gets_a_small_response_and_bounded_memory() {
    let names: Vec<String> = (0..160_000).map(|i| format!("secret-{i:07}")).collect();
    let big = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "wide"},
        "rules": [
            {"apiGroups": ["", "apps", "rbac.authorization.k8s.io", "admissionregistration.k8s.io"],
             "resources": ["secrets", "pods", "pods/exec", "pods/attach", "nodes/proxy", "deployments",
                           "serviceaccounts/token", "validatingwebhookconfigurations"],
             "resourceNames": names,
             "verbs": ["get", "list", "watch", "update", "patch", "delete", "escalate", "bind", "impersonate"]}
        ]
    });
    let state = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: wide}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: wide}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]
"#;
    let body = review("CREATE", Some(&big), None);
    let body_len = serde_json::to_vec(&body).expect("json").len();
    assert!(body_len > 2_500_000, "{body_len}");
    for policy in ["mode: enforce", "mode: warn"] {
        // A debug build on a loaded machine: this test is about size, not the deadline.
        let wh = Webhook::start(state, policy, &["--review-deadline", "60s"]);
        let (bytes, out) = post(&wh, &body).await;
        assert!(
            bytes.len() <= 64 * 1024,
            "{policy}: a {body_len}-byte review got a {}-byte response",
            bytes.len()
        );
        let r = &out["response"];
        if policy == "mode: enforce" {
            assert_eq!(r["allowed"], false);
            assert!(
                message(&out).contains("and 159992 more"),
                "{}",
                message(&out)
            );
        } else {
            assert_eq!(r["allowed"], true);
            assert!(!r["warnings"].as_array().expect("warnings").is_empty());
        }
        let hwm = peak_rss_kib(wh.child.id());
        eprintln!(
            "{policy}: body {body_len} B, response {} B, peak RSS {hwm} KiB",
            bytes.len()
        );
        // The body itself, its decoded copy and the findings' name sets: a few times the body.
        assert!(
            hwm * 1024 < 16 * body_len as u64 + 64 * 1024 * 1024,
            "{policy}: peak RSS {hwm} KiB for a {body_len}-byte review"
        );
        let logged: usize = wh.logs().iter().map(String::len).sum();
        assert!(logged < 256 * 1024, "{policy}: {logged} bytes of log");
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

/// Hole 4: aggregation was resolved by scanning every role per step, so a review's cost grew
/// with the square of the cluster. With indexes a chain of aggregators costs its length; a
/// state built to defeat the indexes (selectors that select everything) runs out of the work
/// budget and is denied, fail closed, with a message that says so.
#[tokio::test]
async fn a_review_past_the_work_budget_is_denied_with_the_reason() {
    let mut state = String::new();
    for i in 0..1_500 {
        state.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: dense-{i}}}\n\
             aggregationRule: {{clusterRoleSelectors: [{{matchExpressions: [{{key: none, operator: DoesNotExist}}]}}]}}\n"
        ));
    }
    // The work budget must decide, not the deadline (a debug build on a loaded machine).
    let wh = Webhook::start(
        &state,
        "",
        &[
            "--review-deadline",
            "60s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let role = object(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: victim}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
"#,
    );
    let started = std::time::Instant::now();
    let (_, out) = post(&wh, &review("CREATE", Some(&role), None)).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = message(&out);
    assert!(
        msg.contains(r#"ClusterRole "victim" was not judged and is denied (fail closed)"#)
            && msg.contains("aggregation steps"),
        "{msg}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the budget bounds the work: {:?}",
        started.elapsed()
    );
    assert_eq!(
        wh.metric("secretscope_reviews_over_budget_total").await,
        Some(1.0)
    );
}

/// Hole 4, the ordinary case: a role at the end of a chain of 8,000 aggregators is judged (and
/// found granted through the whole chain) well within the budget.
#[tokio::test]
async fn a_role_under_a_long_aggregation_chain_is_judged() {
    let n = 8_000;
    let state = bodies::aggregation_chain(n);
    let wh = Webhook::start(&state, "", &[]);
    let leaf = object(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: leaf, labels: {chain: "0"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
"#,
    );
    let (bytes, out) = post(&wh, &review("CREATE", Some(&leaf), None)).await;
    assert_eq!(out["response"]["allowed"], false, "{out}");
    let msg = message(&out);
    assert!(
        msg.contains(r#"(aggregated into ClusterRole "agg-1", which is aggregated into "agg-2", which is aggregated into "agg-3", ... 7996 more ..., which is aggregated into "agg-8000") through ClusterRoleBinding "top""#),
        "{msg}"
    );
    assert!(bytes.len() < 4096);
}
