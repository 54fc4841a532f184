//! `secretscope test`: secretscope-test.yaml cases with expected verdicts, as `kyverno test`.

mod cli_support;
mod common;

use cli_support::run;

#[test]
fn committed_cases_pass() {
    if common::corpus_dir().is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "corpus missing in CI"
        );
        return;
    }
    let (code, out, err) = run(&["test", "tests/fixtures/cases"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PASS  cert-manager: ClusterRole \"cert-manager-cainjector\": deny"),
        "{out}"
    );
    assert!(
        out.contains(
            "PASS  strict scope: ClusterRoleBinding \"ci-exec\" (indirect/pod-exec): warn"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("secretscope test: 2 files, 0 failed expectations, 0 errors\n"),
        "{out}"
    );
}

#[test]
fn failures_typos_and_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let case = dir.path().join("case");
    std::fs::create_dir_all(&case).expect("mkdir");
    std::fs::write(
        case.join("rbac.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: syncer}\nrules: [{apiGroups: [\"\"], resources: [secrets], verbs: [get]}]\n",
    )
    .expect("write");
    std::fs::write(
        case.join("secretscope-test.yaml"),
        "name: wrong\nresources: [rbac.yaml]\nresults:\n- {kind: ClusterRole, name: syncer, result: deny}\n- {kind: ClusterRole, name: synser, result: pass}\n",
    )
    .expect("write");
    let d = dir.path().to_str().expect("utf-8");
    let (code, out, _) = run(&["test", d], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  wrong: ClusterRole \"syncer\": expected deny, got info"),
        "an unbound role is info: {out}"
    );
    assert!(
        out.contains("FAIL  wrong: ClusterRole \"synser\": not among the resources"),
        "{out}"
    );

    std::fs::write(
        case.join("secretscope-test.yaml"),
        "name: bad\nresources: [rbac.yaml]\nresults:\n- {kind: ClusterRole, name: syncer, verdict: deny}\n",
    )
    .expect("write");
    let (code, out, _) = run(&["test", d], None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("ERROR ") && out.contains("not a secretscope test file"),
        "{out}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(&["test", empty.path().to_str().expect("utf-8")], None);
    assert_eq!(code, 2);
    assert!(err.contains("no secretscope-test.yaml"), "{err}");
}

/// Every flag and argument of every subcommand says what it is for.
#[test]
fn every_flag_has_help() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.get_help().is_none() && id != "help" && id != "version" {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(
        &secretscope::cli::Cli::command(),
        "secretscope",
        &mut missing,
    );
    assert!(missing.is_empty(), "flags without help: {missing:#?}");
}

#[test]
fn version_completions_and_man_pages() {
    let (code, out, _) = run(&["--version"], None);
    assert_eq!(code, 0);
    assert_eq!(out, format!("secretscope {}\n", env!("CARGO_PKG_VERSION")));
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let (code, out, err) = run(&["completions", shell], None);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            out.contains("fail-on") && out.contains("sarif-base"),
            "{shell}"
        );
    }
    let (code, out, _) = run(&["man"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains(".TH secretscope 1") && out.contains("check"),
        "{out}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = run(
        &["man", "--out-dir", dir.path().to_str().expect("utf-8")],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let check =
        std::fs::read_to_string(dir.path().join("secretscope-check.1")).expect("check page");
    assert!(check.contains("fail\\-on"), "{check}");
    assert!(dir.path().join("secretscope-fix.1").exists());
}

/// The README's `secretscope check` section shows real output: each `$ command` block there is
/// what the binary prints for it now (stdout; `fix` also its stderr summary and tenancy snippet).
#[test]
fn readme_shows_real_output() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let commands: [&[&str]; 4] = [
        &["check", "examples/fix/portal-api.yaml"],
        &["check", "examples/azure/admin-credential-by-wildcard.json"],
        &["fix", "examples/fix/portal-api.yaml"],
        &["test", "examples/test"],
    ];
    for args in commands {
        let (_, out, err) = run(args, None);
        let block = format!("$ secretscope {}\n{out}```\n", args.join(" "));
        assert!(readme.contains(&block), "README lacks, exactly:\n{block}");
        if args[0] == "fix" {
            let block = format!("```\n{err}```\n");
            assert!(readme.contains(&block), "README lacks, exactly:\n{block}");
        }
    }
    let (_, out, _) = run(
        &["check", "--format", "json", "examples/fix/portal-api.yaml"],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    let edit = &report["findings"][1]["remediation"]["edits"][0];
    let shown = serde_json::json!({"role": edit["role"], "rule": edit["rule"],
        "action": edit["action"], "rules": edit["rules"]});
    // The line after the README's `jq` command, compared as JSON (jq keeps its key order).
    let printed = readme
        .lines()
        .skip_while(|l| !l.contains("jq -c '.findings[1].remediation.edits[0]"))
        .nth(1)
        .expect("the jq example");
    let printed: serde_json::Value = serde_json::from_str(printed).expect("jq output is JSON");
    assert_eq!(printed, shown);
}
