//! Reading manifests: files, directories and stdin holding multi-document YAML, JSON and `List`
//! kinds, decoded into RBAC objects that remember where they came from. Used by `check` and by
//! `serve --standalone --state`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::rbac::RbacObject;

/// YAML 1.2 core booleans only: under YAML 1.1 a role named `y` or `no` silently becomes a bool.
pub fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

/// Where a document came from: file, 1-based position among the stream's non-empty documents,
/// and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub document: usize,
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} (line {})",
            self.file, self.document, self.line
        )
    }
}

#[derive(Debug, Clone)]
pub struct LoadedObject {
    pub object: RbacObject,
    pub origin: Origin,
}

/// A document or file that could not be read. Other documents are still loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InputError {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(d) = self.document {
            write!(f, ": document {d}")?;
        }
        if let Some(l) = self.line {
            write!(f, " (line {l})")?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, Default)]
pub struct Loaded {
    pub objects: Vec<LoadedObject>,
    pub errors: Vec<InputError>,
    /// Raw documents that are not RBAC objects (for other readers, e.g. Azure role definitions).
    pub other: Vec<(Origin, serde_json::Value)>,
    pub files: usize,
    /// Documents read, whatever their kind (errors included).
    pub documents: usize,
    /// The paths given to `load_paths` that held no document.
    pub empty_paths: Vec<String>,
}

impl Loaded {
    pub fn merge(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
        self.other.extend(other.other);
        self.files += other.files;
        self.documents += other.documents;
        self.empty_paths.extend(other.empty_paths);
    }
}

/// Loads every path: `-` is stdin, a directory is walked for `.yaml`, `.yml` and `.json` files
/// (sorted, so output is stable; hidden files and directories such as `.git` skipped; symlinks
/// followed, with a loop reported once as an input error rather than walked again and again).
/// Paths that hold no document at all are an input error: a CI gate must not pass on a wrong path.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let mut out = Loaded::default();
    for path in paths {
        let before = out.documents;
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => out.merge(parse_stream(&text, "<stdin>", false)),
                Err(e) => out.errors.push(file_error("<stdin>", e)),
            }
        } else if path.is_dir() {
            let walk = walkdir::WalkDir::new(path)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')
                });
            for entry in walk {
                match entry {
                    Ok(e) if e.file_type().is_file() && is_manifest(e.path()) => {
                        out.merge(load_file(e.path()))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let at = e.path().unwrap_or(path).display().to_string();
                        out.errors.push(file_error(&at, e));
                    }
                }
            }
        } else {
            out.merge(load_file(path));
        }
        out.empty_paths
            .extend((out.documents == before).then(|| path.display().to_string()));
    }
    out
}

