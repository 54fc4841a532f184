//! Azure role definitions for AKS clusters that use Azure RBAC for Kubernetes authorization.
//!
//! Effective data-plane permission is what a `dataActions` pattern matches and no
//! `notDataActions` pattern of the same permission block matches; blocks add up. Patterns are
//! case-insensitive (Azure operation names are) and `*` matches any run of characters. Secrets
//! access is `Microsoft.ContainerService/managedClusters/secrets/{read,write,delete}`. An assignable
//! scope ending in `/namespaces/<name>` is namespace scope; any other scope (subscription,
//! resource group, cluster) reaches every namespace of every cluster below it.

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

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Permission {
    #[serde(default, alias = "DataActions", rename = "dataActions")]
    pub data_actions: Vec<String>,
    #[serde(default, alias = "NotDataActions", rename = "notDataActions")]
    pub not_data_actions: Vec<String>,
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
}

impl RoleDefinition {
    /// Recognises a role definition document; `None` for anything else.
    pub fn from_value(v: &serde_json::Value) -> Option<Self> {
        let v = v.get("properties").unwrap_or(v);
        let obj = v.as_object()?;
        let looks_like = ["DataActions", "dataActions", "permissions", "Permissions"]
            .iter()
            .any(|k| obj.contains_key(*k))
            && ["AssignableScopes", "assignableScopes"]
                .iter()
                .any(|k| obj.contains_key(*k));
        if !looks_like {
            return None;
        }
        serde_json::from_value(v.clone()).ok()
    }

    /// The human name: `roleName` when there is one, else `Name`/`name`.
    pub fn display_name(&self) -> &str {
        self.role_name.as_deref().unwrap_or(&self.name)
    }

    fn blocks(&self) -> impl Iterator<Item = &Permission> {
        std::iter::once(&self.top_level).chain(self.permissions.iter())
    }

    /// Whether `action` is granted: some block allows it and does not exclude it.
    pub fn allows(&self, action: &str) -> bool {
        self.blocks().any(|p| {
            p.data_actions.iter().any(|a| action_matches(a, action))
                && !p.not_data_actions.iter().any(|a| action_matches(a, action))
        })
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
/// namespace, info when only at namespace scope.
pub fn evaluate_azure(role: &RoleDefinition) -> Option<AzureFinding> {
    let verbs: Vec<String> = SECRETS_ACTIONS
        .iter()
        .filter(|(_, action)| role.allows(action))
        .map(|(verb, _)| verb.to_string())
        .collect();
    if verbs.is_empty() {
        return None;
    }
    let wide: Vec<String> = role
        .cluster_wide_scopes()
        .into_iter()
        .map(String::from)
        .collect();
    let (severity, message) = if wide.is_empty() {
        (
            Severity::Info,
            format!(
                "secretscope: Azure role \"{}\" grants Secrets {} only at namespace scope",
                role.display_name(),
                verbs.join(", ")
            ),
        )
    } else {
        (
            Severity::Deny,
            format!(
                "secretscope: Azure role \"{}\" grants cluster-wide Secrets {} (Microsoft.ContainerService/managedClusters/secrets/*) and is assignable at {}, which covers every namespace",
                role.display_name(),
                verbs.join(", "),
                wide.join(", ")
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
        let role = RoleDefinition::from_value(&v).unwrap();
        let f = evaluate_azure(&role).unwrap();
        assert_eq!(f.severity, Severity::Info);
        assert_eq!(f.role, "tenant secrets");
        // `az role definition list`: a GUID in `name`, the display name in `roleName`.
        let listed = serde_json::json!({"name": "6f8a-guid", "roleName": "Listed", "assignableScopes": ["/"],
            "permissions": [{"dataActions": ["Microsoft.ContainerService/managedClusters/secrets/*"]}]});
        assert_eq!(
            evaluate_azure(&RoleDefinition::from_value(&listed).unwrap())
                .unwrap()
                .role,
            "Listed"
        );
        let sub = serde_json::json!({"Name": "x", "DataActions": ["*"], "AssignableScopes": ["/subscriptions/0000"]});
        assert_eq!(
            evaluate_azure(&RoleDefinition::from_value(&sub).unwrap())
                .unwrap()
                .severity,
            Severity::Deny
        );
        assert!(RoleDefinition::from_value(&serde_json::json!({"kind": "ConfigMap"})).is_none());
    }
}
