//! The text of the inputs, kept (stdin) or read again (files), for what the loader does not
//! record: where in a document a rule or a `roleRef` is. Used by SARIF regions and by `fix`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::manifest::{self, Loaded, Origin};
use crate::rbac::ObjectRef;

pub const STDIN: &str = "<stdin>";

/// The given paths loaded, with stdin's text kept (it cannot be read twice).
pub struct Inputs {
    pub loaded: Loaded,
    pub sources: Sources,
}

/// Loads `paths` as `manifest::load_paths` does, but reads stdin here so its text stays.
pub fn load(paths: &[PathBuf]) -> Inputs {
    let mut loaded = Loaded::default();
    let mut stdin = None;
    for path in paths {
        if path.as_os_str() != "-" {
            loaded.merge(manifest::load_paths(std::slice::from_ref(path)));
            continue;
        }
        let mut text = String::new();
        let part = match std::io::stdin().read_to_string(&mut text) {
            Ok(_) => manifest::parse_stream(&text, STDIN, false),
            Err(e) => Loaded {
                errors: vec![manifest::InputError {
                    file: STDIN.into(),
                    document: None,
                    line: None,
                    message: format!("cannot read stdin: {e}"),
                }],
                ..Default::default()
            },
        };
        if part.documents == 0 {
            loaded.empty_paths.push("-".into());
        }
        loaded.merge(part);
        stdin = Some(text);
    }
    loaded.require_documents();
    Inputs {
        loaded,
        sources: Sources {
            stdin: stdin.map(Rc::from),
            files: RefCell::default(),
        },
    }
}

/// Where something is in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// What to find in an object's document.
#[derive(Debug, Clone, Copy)]
pub enum Anchor {
    /// `.rules[i]`, 0-based.
    Rule(usize),
    /// A binding's `roleRef`.
    RoleRef,
}

pub struct Sources {
    stdin: Option<Rc<str>>,
    files: RefCell<HashMap<String, Option<Rc<str>>>>,
}

/// The fields positions are taken from; everything else is skipped unread.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Doc {
    kind: Option<String>,
    metadata: Option<Meta>,
    rules: Option<Vec<Spanned<IgnoredAny>>>,
    #[serde(rename = "roleRef")]
    role_ref: Option<Spanned<IgnoredAny>>,
    items: Option<Vec<Spanned<Doc>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
}

impl Sources {
    /// The file's text (stdin's as read); `None` when it cannot be read (again).
    pub fn text(&self, file: &str) -> Option<Rc<str>> {
        if file == STDIN {
            return self.stdin.clone();
        }
        self.files
            .borrow_mut()
            .entry(file.to_string())
            .or_insert_with(|| std::fs::read_to_string(file).ok().map(Rc::from))
            .clone()
    }

    /// The position of `anchor` of `object` in the document at `origin` (a `List` is searched for
    /// the item by name), or `None` when the text is gone or does not parse (the caller falls
    /// back to the document's line).
    pub fn position(
        &self,
        origin: &Origin,
        object: &ObjectRef,
        anchor: Anchor,
    ) -> Option<Position> {
        let text = self.text(&origin.file)?;
        let (first_line, chunk) = manifest::yaml_documents(&text)
            .into_iter()
            .take_while(|(line, _)| *line <= origin.line)
            .last()?;
        let doc: Doc = serde_saphyr::from_str_with_options(chunk, manifest::yaml_options()).ok()?;
        let span = find(&doc, object, anchor)?;
        Some(Position {
            line: first_line - 1 + span.line(),
            column: span.column().max(1),
        })
    }
}

fn find(doc: &Doc, object: &ObjectRef, anchor: Anchor) -> Option<serde_saphyr::Location> {
    if let Some(items) = &doc.items {
        return items
            .iter()
            .filter(|item| matches(&item.value, object))
            .find_map(|item| find(&item.value, object, anchor));
    }
    match anchor {
        Anchor::Rule(i) => doc.rules.as_ref()?.get(i).map(|r| r.referenced),
        Anchor::RoleRef => doc.role_ref.as_ref().map(|r| r.referenced),
    }
}

/// Items of a typed list (`ClusterRoleList`) carry no kind: the name (and namespace) decide.
fn matches(doc: &Doc, object: &ObjectRef) -> bool {
    let meta = doc.metadata.as_ref();
    doc.kind
        .as_deref()
        .is_none_or(|k| k == object.kind.as_str())
        && meta.and_then(|m| m.name.as_deref()) == Some(object.name.as_str())
        && meta.and_then(|m| m.namespace.as_deref()) == object.namespace.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::RbacKind;

    fn sources(text: &str) -> Sources {
        Sources {
            stdin: Some(Rc::from(text)),
            files: RefCell::default(),
        }
    }

    fn at(line: u64) -> Origin {
        Origin {
            file: STDIN.into(),
            document: 1,
            line,
        }
    }

    fn cluster_role(name: &str) -> ObjectRef {
        ObjectRef {
            kind: RbacKind::ClusterRole,
            name: name.into(),
            namespace: None,
        }
    }

    #[test]
    fn rules_in_block_flow_and_list_documents() {
        let text = "# comment\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\nrules:\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [get]\n  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [get]\n---\nkind: ClusterRoleList\nitems:\n- metadata: {name: b}\n  rules: [{verbs: [get]}, {verbs: [list]}]\n";
        let s = sources(text);
        let p = s.position(&at(3), &cluster_role("a"), Anchor::Rule(1));
        assert_eq!(p.map(|p| p.line), Some(10));
        let p = s.position(&at(14), &cluster_role("b"), Anchor::Rule(1));
        assert_eq!(p.map(|p| p.line), Some(17));
        assert!(p.is_some_and(|p| p.column > 20), "{p:?}");
        assert_eq!(
            s.position(&at(14), &cluster_role("c"), Anchor::Rule(0)),
            None
        );
        assert_eq!(
            s.position(&at(3), &cluster_role("a"), Anchor::Rule(5)),
            None
        );
    }
}
