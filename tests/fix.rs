//! `secretscope fix` round trip on the corpus: the rewrite checks clean of every Secrets denial
//! it could rewrite, what it could not is named for a person, and every non-Secrets permission
//! of every role is kept (each role's rules compared request by request with the engine's
//! `RuleAllows`).

mod cli_support;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cli_support::{run, run_in};
use secretscope::rbac::rule::{rule_allows, rule_allows_non_resource, ResourceRequest};
use secretscope::rbac::{ObjectRef, PolicyRule, RbacObject, RuleWord};
use serde_json::Value;

fn roles(dir: &Path) -> BTreeMap<ObjectRef, Vec<PolicyRule>> {
    let loaded = secretscope::manifest::load_paths(&[dir.to_path_buf()]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
    loaded
        .objects
        .into_iter()
        .filter_map(|o| {
            let r = o.object.object_ref();
            match o.object {
                RbacObject::ClusterRole(c) => Some((r, c.rules)),
                RbacObject::Role(role) => Some((r, role.rules)),
                _ => None,
            }
        })
        .collect()
}

/// Denied Secrets findings by object, with whether their remediation needed a person.
fn secrets_denials(report: &Value) -> BTreeMap<String, bool> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "deny" && f["route"]["type"] == "secrets")
        .map(|f| {
            let edits = f["remediation"]["edits"].as_array();
            let manual = edits.is_none_or(|e| e.iter().any(|e| e["action"] == "needs-human"));
            (f["object"].to_string(), manual)
        })
        .collect()
}

/// Every request `before` allows, `after` allows too, except on core `secrets`; and `after`
/// allows nothing new. Requests are built from every value the rules mention, plus probes.
fn assert_same_but_secrets(role: &ObjectRef, before: &[PolicyRule], after: &[PolicyRule]) {
    let mentioned = |f: fn(&PolicyRule) -> &Vec<RuleWord>| -> BTreeSet<String> {
        before
            .iter()
            .chain(after)
            .flat_map(|r| f(r).iter().map(|w| w.to_string()))
            .collect()
    };
    let mut verbs = mentioned(|r| &r.verbs);
    verbs.extend(["get", "list", "create", "escalate"].map(String::from));
    let mut groups = mentioned(|r| &r.api_groups);
    groups.extend(["", "x.io"].map(String::from));
    let mut resources = mentioned(|r| &r.resources);
    resources.extend(["pods", "secrets", "pods/exec"].map(String::from));
    let mut names = mentioned(|r| &r.resource_names);
    names.insert(String::new());
    let listed_groups = mentioned(|r| &r.api_groups);
    for verb in verbs.iter().filter(|v| *v != "*") {
        for group in groups.iter().filter(|g| *g != "*") {
            for resource in resources.iter().filter(|r| !r.contains('*')) {
                let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
                for name in &names {
                    let req = ResourceRequest::new(verb, group, res)
                        .subresource(sub)
                        .named(name);
                    let was = before.iter().any(|r| rule_allows(r, &req));
                    let is = after.iter().any(|r| rule_allows(r, &req));
                    // `apiGroups: ["*"]` rules lose `secrets` of groups they never named.
                    let secrets = res == "secrets"
                        && sub.is_empty()
                        && (group.is_empty() || !listed_groups.contains(group));
                    assert!(
                        !is || was,
                        "{role}: {verb} {group}/{resource} {name:?} is new"
                    );
                    assert!(
                        is || !was || secrets,
                        "{role}: {verb} {group}/{resource} {name:?} lost"
                    );
                    if secrets {
                        assert!(!is, "{role}: still {verb} on secrets");
                    }
                }
            }
        }
    }
    let urls = |rules: &[PolicyRule]| -> Vec<PolicyRule> {
        rules
            .iter()
            .filter(|r| !r.non_resource_urls.is_empty())
            .cloned()
            .collect()
    };
    assert_eq!(
        urls(before),
        urls(after),
        "{role}: nonResourceURLs untouched"
    );
    let _ = rule_allows_non_resource;
}

