//! Azure role definitions for AKS clusters that use Azure RBAC for Kubernetes authorization.
//!
//! Effective data-plane permission is what a `dataActions` pattern matches and no
//! `notDataActions` pattern of the same permission block matches; blocks add up. Patterns are
//! case-insensitive (Azure operation names are) and `*` matches any run of characters. Secrets
//! access is `Microsoft.ContainerService/managedClusters/secrets/{read,write,delete}`. An assignable
//! scope ending in `/namespaces/<name>` is namespace scope; any other scope (subscription,
//! resource group, cluster) reaches every namespace of every cluster below it.
//!
//! The control plane counts too: `Actions` matching
//! `Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action` hand out the
//! cluster-admin kubeconfig, which bypasses Azure RBAC for Kubernetes altogether: every Secret.

use serde::{Deserialize, Serialize};

use super::finding::Severity;

pub const SECRETS_ACTIONS: [(&str, &str); 3] = [
    (
        "read",
        "Microsoft.ContainerService/managedClusters/secrets/read",
    ),
    (
        "write",
        "Microsoft.ContainerService/managedClusters/secrets/write",
    ),
    (
        "delete",
        "Microsoft.ContainerService/managedClusters/secrets/delete",
    ),
];

/// The control-plane action that returns the cluster-admin kubeconfig.
pub const ADMIN_CREDENTIAL_ACTION: &str =
    "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Permission {
    #[serde(default, alias = "Actions")]
    pub actions: Vec<String>,
    #[serde(default, alias = "NotActions", rename = "notActions")]
    pub not_actions: Vec<String>,
    #[serde(default, alias = "DataActions", rename = "dataActions")]
    pub data_actions: Vec<String>,
    #[serde(default, alias = "NotDataActions", rename = "notDataActions")]
    pub not_data_actions: Vec<String>,
}

/// How a block grants an action: the pattern that matches it. A block grants when some
/// `allow` pattern matches and no `deny` pattern does.
fn granting<'p>(allow: &'p [String], deny: &[String], action: &str) -> Option<&'p str> {
    if deny.iter().any(|d| action_matches(d, action)) {
        return None;
    }
    allow
        .iter()
        .find(|a| action_matches(a, action))
        .map(String::as_str)
}

/// The fields that matter, in either spelling: the PowerShell/CLI definition file (`Name`,
/// `DataActions`, ... at the top) or the REST/`az role definition list` shape (`roleName`,
/// `permissions: [...]`, possibly under `properties`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoleDefinition {
    /// `roleName` in the REST shape, where `name` is the definition's GUID.
    #[serde(default, rename = "roleName")]
    pub role_name: Option<String>,
    #[serde(default, alias = "Name")]
    pub name: String,
    #[serde(default, alias = "AssignableScopes", rename = "assignableScopes")]
    pub assignable_scopes: Vec<String>,
    #[serde(default, alias = "Permissions")]
    pub permissions: Vec<Permission>,
    #[serde(flatten)]
    pub top_level: Permission,
    /// Keys spelled as in the REST shape (`notDataActions`), so edits name fields as written.
    #[serde(skip)]
    pub camel_case: bool,
}

/// A list field of a permission block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListField {
    Actions,
    NotActions,
    DataActions,
    NotDataActions,
}

impl ListField {
    fn key(self, camel_case: bool) -> &'static str {
        match (self, camel_case) {
            (Self::Actions, false) => "Actions",
            (Self::Actions, true) => "actions",
            (Self::NotActions, false) => "NotActions",
            (Self::NotActions, true) => "notActions",
            (Self::DataActions, false) => "DataActions",
            (Self::DataActions, true) => "dataActions",
            (Self::NotDataActions, false) => "NotDataActions",
            (Self::NotDataActions, true) => "notDataActions",
        }
    }
}

/// Where a permission block is: the top level of a definition file, or `permissions[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    TopLevel,
    Permissions(usize),
}

/// The patterns of one block's allow list that grant some of the asked actions there (not
/// excluded by that block's deny list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockGrant<'r> {
    pub block: Block,
    pub patterns: Vec<&'r str>,
}

