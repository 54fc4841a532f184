//! The subset of `rbac.authorization.k8s.io/v1` that the engine needs, decoded straight from
//! request or manifest JSON. Fields the decision does not use (managedFields, status, ...) are
//! skipped by serde rather than materialised, which keeps the admission hot path allocation-light.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::word::{words, RuleWord};

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// `null` and absent both mean "empty", as in the Go types (`omitempty` slices and maps).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

/// One entry of `.rules`, as the authorizer reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, deserialize_with = "words")]
    pub verbs: Vec<RuleWord>,
    #[serde(
        default,
        deserialize_with = "words",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub api_groups: Vec<RuleWord>,
    #[serde(
        default,
        deserialize_with = "words",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<RuleWord>,
    #[serde(
        default,
        deserialize_with = "words",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resource_names: Vec<RuleWord>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        deserialize_with = "words",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<RuleWord>,
}

#[cfg(test)]
impl PolicyRule {
    /// `PolicyRule::of(&["get"], &[""], &["secrets"], &[])`, for tests.
    pub fn of(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Self {
        let s = |v: &[&str]| v.iter().map(|s| RuleWord::from(s.to_string())).collect();
        Self {
            verbs: s(verbs),
            api_groups: s(groups),
            resources: s(resources),
            resource_names: s(names),
            non_resource_urls: Vec::new(),
        }
    }
}

impl fmt::Display for PolicyRule {
    /// `(apiGroups [""], resources ["*"], verbs ["get","list"])`: the shape kubectl users know.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::text::json_list as list;
        let mut parts = Vec::new();
        if !self.non_resource_urls.is_empty() {
            parts.push(format!("nonResourceURLs {}", list(&self.non_resource_urls)));
        } else {
            parts.push(format!("apiGroups {}", list(&self.api_groups)));
            parts.push(format!("resources {}", list(&self.resources)));
            if !self.resource_names.is_empty() {
                parts.push(format!("resourceNames {}", list(&self.resource_names)));
            }
        }
        parts.push(format!("verbs {}", list(&self.verbs)));
        write!(f, "({})", parts.join(", "))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AggregationRule {
    #[serde(default, deserialize_with = "null_as_default")]
    pub cluster_role_selectors: Vec<LabelSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRole {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<PolicyRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_rule: Option<AggregationRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::text::{clip, SHOWN_CHARS};
        let name = clip(&self.name, SHOWN_CHARS);
        match (&*self.kind, &self.namespace) {
            ("ServiceAccount", Some(ns)) => {
                write!(f, "ServiceAccount \"{}/{name}\"", clip(ns, SHOWN_CHARS))
            }
            (kind, _) => write!(f, "{} \"{name}\"", clip(kind, SHOWN_CHARS)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleBinding {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subjects: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleBinding {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub role_ref: RoleRef,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subjects: Vec<Subject>,
}

/// The fields of all four kinds at once, for an object read before its kind is looked at: an
/// AdmissionReview's object, decoded in the envelope's own pass rather than scanned as raw JSON
/// and read again. Each field is decoded as the kind's own struct decodes it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyRbacObject {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub aggregation_rule: Option<AggregationRule>,
    #[serde(default)]
    pub role_ref: Option<RoleRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subjects: Vec<Subject>,
}

impl AnyRbacObject {
    /// The object as `kind`; `None` for a binding without its required `roleRef` (decoding the
    /// kind itself then says so).
    pub fn into_kind(self, kind: RbacKind) -> Option<RbacObject> {
        let Self {
            metadata,
            rules,
            aggregation_rule,
            role_ref,
            subjects,
        } = self;
        Some(match kind {
            RbacKind::ClusterRole => RbacObject::ClusterRole(ClusterRole {
                metadata,
                rules,
                aggregation_rule,
            }),
            RbacKind::Role => RbacObject::Role(Role { metadata, rules }),
            RbacKind::ClusterRoleBinding => RbacObject::ClusterRoleBinding(ClusterRoleBinding {
                metadata,
                role_ref: role_ref?,
                subjects,
            }),
            RbacKind::RoleBinding => RbacObject::RoleBinding(RoleBinding {
                metadata,
                role_ref: role_ref?,
                subjects,
            }),
        })
    }
}

/// The four RBAC kinds secretscope judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RbacKind {
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
}

impl RbacKind {
    pub const ALL: [RbacKind; 4] = [
        Self::ClusterRole,
        Self::ClusterRoleBinding,
        Self::Role,
        Self::RoleBinding,
    ];

    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "ClusterRole" => Self::ClusterRole,
            "ClusterRoleBinding" => Self::ClusterRoleBinding,
            "Role" => Self::Role,
            "RoleBinding" => Self::RoleBinding,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterRole => "ClusterRole",
            Self::ClusterRoleBinding => "ClusterRoleBinding",
            Self::Role => "Role",
            Self::RoleBinding => "RoleBinding",
        }
    }
}

impl fmt::Display for RbacKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbacObject {
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
}

impl RbacObject {
    /// Decodes one object of a known kind from any serde source (request JSON, manifest value).
    pub fn decode<'de, D: Deserializer<'de>>(kind: RbacKind, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            RbacKind::ClusterRole => Self::ClusterRole(ClusterRole::deserialize(d)?),
            RbacKind::ClusterRoleBinding => {
                Self::ClusterRoleBinding(ClusterRoleBinding::deserialize(d)?)
            }
            RbacKind::Role => Self::Role(Role::deserialize(d)?),
            RbacKind::RoleBinding => Self::RoleBinding(RoleBinding::deserialize(d)?),
        })
    }

