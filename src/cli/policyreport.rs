//! `audit --format policyreport`: a wg-policy `ClusterPolicyReport` (wgpolicyk8s.io/v1alpha2),
//! one result per subject with cluster-wide Secrets access or an indirect route, so Policy
//! Reporter and the tools that read Kyverno's reports show it. Fields are the CRD's only (an
//! API server prunes anything else): tests round-trip the report through that schema.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::rbac::audit::SubjectAccess;
use crate::rbac::Route;

pub const POLICY: &str = "secretscope-secrets-scope";
const SHOWN: usize = 3;

fn describe(s: &SubjectAccess) -> String {
    let mut parts: Vec<String> = s
        .grants
        .iter()
        .take(SHOWN)
        .map(|g| {
            let what = match g.route {
                Route::Secrets if g.names.is_empty() => format!("Secrets {}", g.verbs.join(", ")),
                Route::Secrets => format!(
                    "Secrets named {}: {}",
                    g.names.join(", "),
                    g.verbs.join(", ")
                ),
                Route::Indirect(r) => format!("indirect route: {}", r.describe().0),
            };
            format!(
                "{what} through ClusterRoleBinding \"{}\" (ClusterRole \"{}\")",
                g.binding, g.role
            )
        })
        .collect();
    if s.grants.len() > SHOWN {
        parts.push(format!("{} more", s.grants.len() - SHOWN));
    }
    format!("{} holds cluster-wide {}", s.subject, parts.join("; "))
}

pub fn cluster_policy_report(subjects: &[SubjectAccess], now: OffsetDateTime) -> Value {
    let (mut fail, mut warn, mut skip) = (0, 0, 0);
    let timestamp = json!({"seconds": now.unix_timestamp(), "nanos": now.nanosecond()});
    let results: Vec<Value> = subjects
        .iter()
        .map(|s| {
            // Exempt holders are listed (skip), never counted as violations.
            let (rule, result, severity) = match (s.has_secrets(), s.exempt) {
                (_, true) => {
                    skip += 1;
                    (
                        if s.has_secrets() {
                            "secrets"
                        } else {
                            "indirect"
                        },
                        "skip",
                        "high",
                    )
                }
                (true, false) => {
                    fail += 1;
                    ("secrets", "fail", "high")
                }
                (false, false) => {
                    warn += 1;
                    ("indirect", "warn", "medium")
                }
            };
            let mut resource = json!({"kind": s.subject.kind, "name": s.subject.name});
            if let Some(ns) = &s.subject.namespace {
                resource["namespace"] = json!(ns);
            }
            if s.subject.kind == "ServiceAccount" {
                resource["apiVersion"] = json!("v1");
            }
            let join = |f: &dyn Fn(&crate::rbac::audit::Grant) -> String| {
                let mut v: Vec<String> = s.grants.iter().map(f).collect();
                v.sort();
                v.dedup();
                v.join(",")
            };
            json!({
                "policy": POLICY,
                "rule": rule,
                "result": result,
                "severity": severity,
                "category": "Secrets access",
                "source": "secretscope",
                "scored": true,
                "timestamp": timestamp,
                "message": describe(s),
                "resources": [resource],
                "properties": {
                    "exempt": s.exempt.to_string(),
                    "bindings": join(&|g| g.binding.clone()),
                    "roles": join(&|g| g.role.clone()),
                    "routes": join(&|g| match g.route {
                        Route::Secrets => "secrets".to_string(),
                        Route::Indirect(r) => r.to_string(),
                    }),
                    // What `secretscope audit` proposes, one sentence per grant.
                    "fix": s
                        .grants
                        .iter()
                        .map(|g| g.remediation.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" | "),
                }
            })
        })
        .collect();
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "ClusterPolicyReport",
        "metadata": {
            "name": "secretscope-audit",
            "labels": {"app.kubernetes.io/managed-by": "secretscope"}
        },
        "summary": {"pass": 0, "fail": fail, "warn": warn, "error": 0, "skip": skip},
        "results": results,
    })
}