impl RoleDefinition {
    /// Recognises a role definition document: `Ok(None)` for anything else, `Err` (with the
    /// field) for one that looks like a role definition but is malformed, e.g. `DataActions`
    /// given as a string: skipping it would pass a role nobody judged.
    pub fn from_value(v: &serde_json::Value) -> Result<Option<Self>, String> {
        let v = v.get("properties").unwrap_or(v);
        let Some(obj) = v.as_object() else {
            return Ok(None);
        };
        let looks_like = [
            "Actions",
            "actions",
            "DataActions",
            "dataActions",
            "permissions",
            "Permissions",
        ]
        .iter()
        .any(|k| obj.contains_key(*k))
            && ["AssignableScopes", "assignableScopes"]
                .iter()
                .any(|k| obj.contains_key(*k));
        if !looks_like {
            return Ok(None);
        }
        // Checked by name first: flattened fields lose their path in serde's error.
        let lists = [
            "Actions",
            "actions",
            "NotActions",
            "notActions",
            "DataActions",
            "dataActions",
            "NotDataActions",
            "notDataActions",
            "AssignableScopes",
            "assignableScopes",
        ];
        let blocks = ["permissions", "Permissions"]
            .iter()
            .filter_map(|k| obj.get(*k)?.as_array())
            .flatten()
            .filter_map(|b| b.as_object());
        for block in std::iter::once(obj).chain(blocks) {
            for key in lists {
                if let Some(value) = block.get(key).filter(|v| !v.is_array()) {
                    let kind = match value {
                        serde_json::Value::String(_) => "a string",
                        serde_json::Value::Object(_) => "an object",
                        _ => "not a list",
                    };
                    return Err(format!(
                        "invalid Azure role definition: {key} is {kind}; it must be a list of strings (e.g. [\"...\"])"
                    ));
                }
            }
        }
        let camel_case = [
            "actions",
            "notActions",
            "dataActions",
            "notDataActions",
            "assignableScopes",
            "permissions",
        ]
        .iter()
        .any(|k| obj.contains_key(*k));
        serde_path_to_error::deserialize(v)
            .map(|role: Self| Some(Self { camel_case, ..role }))
            .map_err(|e| format!("invalid Azure role definition: {}: {}", e.path(), e.inner()))
    }

    /// The path of a list field as the definition spells it: `NotActions`,
    /// `permissions[0].notDataActions`.
    pub fn field_path(&self, block: Block, field: ListField) -> String {
        let key = field.key(self.camel_case);
        match block {
            Block::TopLevel => key.to_string(),
            Block::Permissions(i) => {
                let permissions = if self.camel_case {
                    "permissions"
                } else {
                    "Permissions"
                };
                format!("{permissions}[{i}].{key}")
            }
        }
    }

    fn indexed_blocks(&self) -> impl Iterator<Item = (Block, &Permission)> {
        std::iter::once((Block::TopLevel, &self.top_level)).chain(
            self.permissions
                .iter()
                .enumerate()
                .map(|(i, p)| (Block::Permissions(i), p)),
        )
    }

