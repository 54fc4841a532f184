//! Running the real binary's CLI subcommands, and validating what they print: SARIF against
//! the official 2.1.0 schema (tests/fixtures/sarif-schema-2.1.0.json) plus the fields GitHub
//! code scanning requires, JSON reports against schemas/check-report.schema.json.

#![allow(dead_code)] // each test file uses part of it

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_secretscope");

/// Runs `secretscope ARGS` in `cwd` (the crate root when `None`), feeding `stdin`.
pub fn run_in(cwd: Option<&Path>, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(BIN);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn secretscope");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A run that fails before reading stdin (a bad --config) closes the pipe: not an error.
        if let Err(e) = pipe.write_all(text.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "stdin: {e}");
        }
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    run_in(None, args, stdin)
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Validates `instance` against the schema file at `schema` (relative to the crate root), with
/// `format` checked too (`uri`, `uri-reference`): that is where bad SARIF URIs fail.
pub fn assert_valid(schema: &str, instance: &Value) {
    assert_valid_value(&fixture(schema), instance);
}

pub fn assert_valid_value(schema: &Value, instance: &Value) {
    let mut schema = schema.clone();
    // The SARIF schema's `language` patterns (`...]?$`) are not valid ECMA-262 regexes, so
    // the meta-schema's `format: regex` rejects the schema itself once formats are checked.
    // secretscope never writes `language`: drop just those patterns, in memory.
    if let Some(defs) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        for def in defs.values_mut() {
            if let Some(language) = def
                .pointer_mut("/properties/language")
                .and_then(Value::as_object_mut)
            {
                language.remove("pattern");
            }
        }
    }
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "schema errors: {errors:#?}");
}

/// The official schema, and what GitHub documents as required for upload: tool.driver.name,
/// every result's ruleId (defined in the driver's rules), message.text, a physical location
/// with an artifact URI and a startLine >= 1, and partialFingerprints.
pub fn assert_valid_sarif(log: &Value) {
    assert_valid("tests/fixtures/sarif-schema-2.1.0.json", log);
    let run = &log["runs"][0];
    assert!(run["tool"]["driver"]["name"].is_string());
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            assert!(r["shortDescription"]["text"].is_string(), "{r}");
            assert!(r["fullDescription"]["text"].is_string(), "{r}");
            assert!(
                r["help"]["text"].is_string() && r["help"]["markdown"].is_string(),
                "{r}"
            );
            r["id"].as_str().expect("rule id")
        })
        .collect();
    for (i, r) in run["results"]
        .as_array()
        .expect("results")
        .iter()
        .enumerate()
    {
        let id = r["ruleId"].as_str().expect("ruleId");
        assert_eq!(
            rules.get(r["ruleIndex"].as_u64().expect("ruleIndex") as usize),
            Some(&id)
        );
        assert!(r["message"]["text"].is_string(), "result {i}");
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(
            loc["artifactLocation"]["uri"].is_string(),
            "result {i}: {r}"
        );
        assert!(
            loc["region"]["startLine"].as_u64().unwrap_or(0) >= 1,
            "result {i}"
        );
        assert!(r["partialFingerprints"].is_object(), "result {i}");
    }
}