impl Loaded {
    /// An input error per given path that held no document at all, for readers (`check`) for
    /// which a wrong path must not pass as "nothing to report". `--state` may be empty.
    pub fn require_documents(&mut self) {
        for path in std::mem::take(&mut self.empty_paths) {
            if !self
                .errors
                .iter()
                .any(|e| same_path(&e.file, Path::new(&path)))
            {
                self.errors.push(file_error(
                    &path,
                    "no YAML or JSON documents here (a directory is searched for .yaml, .yml and .json files)",
                ));
            }
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn same_path(file: &str, path: &Path) -> bool {
    Path::new(file).starts_with(path) || (file == "<stdin>" && path.as_os_str() == "-")
}

fn file_error(file: &str, e: impl fmt::Display) -> InputError {
    InputError {
        file: file.to_string(),
        document: None,
        line: None,
        message: e.to_string(),
    }
}

pub fn load_file(path: &Path) -> Loaded {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let json = path.extension().and_then(|e| e.to_str()) == Some("json");
            parse_stream(&text, &name, json)
        }
        Err(e) => Loaded {
            errors: vec![file_error(&name, e)],
            files: 1,
            ..Default::default()
        },
    }
}

/// Parses one stream. JSON files go through serde_json for its exact errors; everything else
/// (stdin included) through the YAML parser, which reads JSON too.
pub fn parse_stream(text: &str, file: &str, json: bool) -> Loaded {
    let mut out = Loaded {
        files: 1,
        ..Default::default()
    };
    let docs: Vec<(usize, u64, serde_json::Value)> = if json {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => vec![(1, 1, v)],
            Err(e) => {
                out.errors.push(InputError {
                    file: file.to_string(),
                    document: Some(1),
                    line: Some(e.line() as u64),
                    message: format!("invalid JSON: {e}"),
                });
                return out;
            }
        }
    } else {
        // Each document is parsed, and may fail, on its own: one syntax error loses only its
        // document, and the parser's budgets (aliases, depth, size) bound one document rather
        // than capping how many a file may hold.
        let mut docs = Vec::new();
        let mut count = 0;
        for (first_line, chunk) in yaml_documents(text) {
            match serde_saphyr::from_multiple_with_options::<Spanned<serde_json::Value>>(
                chunk,
                yaml_options(),
            ) {
                Ok(parsed) => {
                    for d in parsed {
                        count += 1;
                        docs.push((count, first_line - 1 + d.referenced.line(), d.value));
                    }
                }
                Err(e) => {
                    count += 1;
                    out.errors.push(InputError {
                        file: file.to_string(),
                        document: Some(count),
                        line: Some(first_line - 1 + e.location().map_or(1, |l| l.line())),
                        message: format!(
                            "invalid YAML (lines counted from the document's start, line {first_line}): {e}"
                        ),
                    });
                }
            }
        }
        docs
    };
    out.documents = docs.len() + out.errors.len();
    for (document, line, value) in docs {
        let origin = Origin {
            file: file.to_string(),
            document,
            line,
        };
        decode_document(value, &origin, &mut out);
    }
    out
}

/// The documents of a YAML stream with the line each starts on: split at document markers
/// (`---` at the start of a line, which YAML forbids inside any scalar).
pub fn yaml_documents(text: &str) -> Vec<(u64, &str)> {
    let mut out = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1u64, 0usize);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if marker && offset > start {
            out.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i as u64 + 1;
        }
        offset += line.len();
    }
    if offset > start {
        out.push((start_line, &text[start..]));
    }
    out
}