    /// Per block, every `DataActions` pattern that grants one of `actions` there: all of them
    /// must go for the grant to go (blocks add up).
    pub fn data_grants(&self, actions: &[&str]) -> Vec<BlockGrant<'_>> {
        self.grants_in_blocks(actions, |p| (&p.data_actions, &p.not_data_actions))
    }

    /// Per block, every `Actions` pattern that grants one of `actions` there.
    pub fn action_grants(&self, actions: &[&str]) -> Vec<BlockGrant<'_>> {
        self.grants_in_blocks(actions, |p| (&p.actions, &p.not_actions))
    }

    fn grants_in_blocks<'r>(
        &'r self,
        actions: &[&str],
        lists: impl Fn(&'r Permission) -> (&'r Vec<String>, &'r Vec<String>),
    ) -> Vec<BlockGrant<'r>> {
        self.indexed_blocks()
            .filter_map(|(block, p)| {
                let (allow, deny) = lists(p);
                let granted: Vec<&str> = actions
                    .iter()
                    .copied()
                    .filter(|a| !deny.iter().any(|d| action_matches(d, a)))
                    .collect();
                let patterns: Vec<&str> = allow
                    .iter()
                    .map(String::as_str)
                    .filter(|pattern| granted.iter().any(|a| action_matches(pattern, a)))
                    .collect();
                (!patterns.is_empty()).then_some(BlockGrant { block, patterns })
            })
            .collect()
    }

    /// Assignable scopes of one namespace.
    pub fn namespace_scopes(&self) -> Vec<&str> {
        self.assignable_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| is_namespace_scope(s))
            .collect()
    }

    /// The human name: `roleName` when there is one, else `Name`/`name`.
    pub fn display_name(&self) -> &str {
        self.role_name.as_deref().unwrap_or(&self.name)
    }

    fn blocks(&self) -> impl Iterator<Item = &Permission> {
        std::iter::once(&self.top_level).chain(self.permissions.iter())
    }

    /// The `DataActions` pattern that grants data action `action`, if a block grants it.
    pub fn grants_data(&self, action: &str) -> Option<&str> {
        self.blocks()
            .find_map(|p| granting(&p.data_actions, &p.not_data_actions, action))
    }

    /// The `Actions` pattern that grants control-plane action `action`, if a block grants it.
    pub fn grants_action(&self, action: &str) -> Option<&str> {
        self.blocks()
            .find_map(|p| granting(&p.actions, &p.not_actions, action))
    }

    pub fn allows(&self, action: &str) -> bool {
        self.grants_data(action).is_some()
    }

    /// Assignable scopes wider than one namespace.
    pub fn cluster_wide_scopes(&self) -> Vec<&str> {
        self.assignable_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !is_namespace_scope(s))
            .collect()
    }
}

/// Case-insensitive glob where `*` matches any run of characters, `/` included.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return a.is_empty(),
    };
    let Some(mut remaining) = a.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Every Secrets data action, for a `NotDataActions` entry.
pub const SECRETS_WILDCARD: &str = "Microsoft.ContainerService/managedClusters/secrets/*";

/// Whether a `DataActions` pattern matches Secrets actions only, so removing it loses nothing
/// else.
pub fn secrets_only(pattern: &str) -> bool {
    pattern
        .to_ascii_lowercase()
        .starts_with("microsoft.containerservice/managedclusters/secrets/")
}

/// The shape of a namespace scope below `scope`, with placeholders for what it leaves open.
pub fn namespace_scope_below(scope: &str) -> String {
    const CLUSTER: &str = "providers/Microsoft.ContainerService/managedClusters/<cluster>";
    let s = scope.trim_end_matches('/');
    let lower = s.to_ascii_lowercase();
    if lower.contains("/managedclusters/") {
        format!("{s}/namespaces/<namespace>")
    } else if lower.contains("/resourcegroups/") {
        format!("{s}/{CLUSTER}/namespaces/<namespace>")
    } else if lower.starts_with("/subscriptions/") && !lower.contains("/providers/") {
        format!("{s}/resourceGroups/<group>/{CLUSTER}/namespaces/<namespace>")
    } else {
        // The root or a management group: a namespace lives in one subscription's cluster.
        format!(
            "/subscriptions/<subscription>/resourceGroups/<group>/{CLUSTER}/namespaces/<namespace>"
        )
    }
}

