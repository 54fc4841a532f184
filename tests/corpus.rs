//! Verdicts on the shared corpus of real-world RBAC (../shared/corpus/rbac) against the reviewed
//! table in tests/corpus-verdicts.yaml. Every ClusterRole and ClusterRoleBinding that grants
//! Secrets access is listed there with its verdict under the default policy (binding-aware,
//! enforce) and a reason reviewed by hand, so any change of verdict shows up in review.
//!
//! `SECRETSCOPE_BLESS=1 cargo test --test corpus` rewrites the table from what the engine says,
//! keeping reasons; new entries get `TODO`, which fails the test until someone writes a reason.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use secretscope::manifest;
use secretscope::policy::Policy;
use secretscope::rbac::budget::{Budget, DEFAULT_WORK_LIMIT};
use secretscope::rbac::{
    evaluate, ClusterState, EffectiveRules, RbacObject, Route, SecretsAccess, Severity,
};
use serde::Deserialize;

const TABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus-verdicts.yaml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Entry {
    verdict: String,
    verbs: String,
    reason: String,
}

type Table = BTreeMap<String, BTreeMap<String, Entry>>;

/// What the engine says about one corpus file, as `kind/name -> (verdict, verbs)`.
fn judge_file(path: &Path, policy: &Policy) -> BTreeMap<String, (String, String)> {
    let loaded = manifest::load_file(path);
    assert!(
        loaded.errors.is_empty(),
        "{}: {:?}",
        path.display(),
        loaded.errors
    );
    let mut state = ClusterState::with_builtins();
    state.extend(loaded.objects.iter().map(|o| o.object.clone()));
    let mut out = BTreeMap::new();
    for o in &loaded.objects {
        let role = match &o.object {
            RbacObject::ClusterRole(cr) => state.cluster_role(&cr.metadata.name),
            RbacObject::ClusterRoleBinding(b) => state.cluster_role(&b.role_ref.name),
            _ => continue,
        };
        let Some(role) = role else { continue };
        let rules = EffectiveRules::of_cluster_role(role, &state, &Budget::new(DEFAULT_WORK_LIMIT))
            .expect("the corpus is within budget");
        let access = SecretsAccess::of(&rules);
        if access.is_empty() {
            continue;
        }
        let verdict = evaluate(&o.object, &state, &policy.eval)
            .expect("the corpus is within budget")
            .into_iter()
            .filter(|f| f.route == Route::Secrets)
            .map(|f| f.severity)
            .max()
            .map_or("exempt", |s| match s {
                Severity::Deny => "deny",
                Severity::Warn => "warn",
                Severity::Info => "allow",
            });
        let verbs: Vec<String> = access.verbs().iter().map(|v| v.to_string()).collect();
        let key = format!("{}/{}", o.object.kind(), o.object.metadata().name);
        out.insert(key, (verdict.to_string(), verbs.join(" ")));
    }
    out
}

fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn bless(actual: &BTreeMap<String, BTreeMap<String, (String, String)>>, old: &Table) {
    let mut text = String::from(
        "# Verdicts of secretscope (default policy: scope bindings, mode enforce, built-in ClusterRoles\n\
         # present) on every ClusterRole and ClusterRoleBinding of ../shared/corpus/rbac that grants\n\
         # Secrets access, each file judged on its own. verdict: deny (rejected at admission), allow\n\
         # (admitted: unbound, namespace-only or granted only to exempt subjects), exempt (a bootstrap\n\
         # role the policy does not judge). Reasons are reviewed by hand; tests/corpus.rs checks the rest.\n",
    );
    for (file, entries) in actual {
        let _ = writeln!(
            text,
            "\n{file}:{}",
            if entries.is_empty() { " {}" } else { "" }
        );
        for (object, (verdict, verbs)) in entries {
            let reason = old
                .get(file)
                .and_then(|e| e.get(object))
                .map_or("TODO", |e| e.reason.as_str());
            let _ = writeln!(
                text,
                "  {}:\n    verdict: {verdict}\n    verbs: {verbs}\n    reason: {}",
                yaml_string(object),
                yaml_string(reason)
            );
        }
    }
    std::fs::write(TABLE, text).expect("write corpus table");
}

#[test]
fn corpus_verdicts_match_the_reviewed_table() {
    let Some(dir) = common::corpus_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "../shared/corpus/rbac is missing, and CI=true: the corpus test must run in CI"
        );
        eprintln!("skipping: ../shared/corpus/rbac not found beside this checkout");
        return;
    };
    let policy = Policy::default();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "corpus looks incomplete: {files:?}");
    let actual: BTreeMap<String, BTreeMap<String, (String, String)>> = files
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, judge_file(p, &policy))
        })
        .collect();

    let old: Table = std::fs::read_to_string(TABLE)
        .ok()
        .and_then(|t| serde_saphyr::from_str(&t).ok())
        .unwrap_or_default();
    if std::env::var("SECRETSCOPE_BLESS").as_deref() == Ok("1") {
        bless(&actual, &old);
    }
    let table: Table = serde_saphyr::from_str(&std::fs::read_to_string(TABLE).expect("read table"))
        .expect("parse tests/corpus-verdicts.yaml");

    let mut problems = Vec::new();
    for (file, entries) in &actual {
        let Some(expected) = table.get(file) else {
            problems.push(format!(
                "{file}: not in the table (SECRETSCOPE_BLESS=1 to add it)"
            ));
            continue;
        };
        for (object, (verdict, verbs)) in entries {
            match expected.get(object) {
                None => problems.push(format!(
                    "{file}: {object} ({verdict}: {verbs}) is not in the table"
                )),
                Some(e) if (&e.verdict, &e.verbs) != (verdict, verbs) => problems.push(format!(
                    "{file}: {object}: engine says {verdict} ({verbs}), table says {} ({})",
                    e.verdict, e.verbs
                )),
                Some(e) if e.reason.trim().is_empty() || e.reason == "TODO" => {
                    problems.push(format!("{file}: {object}: needs a reviewed reason"))
                }
                Some(_) => {}
            }
        }
        for object in expected.keys().filter(|o| !entries.contains_key(*o)) {
            problems.push(format!(
                "{file}: {object} is in the table but no longer grants Secrets access"
            ));
        }
    }
    for file in table.keys().filter(|f| !actual.contains_key(*f)) {
        problems.push(format!("{file}: in the table but not in the corpus"));
    }
    assert!(
        problems.is_empty(),
        "{} corpus verdict problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
