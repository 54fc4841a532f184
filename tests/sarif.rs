//! `check --format sarif` as GitHub code scanning ingests it: every output validated against the
//! official SARIF 2.1.0 schema and GitHub's required fields, on the corpus, stdin and odd paths.

mod cli_support;
mod common;

use std::collections::HashSet;

use cli_support::{assert_valid_sarif, run, run_in};
use serde_json::Value;

const GRANT: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: syncer}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: syncer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: syncer}
subjects: [{kind: ServiceAccount, name: syncer, namespace: tools}]
"#;

fn sarif(v: &str) -> Value {
    let log: Value = serde_json::from_str(v).expect("sarif is json");
    assert_valid_sarif(&log);
    log
}

fn results(log: &Value) -> &Vec<Value> {
    log["runs"][0]["results"].as_array().expect("results")
}

fn location(result: &Value) -> (&Value, &Value) {
    let p = &result["locations"][0]["physicalLocation"];
    (&p["artifactLocation"], &p["region"])
}

#[test]
fn corpus_one_result_per_grant_at_the_rule() {
    let Some(dir) = common::corpus_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "corpus missing in CI"
        );
        return;
    };
    let root = dir.parent().and_then(|p| p.parent()).expect("shared/");
    // Relative paths from the repository root, as a CI job passes them.
    let (code, out, err) = run_in(
        Some(root),
        &["check", "--format", "sarif", "corpus/rbac"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    let log = sarif(&out);
    let results = results(&log);
    // Text output has a deny per object (role and binding each); SARIF one per grant.
    let (_, text, _) = run_in(Some(root), &["check", "corpus/rbac"], None);
    let text_denies = text.lines().filter(|l| l.starts_with("DENY")).count();
    let errors: Vec<&Value> = results.iter().filter(|r| r["level"] == "error").collect();
    assert!(
        errors.len() * 2 <= text_denies + 3,
        "{} results for {text_denies} denies",
        errors.len()
    );
    // No binding result whose role has a result of its own.
    let paired = errors
        .iter()
        .filter(|r| {
            r["relatedLocations"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    assert!(
        paired * 10 >= errors.len() * 8,
        "{paired} of {}",
        errors.len()
    );

    let cainjector = results
        .iter()
        .find(|r| {
            r["message"]["text"]
                .as_str()
                .is_some_and(|m| m.starts_with("ClusterRole \"cert-manager-cainjector\""))
        })
        .expect("cert-manager-cainjector");
    let (artifact, region) = location(cainjector);
    assert_eq!(artifact["uri"], "corpus/rbac/cert-manager.yaml");
    assert_eq!(artifact["uriBaseId"], "%SRCROOT%");
    // rule 2 of the ClusterRole, `- apiGroups: [""]` at line 21 (its document starts at 7).
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(21), Some(5))
    );
    let related = &cainjector["relatedLocations"][0];
    assert!(related["message"]["text"]
        .as_str()
        .is_some_and(|m| m.starts_with("ClusterRoleBinding \"cert-manager-cainjector\"")));
    assert_eq!(
        cainjector["properties"]["reach"][0],
        serde_json::json!({"verb": "get", "secrets": "all"})
    );
    assert!(cainjector["message"]["text"]
        .as_str()
        .is_some_and(|m| m.contains("Fix: remove ClusterRole \"cert-manager-cainjector\" rule 2")));

    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    let secrets = rules
        .iter()
        .find(|r| r["id"] == "secrets")
        .expect("secrets rule");
    assert_eq!(secrets["properties"]["security-severity"], "9.1");
    assert!(secrets["properties"]["tags"]
        .as_array()
        .is_some_and(|t| t.contains(&"security".into())));
    let fingerprints: HashSet<&str> = results
        .iter()
        .filter_map(|r| r["partialFingerprints"]["secretscope/v1"].as_str())
        .collect();
    assert_eq!(fingerprints.len(), results.len(), "fingerprints are unique");
}

#[test]
fn stdin_odd_paths_and_stable_fingerprints() {
    let (code, out, _) = run(&["check", "--format", "sarif", "-"], Some(GRANT));
    assert_eq!(code, 1);
    let log = sarif(&out);
    let r = &results(&log)[0];
    let (artifact, region) = location(r);
    assert_eq!(artifact["uri"], "%3Cstdin%3E");
    assert_eq!(region["startLine"], 8, "rule 2 of the role");
    assert_eq!(results(&log).len(), 1, "role and binding are one grant");
    assert_eq!(
        r["relatedLocations"][0]["physicalLocation"]["region"]["startLine"],
        12
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let odd = dir.path().join("my charts #1/ü?");
    std::fs::create_dir_all(&odd).expect("mkdir");
    std::fs::write(odd.join("a:b role.yaml"), GRANT).expect("write");
    let base = dir.path().to_str().expect("utf-8 tempdir");
    let (_, out, _) = run(
        &["check", "--format", "sarif", "--sarif-base", base, base],
        None,
    );
    let log = sarif(&out);
    let (artifact, _) = location(&results(&log)[0]);
    assert_eq!(
        artifact["uri"],
        "my%20charts%20%231/%C3%BC%3F/a%3Ab%20role.yaml"
    );
    assert_eq!(artifact["uriBaseId"], "%SRCROOT%");
    let fingerprint = results(&log)[0]["partialFingerprints"].clone();

    // Outside the base: an absolute file URI. And lines moved: the same fingerprint.
    std::fs::write(odd.join("a:b role.yaml"), format!("# moved\n\n{GRANT}")).expect("write");
    let (_, out, _) = run(
        &[
            "check",
            "--format",
            "sarif",
            "--sarif-base",
            "/nonexistent",
            base,
        ],
        None,
    );
    let log = sarif(&out);
    let (artifact, region) = location(&results(&log)[0]);
    assert!(
        artifact["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("file:///") && u.ends_with("/a%3Ab%20role.yaml")),
        "{artifact}"
    );
    assert!(artifact.get("uriBaseId").is_none());
    assert_eq!(region["startLine"], 10);
    assert_eq!(results(&log)[0]["partialFingerprints"], fingerprint);
}

#[test]
fn input_errors_at_their_line_and_help_links() {
    let broken = format!("{GRANT}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: x\nrules: [\n");
    let (code, out, _) = run(
        &[
            "check",
            "--format",
            "sarif",
            "--help-uri",
            "https://example.org/secretscope/README.md",
            "-",
        ],
        Some(&broken),
    );
    assert_eq!(code, 2);
    let log = sarif(&out);
    let error = results(&log)
        .iter()
        .find(|r| r["ruleId"] == "input-error")
        .expect("input error");
    let (_, region) = location(error);
    assert_eq!(
        region["startLine"], 22,
        "`rules: [` is line 22 of the stream: {error}"
    );
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    assert!(rules.iter().all(|r| r["helpUri"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://example.org/secretscope/README.md#"))));

    // Info findings only with --show-info, as in the other formats.
    let unbound = GRANT.split("---").next().unwrap_or_default();
    let (_, out, _) = run(&["check", "--format", "sarif", "-"], Some(unbound));
    assert!(results(&sarif(&out)).is_empty());
    let (_, out, _) = run(
        &["check", "--format", "sarif", "--show-info", "-"],
        Some(unbound),
    );
    let log = sarif(&out);
    assert_eq!(results(&log)[0]["level"], "note");
}

/// action.yml and .pre-commit-hooks.yaml parse, and the command line the action runs works.
#[test]
fn the_action_and_the_hooks() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let action: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("action.yml")).expect("action.yml"),
    )
    .expect("action.yml is YAML");
    assert_eq!(action["runs"]["using"], "composite");
    let script = action["runs"]["steps"][1]["run"]
        .as_str()
        .expect("check step");
    assert!(
        script.contains(
            "check --format sarif --sarif-base \"$GITHUB_WORKSPACE\" --fail-on \"$FAIL_ON\""
        ),
        "{script}"
    );
    let hooks: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join(".pre-commit-hooks.yaml")).expect("hooks"),
    )
    .expect("hooks are YAML");
    assert_eq!(hooks[0]["entry"], "secretscope check");

    let (code, out, err) = run(
        &[
            "check",
            "--format",
            "sarif",
            "--sarif-base",
            env!("CARGO_MANIFEST_DIR"),
            "--fail-on",
            "warn",
            "tests/fixtures/cases/strict/rbac.yaml",
        ],
        None,
    );
    assert_eq!(code, 1, "the pod-exec route is a warning: {err}");
    let log = sarif(&out);
    let (artifact, _) = location(&results(&log)[0]);
    assert_eq!(artifact["uri"], "tests/fixtures/cases/strict/rbac.yaml");
}