    /// Decodes a manifest document. `Ok(None)` for anything that is not an RBAC object, so
    /// callers can skip Deployments and the like; any `rbac.authorization.k8s.io` version is
    /// accepted (v1beta1 charts still circulate and mean the same).
    pub fn from_value(value: &serde_json::Value) -> Result<Option<Self>, DecodeError> {
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(kind) = RbacKind::from_kind(kind).filter(|_| group == RBAC_GROUP) else {
            return Ok(None);
        };
        // Field paths (`rules[2].verbs[0]`) make the error actionable.
        fn tracked<T: serde::de::DeserializeOwned>(
            kind: RbacKind,
            value: &serde_json::Value,
        ) -> Result<T, DecodeError> {
            serde_path_to_error::deserialize(value).map_err(|e| DecodeError {
                kind,
                path: e.path().to_string(),
                source: e.into_inner(),
            })
        }
        Ok(Some(match kind {
            RbacKind::ClusterRole => Self::ClusterRole(tracked(kind, value)?),
            RbacKind::ClusterRoleBinding => Self::ClusterRoleBinding(tracked(kind, value)?),
            RbacKind::Role => Self::Role(tracked(kind, value)?),
            RbacKind::RoleBinding => Self::RoleBinding(tracked(kind, value)?),
        }))
    }

    pub fn kind(&self) -> RbacKind {
        match self {
            Self::ClusterRole(_) => RbacKind::ClusterRole,
            Self::ClusterRoleBinding(_) => RbacKind::ClusterRoleBinding,
            Self::Role(_) => RbacKind::Role,
            Self::RoleBinding(_) => RbacKind::RoleBinding,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::ClusterRole(o) => &o.metadata,
            Self::ClusterRoleBinding(o) => &o.metadata,
            Self::Role(o) => &o.metadata,
            Self::RoleBinding(o) => &o.metadata,
        }
    }

    pub fn object_ref(&self) -> ObjectRef {
        let meta = self.metadata();
        ObjectRef {
            kind: self.kind(),
            name: meta.name.clone(),
            namespace: match self.kind() {
                RbacKind::Role | RbacKind::RoleBinding => meta.namespace.clone(),
                _ => None,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {kind}: {path}: {source}")]
pub struct DecodeError {
    pub kind: RbacKind,
    pub path: String,
    #[source]
    pub source: serde_json::Error,
}

/// Names an object in findings: `ClusterRoleBinding "x"`, `Role "ns/x"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: RbacKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::text::{clip, SHOWN_CHARS};
        let name = clip(&self.name, SHOWN_CHARS);
        match &self.namespace {
            Some(ns) => write!(f, "{} \"{}/{name}\"", self.kind, clip(ns, SHOWN_CHARS)),
            None => write!(f, "{} \"{name}\"", self.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_missing_fields_mean_empty() {
        let cr: ClusterRole = serde_json::from_str(
            r#"{"metadata":{"name":"x","labels":null,"managedFields":[{"a":1}]},
                "rules":[{"verbs":["get"],"apiGroups":null,"resources":["secrets"],"resourceNames":null}]}"#,
        )
        .unwrap();
        assert_eq!(cr.metadata.name, "x");
        assert!(cr.metadata.labels.is_empty());
        assert!(cr.rules[0].api_groups.is_empty());
        assert!(cr.aggregation_rule.is_none());
    }

    #[test]
    fn rule_display_matches_manifest_shape() {
        let rule = PolicyRule {
            verbs: vec!["get".into(), "list".into()],
            api_groups: vec!["".into()],
            resources: vec!["*".into()],
            ..Default::default()
        };
        assert_eq!(
            rule.to_string(),
            r#"(apiGroups [""], resources ["*"], verbs ["get","list"])"#
        );
    }

    #[test]
    fn unknown_selector_operator_is_a_decode_error() {
        let err = serde_json::from_str::<LabelSelector>(
            r#"{"matchExpressions":[{"key":"a","operator":"Like"}]}"#,
        );
        assert!(err.is_err());
    }
}
