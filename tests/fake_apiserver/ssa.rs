//! Server-side apply, reduced to what the kinds in this fake need: field ownership per leaf, where
//! maps (objects, labels, annotations) are granular and every list is atomic. That matches the
//! real schemas of the kinds served here (`Role.rules`, `RoleBinding.subjects` are
//! `+listType=atomic`; Lease and Namespace have no lists in the applied fields). Not modelled:
//! `listType=map`/`set` merging, the shared ownership of equal values by several appliers, and
//! `managedFields` in responses (clients here never read them).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub type Path = Vec<String>;

/// Who manages each leaf field of one object.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    owners: BTreeMap<Path, String>,
}

/// Fields the API server owns itself; never part of ownership.
fn server_owned(path: &[String]) -> bool {
    match path {
        [top] => top == "apiVersion" || top == "kind",
        [meta, field, ..] if meta == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "managedFields"
                | "generation"
        ),
        [status, ..] => status == "status",
        [] => true,
    }
}

pub fn leaves(value: &Value) -> BTreeMap<Path, Value> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeMap<Path, Value>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if server_owned(path) => {}
            _ => {
                out.insert(path.clone(), v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn set(v: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for k in parents {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at
            .as_object_mut()
            .map(|m| {
                m.entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
            })
            .expect("object");
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    if let Some(m) = at.as_object_mut() {
        m.insert(last.clone(), leaf);
    }
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = v;
    for k in parents {
        match at.get_mut(k) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(m) = at.as_object_mut() {
        m.remove(last);
    }
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub path: Path,
    pub manager: String,
}

impl Conflict {
    /// As the API server prints it: `.rules`, `.metadata.labels.team`.
    pub fn field(&self) -> String {
        self.path.iter().map(|p| format!(".{p}")).collect()
    }
}

/// Applies `applied` as `manager`: its fields take their values and become the manager's; fields
/// the manager applied before and no longer does are removed. Without `force`, a field another
/// manager owns with a different value is a conflict and nothing changes.
pub fn apply(
    existing: Option<(&Value, &Ownership)>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<(Value, Ownership), Vec<Conflict>> {
    let (mut object, mut ownership) = match existing {
        Some((o, own)) => (o.clone(), own.clone()),
        None => (Value::Object(Map::new()), Ownership::default()),
    };
    let wanted = leaves(applied);
    let conflicts: Vec<Conflict> = wanted
        .iter()
        .filter_map(|(path, value)| {
            let owner = ownership.owners.get(path)?;
            (owner != manager && get(&object, path) != Some(value)).then(|| Conflict {
                path: path.clone(),
                manager: owner.clone(),
            })
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let dropped: Vec<Path> = ownership
        .owners
        .iter()
        .filter(|(path, owner)| *owner == manager && !wanted.contains_key(*path))
        .map(|(path, _)| path.clone())
        .collect();
    for path in dropped {
        ownership.owners.remove(&path);
        remove(&mut object, &path);
    }
    for (path, value) in wanted {
        set(&mut object, &path, value);
        ownership.owners.insert(path, manager.to_string());
    }
    for key in ["apiVersion", "kind"] {
        if let Some(v) = applied.get(key) {
            set(&mut object, &[key.to_string()], v.clone());
        }
    }
    Ok((object, ownership))
}

/// An update (PUT, merge or strategic patch) by `manager`: it takes every field it changed and
/// fields that disappeared lose their owner. Updates never conflict.
pub fn update(old: &Value, ownership: &Ownership, new: &Value, manager: &str) -> Ownership {
    let before = leaves(old);
    let after = leaves(new);
    let mut owners = ownership.owners.clone();
    owners.retain(|path, _| after.contains_key(path));
    for (path, value) in after {
        if before.get(&path) != Some(&value) {
            owners.insert(path, manager.to_string());
        }
    }
    Ownership { owners }
}

#[cfg(test)]
#[allow(unused_imports)] // benches include this file without running its tests
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn force_takes_over_and_plain_apply_conflicts() {
        let role = json!({"metadata": {"labels": {"a": "1"}}, "rules": [{"verbs": ["get"]}]});
        let (o, own) = apply(None, &role, "secretscope", true).expect("create");
        let mut edited = o.clone();
        edited["rules"] = json!([{"verbs": ["*"]}]);
        let own = update(&o, &own, &edited, "kubectl-edit");
        let conflicts = apply(Some((&edited, &own)), &role, "secretscope", false).unwrap_err();
        assert_eq!(conflicts[0].field(), ".rules");
        assert_eq!(conflicts[0].manager, "kubectl-edit");
        let (fixed, _) = apply(Some((&edited, &own)), &role, "secretscope", true).expect("force");
        assert_eq!(fixed["rules"], role["rules"]);
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let first = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let (o, own) = apply(None, &first, "m", false).expect("create");
        let second = json!({"metadata": {"labels": {"a": "1"}}});
        let (o, _) = apply(Some((&o, &own)), &second, "m", false).expect("apply");
        assert_eq!(o["metadata"]["labels"], json!({"a": "1"}));
    }
}