/// One document: an RBAC object, a `List` (or `ClusterRoleList` etc.) of them, or something
/// else, kept aside in `other`.
fn decode_document(mut value: serde_json::Value, origin: &Origin, out: &mut Loaded) {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    if kind.ends_with("List") {
        if let Some(serde_json::Value::Array(items)) = value.get_mut("items").map(std::mem::take) {
            let api_version = value.get("apiVersion").cloned();
            let item_kind = kind.trim_end_matches("List").to_string();
            for mut item in items {
                // Items of typed lists (ClusterRoleList) carry no kind/apiVersion of their own.
                if let serde_json::Value::Object(map) = &mut item {
                    if !map.contains_key("kind") && !item_kind.is_empty() {
                        map.insert("kind".into(), item_kind.clone().into());
                    }
                    if let (false, Some(v)) = (map.contains_key("apiVersion"), &api_version) {
                        map.insert("apiVersion".into(), v.clone());
                    }
                }
                decode_document(item, origin, out);
            }
            return;
        }
    }
    match RbacObject::from_value(&value) {
        Ok(Some(object)) => out.objects.push(LoadedObject {
            object,
            origin: origin.clone(),
        }),
        Ok(None) => out.other.push((origin.clone(), value)),
        Err(e) => out.errors.push(InputError {
            file: origin.file.clone(),
            document: Some(origin.document),
            line: Some(origin.line),
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_lists_and_other_kinds() {
        let text = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: y}
  rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBindingList
items:
- metadata: {name: x}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: no}
"#;
        let loaded = parse_stream(text, "t.yaml", false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.other.len(), 1);
        assert_eq!(
            loaded.objects[0].object.metadata().name,
            "y",
            "`y` stays a string"
        );
        assert_eq!(loaded.objects[0].origin.document, 2);
        match &loaded.objects[1].object {
            RbacObject::ClusterRoleBinding(b) => assert_eq!(b.role_ref.name, "no"),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn errors_name_file_document_line_and_field() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: b}\nrules: [{verbs: get}]\n";
        let loaded = parse_stream(text, "bad.yaml", false);
        assert_eq!(loaded.objects.len(), 1, "the good document is kept");
        let e = &loaded.errors[0];
        assert_eq!((e.document, e.line), (Some(2), Some(5)));
        assert!(
            e.to_string()
                .starts_with("bad.yaml: document 2 (line 5): invalid ClusterRole: rules[0].verbs:"),
            "{e}"
        );
    }

    /// Nine levels of nine aliases would expand to 387M nodes: the parser's budget stops it.
    #[test]
    fn alias_bombs_are_refused_not_expanded() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let loaded = parse_stream(&text, "bomb.yaml", false);
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].message.contains("budget"),
            "{:?}",
            loaded.errors
        );
    }

    /// Issue 10: a syntax error drops only its own document, and a file may hold more
    /// documents than the parser's per-parse budget.
    #[test]
    fn a_bad_document_loses_only_itself_and_large_streams_load() {
        let text = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\n---\nkind: [unclosed\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: after}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n";
        let loaded = parse_stream(text, "mixed.yaml", false);
        assert_eq!(loaded.objects.len(), 2, "{:?}", loaded.errors);
        assert_eq!(loaded.objects[1].object.metadata().name, "after");
        assert_eq!(loaded.objects[1].origin.line, 7);
        assert_eq!(loaded.objects[1].origin.document, 3);
        assert_eq!(loaded.errors.len(), 1);
        assert_eq!(loaded.errors[0].document, Some(2));
        assert_eq!(loaded.errors[0].line, Some(5));

        let many: String = (0..5_000)
            .map(|i| format!("---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: r{i}}}\n"))
            .collect();
        let loaded = parse_stream(&many, "many.yaml", false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
        assert_eq!(loaded.objects.len(), 5_000);
        assert_eq!(loaded.objects[4_999].origin.document, 5_000);
    }

    /// Issue 10: a directory walk skips hidden directories (`.git`), reports a symlink loop once
    /// instead of walking it again and again, and a path with no documents is an input error.
    #[test]
    fn directory_walk_skips_hidden_detects_loops_and_needs_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("charts/sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        let role =
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n";
        std::fs::write(root.join("charts/sub/a.yaml"), role).unwrap();
        std::fs::write(root.join(".git/hidden.yaml"), role).unwrap();
        std::os::unix::fs::symlink(root.join("charts"), root.join("charts/sub/loop")).unwrap();
        let loaded = load_paths(&[root.to_path_buf()]);
        assert_eq!(loaded.objects.len(), 1, "{:?}", loaded.objects);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert!(
            loaded.errors[0].message.contains("loop"),
            "{}",
            loaded.errors[0]
        );

        let empty = tempfile::tempdir().expect("tempdir");
        std::fs::write(empty.path().join("README.md"), "not a manifest").unwrap();
        let mut loaded = load_paths(&[empty.path().to_path_buf()]);
        assert!(loaded.errors.is_empty(), "an empty --state is fine");
        loaded.require_documents();
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0]
            .message
            .contains("no YAML or JSON documents"));
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        for text in [
            "a: [",
            "\t- x: y\n  z",
            "key: 'unterminated",
            "*anchor",
            "{{{{",
        ] {
            let loaded = parse_stream(text, "broken.yaml", false);
            assert_eq!(loaded.errors.len(), 1, "{text:?}");
        }
        let loaded = parse_stream("{\"kind\": ", "broken.json", true);
        assert!(loaded.errors[0].message.starts_with("invalid JSON"));
    }
}