#[test]
fn corpus_round_trip_checks_clean_and_keeps_other_permissions() {
    let Some(dir) = common::corpus_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "corpus missing in CI"
        );
        return;
    };
    let shared = dir.parent().and_then(Path::parent).expect("shared/");
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().to_str().expect("utf-8");
    let (code, _, err) = run_in(
        Some(shared),
        &["fix", "--out-dir", out_dir, "corpus/rbac"],
        None,
    );
    // argo-cd's `resources: ["*"]` and the bindings of built-in cluster-admin need a person.
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs a person: ClusterRole \"argocd-application-controller\" rule 1: resources [\"*\"]"), "{err}");
    assert!(err.contains("tenancy:\n  verbs: ["), "{err}");
    assert!(
        err.contains(
            "  - {kind: ServiceAccount, name: \"cert-manager\", namespace: \"cert-manager\"}"
        ),
        "{err}"
    );

    // Files the fix did not touch are not written; put the originals beside the rewrites.
    let fixed = out.path().join("corpus/rbac");
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        let target = fixed.join(path.file_name().expect("name"));
        if path.extension().is_some_and(|e| e == "yaml") && !target.exists() {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
    let check = |d: &Path| {
        let (_, out, err) = run(
            &["check", "--format", "json", d.to_str().expect("utf-8")],
            None,
        );
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {err}"));
        assert_eq!(v["summary"]["errors"], 0, "{}", v["errors"]);
        v
    };
    let (before, after) = (check(&dir), check(&fixed));
    assert_eq!(before["summary"]["objects"], after["summary"]["objects"]);
    let (was, now) = (secrets_denials(&before), secrets_denials(&after));
    let fixable = was.values().filter(|m| !**m).count();
    assert!(fixable > 30, "{fixable} of {}", was.len());
    for (object, manual) in &now {
        assert_eq!(
            was.get(object),
            Some(manual),
            "{object} is still denied but was fixable"
        );
        assert!(manual, "{object} was rewritten yet is still denied");
    }

    let (roles_before, roles_after) = (roles(&dir), roles(&fixed));
    assert_eq!(
        roles_before.keys().collect::<Vec<_>>(),
        roles_after.keys().collect::<Vec<_>>()
    );
    let mut changed = 0;
    for (role, rules) in &roles_before {
        let new = &roles_after[role];
        if rules != new {
            changed += 1;
            assert_same_but_secrets(role, rules, new);
        }
    }
    assert!(changed > 30, "{changed} roles rewritten");
}

#[test]
fn stdout_stream_lists_and_json() {
    let list = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleList
items:
- metadata: {name: lister}
  rules:
  - apiGroups: ["", apps]
    resources: [secrets, deployments]
    verbs: [get]
  - nonResourceURLs: [/healthz]
    verbs: [get]
---
# kept as written, comment included
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: lister}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: lister}
subjects: [{kind: User, name: "no"}]
"#;
    let (code, out, err) = run(&["fix", "-"], Some(list));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("# kept as written, comment included\n"),
        "{out}"
    );
    assert!(
        err.contains("1 rules in 1 roles rewritten in 1 files; 0 left for a person"),
        "{err}"
    );
    assert!(
        err.contains("  verbs: [get]\n  subjects:\n  - {kind: User, name: \"no\"}"),
        "{err}"
    );
    let (code, report, _) = run(&["check", "--format", "json", "-"], Some(&out));
    assert_eq!(code, 0, "the rewrite checks clean: {report}");
    let v: Value = serde_json::from_str(&report).expect("json");
    assert_eq!(v["summary"]["objects"], 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("role.json");
    let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]});
    std::fs::write(&json, role.to_string()).expect("write");
    let (code, _, err) = run(
        &["fix", "--scope", "strict", json.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(code, 1, "resources [\"*\"] cannot be rewritten: {err}");
    assert!(err.contains("0 rules in 0 roles rewritten"), "{err}");

    // An Azure role definition is not rewritten: its edits are listed and the run is not fixed.
    let azure = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/azure/admin-credential-by-wildcard.json"
    );
    let (code, out, err) = run(&["fix", azure], None);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains(r#""Actions": ["Microsoft.ContainerService/managedClusters/*"],"#),
        "{out}"
    );
    assert!(
        err.contains("0 rules in 0 roles rewritten in 0 files; 1 left for a person")
            && err.contains(r#"admin-credential-by-wildcard.json: Azure in role "AKS contributor (custom)": add "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action" to NotActions"#),
        "{err}"
    );

    let (code, _, err) = run(&["fix", "-"], Some("kind: [\n"));
    assert_eq!(code, 2);
    assert!(err.contains("nothing written"), "{err}");
}