/// `.../managedClusters/<cluster>/namespaces/<name>`.
fn is_namespace_scope(scope: &str) -> bool {
    let lower = scope.trim_end_matches('/').to_ascii_lowercase();
    lower
        .rsplit_once("/namespaces/")
        .is_some_and(|(cluster, ns)| {
            !ns.is_empty() && !ns.contains('/') && cluster.contains("/managedclusters/")
        })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureFinding {
    pub role: String,
    pub severity: Severity,
    /// read, write, delete.
    pub verbs: Vec<String>,
    pub cluster_wide_scopes: Vec<String>,
    pub message: String,
}

/// Secrets access of an Azure role definition: deny-level when it can be assigned wider than a
/// namespace, info when only at namespace scope. The message names the pattern that grants it
/// and the exclusion that would remove it.
pub fn evaluate_azure(role: &RoleDefinition) -> Option<AzureFinding> {
    let name = super::text::clip(role.display_name(), super::text::SHOWN_CHARS);
    let wide: Vec<String> = role
        .cluster_wide_scopes()
        .into_iter()
        .map(String::from)
        .collect();
    let scopes = super::text::quoted_list(wide.iter().map(String::as_str));
    // The admin kubeconfig bypasses Kubernetes authorization: every Secret of the cluster,
    // whatever the scope it is assigned at below the cluster.
    if let Some(pattern) = role.grants_action(ADMIN_CREDENTIAL_ACTION) {
        return Some(AzureFinding {
            role: role.display_name().to_string(),
            severity: Severity::Deny,
            verbs: ["read", "write", "delete"].map(String::from).to_vec(),
            cluster_wide_scopes: wide,
            message: format!(
                "secretscope: Azure role \"{name}\" can list the cluster-admin credential ({ADMIN_CREDENTIAL_ACTION}, granted by Actions pattern \"{pattern}\"), a kubeconfig that bypasses Azure RBAC for Kubernetes: every Secret of the cluster; add it to NotActions"
            ),
        });
    }
    let granted: Vec<(&str, &str)> = SECRETS_ACTIONS
        .iter()
        .filter_map(|(verb, action)| role.grants_data(action).map(|p| (*verb, p)))
        .collect();
    if granted.is_empty() {
        return None;
    }
    let verbs: Vec<String> = granted.iter().map(|(v, _)| v.to_string()).collect();
    let mut patterns: Vec<&str> = granted.iter().map(|(_, p)| *p).collect();
    patterns.dedup();
    let by = format!(
        "granted by DataActions {}",
        super::text::quoted_list(patterns.iter().copied())
    );
    let (severity, message) = if wide.is_empty() {
        (
            Severity::Info,
            format!(
                "secretscope: Azure role \"{name}\" grants Secrets {} ({by}) and can be assigned only at namespace scope",
                verbs.join(", ")
            ),
        )
    } else {
        (
            Severity::Deny,
            format!(
                "secretscope: Azure role \"{name}\" grants Secrets {} ({by}) and can be assigned at {scopes}, wider than one namespace: assigned there, it reaches every namespace's Secrets; add \"Microsoft.ContainerService/managedClusters/secrets/*\" to NotDataActions or limit AssignableScopes to .../namespaces/<name>",
                verbs.join(", ")
            ),
        )
    };
    Some(AzureFinding {
        role: role.display_name().to_string(),
        severity,
        verbs,
        cluster_wide_scopes: wide,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1";

    #[test]
    fn patterns() {
        let read = SECRETS_ACTIONS[0].1;
        assert!(action_matches(
            "Microsoft.ContainerService/managedClusters/*",
            read
        ));
        assert!(action_matches(
            "microsoft.containerservice/managedclusters/secrets/READ",
            read
        ));
        assert!(action_matches("Microsoft.ContainerService/*/read", read));
        assert!(action_matches("*", read));
        assert!(!action_matches(
            "Microsoft.ContainerService/managedClusters/secrets/write",
            read
        ));
        assert!(!action_matches(
            "Microsoft.ContainerService/managedClusters/configmaps/*",
            read
        ));
        assert!(!action_matches(
            "Microsoft.ContainerService/managedClusters/secrets",
            read
        ));
    }

    #[test]
    fn data_actions_minus_not_data_actions() {
        let role: RoleDefinition = serde_json::from_value(serde_json::json!({
            "Name": "AKS everything but secrets",
            "DataActions": ["Microsoft.ContainerService/managedClusters/*"],
            "NotDataActions": ["Microsoft.ContainerService/managedClusters/secrets/*"],
            "AssignableScopes": [CLUSTER]
        }))
        .unwrap();
        assert!(evaluate_azure(&role).is_none());

        let role: RoleDefinition = serde_json::from_value(serde_json::json!({
            "roleName": "writer",
            "permissions": [
                {"dataActions": ["Microsoft.ContainerService/managedClusters/*"],
                 "notDataActions": ["Microsoft.ContainerService/managedClusters/secrets/read"]},
                {"dataActions": ["Microsoft.ContainerService/managedClusters/secrets/delete"]}
            ],
            "assignableScopes": [CLUSTER]
        }))
        .unwrap();
        let f = evaluate_azure(&role).unwrap();
        assert_eq!(f.verbs, vec!["write", "delete"]);
        assert_eq!(f.severity, Severity::Deny);
    }

    #[test]
    fn namespace_scope_is_not_cluster_wide() {
        let v = serde_json::json!({"properties": {
            "roleName": "tenant secrets",
            "permissions": [{"dataActions": ["Microsoft.ContainerService/managedClusters/secrets/read"]}],
            "assignableScopes": [format!("{CLUSTER}/namespaces/az-acme")]
        }});
        let role = RoleDefinition::from_value(&v).unwrap().unwrap();
        let f = evaluate_azure(&role).unwrap();
        assert_eq!(f.severity, Severity::Info);
        assert_eq!(f.role, "tenant secrets");
        // `az role definition list`: a GUID in `name`, the display name in `roleName`.
        let listed = serde_json::json!({"name": "6f8a-guid", "roleName": "Listed", "assignableScopes": ["/"],
            "permissions": [{"dataActions": ["Microsoft.ContainerService/managedClusters/secrets/*"]}]});
        assert_eq!(
            evaluate_azure(&RoleDefinition::from_value(&listed).unwrap().unwrap())
                .unwrap()
                .role,
            "Listed"
        );
        let sub = serde_json::json!({"Name": "x", "DataActions": ["*"], "AssignableScopes": ["/subscriptions/0000"]});
        assert_eq!(
            evaluate_azure(&RoleDefinition::from_value(&sub).unwrap().unwrap())
                .unwrap()
                .severity,
            Severity::Deny
        );
        assert!(
            RoleDefinition::from_value(&serde_json::json!({"kind": "ConfigMap"}))
                .unwrap()
                .is_none()
        );
    }

    /// Issue 10: the admin credential is cluster-wide Secrets access; a malformed definition
    /// is an error, not skipped; messages name the granting pattern and the fix.
    #[test]
    fn admin_credentials_malformed_roles_and_messages() {
        let admin = serde_json::json!({"Name": "ops", "Actions": ["Microsoft.ContainerService/managedClusters/list*"],
            "AssignableScopes": [CLUSTER]});
        let f = evaluate_azure(&RoleDefinition::from_value(&admin).unwrap().unwrap()).unwrap();
        assert_eq!(f.severity, Severity::Deny);
        assert!(
            f.message.contains("cluster-admin credential")
                && f.message
                    .contains("\"Microsoft.ContainerService/managedClusters/list*\""),
            "{}",
            f.message
        );
        let excluded = serde_json::json!({"Name": "ops", "Actions": ["*"],
            "NotActions": [ADMIN_CREDENTIAL_ACTION], "AssignableScopes": [CLUSTER]});
        assert!(evaluate_azure(&RoleDefinition::from_value(&excluded).unwrap().unwrap()).is_none());

        let string = serde_json::json!({"Name": "x", "DataActions": "Microsoft.ContainerService/managedClusters/secrets/read",
            "AssignableScopes": [CLUSTER]});
        let err = RoleDefinition::from_value(&string).unwrap_err();
        assert!(
            err.contains("DataActions") || err.contains("dataActions"),
            "{err}"
        );

        let reader = serde_json::json!({"Name": "r", "DataActions": ["Microsoft.ContainerService/managedClusters/*/read"],
            "AssignableScopes": [CLUSTER]});
        let f = evaluate_azure(&RoleDefinition::from_value(&reader).unwrap().unwrap()).unwrap();
        assert!(
            f.message.contains(
                "granted by DataActions \"Microsoft.ContainerService/managedClusters/*/read\""
            ),
            "{}",
            f.message
        );
        assert!(f.message.contains("to NotDataActions"), "{}", f.message);
    }
}
