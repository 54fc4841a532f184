//! `secretscope.yaml`: modes, scope, indirect routes, exemptions and the tenancy section.
//! Every field has a safe default; unknown fields and bad values fail start-up with the field named.

use std::path::Path;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::rbac::{
    BindingScope, EvalOptions, GlobError, NameGlobs, RouteAction, SecretsVerb, SubjectPattern,
};

/// What the validating webhook does with a deny-level finding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reject the request.
    #[default]
    Enforce,
    /// Admit it with AdmissionResponse warnings (kubectl prints them).
    Warn,
    /// Admit it silently; log and count.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
            Self::Audit => "audit",
        }
    }
}

/// A subject as the policy names it: `{kind, name, namespace}`. In `exemptions.subjects` the name
/// and namespace are globs and kind may be `*`; in `tenancy.subjects` they are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubjectSpec {
    /// User, Group or ServiceAccount.
    pub kind: String,
    pub name: String,
    /// For ServiceAccounts; in an exemption, absent matches any namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// In an exemption: why this subject is trusted; findings it exempts repeat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SubjectSpec {
    fn new(kind: &str, namespace: Option<&str>, name: &str, reason: &str) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(String::from),
            reason: Some(reason.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Exemptions {
    /// ClusterRoles, by exact name, whose own definition is not judged where they are bound
    /// directly. Bindings to them still are, and so is their aggregation into a bound role.
    /// Globs are accepted but warned about: whoever can create a ClusterRole picks its name.
    #[serde(default)]
    pub cluster_roles: Vec<String>,
    /// Subjects that may hold cluster-wide Secrets access (the control plane, a GitOps controller).
    #[serde(default = "default_exempt_subjects")]
    pub subjects: Vec<SubjectSpec>,
    /// Honour the `secretscope.io/exempt: <reason>` annotation on RBAC objects. Off by default:
    /// whoever can write the object could otherwise exempt it.
    #[serde(default)]
    pub annotation: bool,
}

impl Default for Exemptions {
    fn default() -> Self {
        Self {
            cluster_roles: Vec::new(),
            subjects: default_exempt_subjects(),
            annotation: false,
        }
    }
}

/// The control plane's own identities, as bound by the API server's bootstrap policy:
/// `system:masters` (which bypasses RBAC altogether), the kube-controller-manager, and the
/// kube-system service accounts of the built-in controllers that hold cluster-wide Secrets access
/// (`--use-service-account-credentials`). Named one by one: a blanket `kube-system/*` would hide
/// every third-party component installed there (kube-state-metrics, CSI drivers, ...). Last,
/// secretscope's own ServiceAccount, for the one finding its own RBAC has.
fn default_exempt_subjects() -> Vec<SubjectSpec> {
    const CONTROLLER: &str =
        "a kube-controller-manager controller; the bootstrap policy grants it this";
    let mut subjects = vec![
        SubjectSpec::new(
            "Group",
            None,
            "system:masters",
            "bypasses RBAC altogether; no binding adds to it",
        ),
        SubjectSpec::new(
            "User",
            None,
            "system:kube-controller-manager",
            "the control plane; the bootstrap policy grants it this",
        ),
    ];
    subjects.extend(
        [
            "generic-garbage-collector",
            "namespace-controller",
            "resourcequota-controller",
            "legacy-service-account-token-cleaner",
            // Kubernetes 1.35+: rewrites stored objects, Secrets included, to the new version.
            "storage-version-migrator-controller",
        ]
        .map(|name| SubjectSpec::new("ServiceAccount", Some("kube-system"), name, CONTROLLER)),
    );
    subjects.push(SubjectSpec::new(
        "ServiceAccount",
        Some("secretscope"),
        "secretscope",
        "secretscope's tenancy reconciler: escalate/bind limited to the managed role's name is how it writes the per-namespace Role; see README \"Own RBAC\"",
    ));
    subjects
}

/// How tenancy namespaces get their Secrets access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GrantMode {
    /// A Role per namespace plus a RoleBinding (needs escalate+bind on that Role name).
    #[default]
    Role,
    /// One shared ClusterRole, never bound cluster-wide, plus a RoleBinding per namespace
    /// (needs only bind on that ClusterRole).
    ClusterRole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tenancy {
    /// Namespaces whose name matches are tenancy namespaces; the `tenant` capture names the tenant.
    #[serde(default = "default_name_pattern")]
    pub name_pattern: String,
    /// Namespaces carrying this label (any value) are tenancy namespaces too.
    #[serde(default = "default_tenant_label")]
    pub label: String,
    #[serde(default)]
    pub grant: GrantMode,
    /// Name of the managed Role (Role mode) or ClusterRole (ClusterRole mode); also the RoleBinding's.
    #[serde(default = "default_role_name")]
    pub role_name: String,
    /// Verbs on secrets the managed role grants.
    #[serde(default = "default_verbs")]
    pub verbs: Vec<String>,
    /// Who gets them in every tenancy namespace.
    #[serde(default)]
    pub subjects: Vec<SubjectSpec>,
    /// Remove the managed Role/RoleBinding when a namespace stops being a tenancy namespace.
    #[serde(default)]
    pub prune: bool,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            name_pattern: default_name_pattern(),
            label: default_tenant_label(),
            grant: GrantMode::default(),
            role_name: default_role_name(),
            verbs: default_verbs(),
            subjects: Vec::new(),
            prune: false,
        }
    }
}

fn default_name_pattern() -> String {
    "^az-(?P<tenant>.+)$".into()
}
fn default_tenant_label() -> String {
    "secretscope.io/tenant".into()
}
fn default_role_name() -> String {
    "secretscope-secrets".into()
}
fn default_verbs() -> Vec<String> {
    ["get", "list", "create", "update", "patch", "delete"]
        .map(String::from)
        .to_vec()
}

/// The file as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub scope: BindingScope,
    #[serde(default)]
    pub indirect: RouteAction,
    #[serde(default)]
    pub exemptions: Exemptions,
    #[serde(default)]
    pub tenancy: Tenancy,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid policy {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid policy: {field}: {message}")]
    Field { field: String, message: String },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The validated, compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub file: PolicyFile,
    pub mode: Mode,
    pub eval: EvalOptions,
    pub tenant_pattern: Regex,
}

impl Default for Policy {
    fn default() -> Self {
        // The defaults are constants validated by the tests below.
        Self::compile(PolicyFile::default()).expect("default policy is valid")
    }
}

impl Policy {
    /// What a valid policy still gets wrong, for the operator to read at start-up.
    pub fn warnings(&self) -> Vec<String> {
        self.file
            .exemptions
            .cluster_roles
            .iter()
            .filter(|p| p.contains(['*', '?', '[', '{']))
            .map(|p| {
                format!(
                    "exemptions.clusterRoles {p:?} is a glob: anyone who may create a ClusterRole can name one to match it, and that role's own Secrets rules are then not judged where it is bound directly; list exact names"
                )
            })
            .collect()
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = if text.trim().is_empty() {
            PolicyFile::default()
        } else {
            serde_saphyr::from_str_with_options(text, crate::manifest::yaml_options()).map_err(
                |e| PolicyError::Parse {
                    path: path.to_string(),
                    message: e.to_string(),
                },
            )?
        };
        Self::compile(file)
    }

    pub fn compile(file: PolicyFile) -> Result<Self, PolicyError> {
        let globs = |name: &str, patterns: &[String]| {
            NameGlobs::new(patterns).map_err(|GlobError { pattern, source }| {
                field(name, format!("{pattern:?}: {source}"))
            })
        };
        let exempt_roles = globs("exemptions.clusterRoles", &file.exemptions.cluster_roles)?;
        let mut exempt_subjects = Vec::new();
        for (i, s) in file.exemptions.subjects.iter().enumerate() {
            let at = format!("exemptions.subjects[{i}]");
            if !matches!(s.kind.as_str(), "User" | "Group" | "ServiceAccount" | "*") {
                return Err(field(
                    format!("{at}.kind"),
                    format!("{:?} is not User, Group, ServiceAccount or *", s.kind),
                ));
            }
            exempt_subjects.push(SubjectPattern {
                kind: s.kind.clone(),
                name: globs(&format!("{at}.name"), std::slice::from_ref(&s.name))?,
                namespace: match &s.namespace {
                    Some(ns) => Some(globs(&format!("{at}.namespace"), std::slice::from_ref(ns))?),
                    None => None,
                },
                reason: s.reason.clone(),
            });
        }

        let t = &file.tenancy;
        let tenant_pattern =
            Regex::new(&t.name_pattern).map_err(|e| field("tenancy.namePattern", e.to_string()))?;
        if !tenant_pattern.capture_names().any(|n| n == Some("tenant")) {
            return Err(field(
                "tenancy.namePattern",
                "needs a named capture group (?P<tenant>...)",
            ));
        }
        if !is_dns_label_or_subdomain(&t.role_name) {
            return Err(field(
                "tenancy.roleName",
                format!("{:?} is not a valid Kubernetes object name", t.role_name),
            ));
        }
        if t.verbs.is_empty() {
            return Err(field("tenancy.verbs", "must name at least one verb"));
        }
        for (i, v) in t.verbs.iter().enumerate() {
            if SecretsVerb::parse(v).is_none() {
                return Err(field(
                    format!("tenancy.verbs[{i}]"),
                    format!("{v:?} is not one of get, list, watch, create, update, patch, delete, deletecollection"),
                ));
            }
        }
        for (i, s) in t.subjects.iter().enumerate() {
            let at = format!("tenancy.subjects[{i}]");
            match (s.kind.as_str(), &s.namespace) {
                ("ServiceAccount", None) => {
                    return Err(field(
                        format!("{at}.namespace"),
                        "a ServiceAccount needs its namespace",
                    ))
                }
                ("ServiceAccount" | "User" | "Group", _) => {}
                (k, _) => {
                    return Err(field(
                        format!("{at}.kind"),
                        format!("{k:?} is not User, Group or ServiceAccount"),
                    ))
                }
            }
            if s.name.is_empty() {
                return Err(field(format!("{at}.name"), "must not be empty"));
            }
        }
        if t.label.is_empty() {
            return Err(field("tenancy.label", "must not be empty"));
        }

        Ok(Self {
            mode: file.mode,
            eval: EvalOptions {
                scope: file.scope,
                indirect: file.indirect,
                exempt_roles,
                exempt_subjects,
                honour_exempt_annotation: file.exemptions.annotation,
                ..EvalOptions::default()
            },
            tenant_pattern,
            file,
        })
    }
}

/// A namespace's tenancy: which tenant, and whether it still needs the tenancy label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub needs_label: bool,
}

impl Policy {
    /// A namespace is a tenancy namespace when it carries the tenancy label (its value names the
    /// tenant) or its name matches `tenancy.namePattern` (the `tenant` capture names it).
    pub fn tenant_of(
        &self,
        namespace: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<Tenant> {
        if let Some(value) = labels.get(&self.file.tenancy.label) {
            return Some(Tenant {
                name: value.clone(),
                needs_label: false,
            });
        }
        let caps = self.tenant_pattern.captures(namespace)?;
        Some(Tenant {
            name: caps.name("tenant")?.as_str().to_string(),
            needs_label: true,
        })
    }
}

/// A Kubernetes label value: at most 63 characters, alphanumeric at both ends, `-_.` inside.
pub fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    v.len() <= 63
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

/// RFC 1123 subdomain, the rule for Role and RoleBinding names.
fn is_dns_label_or_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let p = Policy::parse("", "empty.yaml").unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.eval.scope, BindingScope::Bindings);
        assert_eq!(p.eval.indirect, RouteAction::Warn);
        assert!(!p.eval.honour_exempt_annotation);
        assert!(
            p.eval.exempt_roles.patterns().is_empty(),
            "no ClusterRole is exempt by name by default"
        );
        assert!(!p.eval.exempt_roles.is_match("system:controller:foo"));
        assert!(p.warnings().is_empty());
        assert_eq!(p.file.tenancy.verbs, default_verbs());
        let caps = p.tenant_pattern.captures("az-acme").unwrap();
        assert_eq!(&caps["tenant"], "acme");
    }

    /// The shipped ConfigMap documents every field at its default; keep the two in step.
    #[test]
    fn the_shipped_configmap_is_the_defaults() {
        #[derive(Deserialize)]
        struct ConfigMap {
            data: std::collections::BTreeMap<String, String>,
        }
        let cm: ConfigMap =
            serde_saphyr::from_str(include_str!("../deploy/base/configmap.yaml")).unwrap();
        let shipped = Policy::parse(&cm.data["secretscope.yaml"], "configmap").unwrap();
        assert_eq!(shipped.file, PolicyFile::default());
    }

    #[test]
    fn full_file() {
        let p = Policy::parse(
            r#"
mode: warn
scope: strict
indirect: deny
exemptions:
  clusterRoles: ["platform-*"]
  subjects: [{kind: ServiceAccount, namespace: argocd, name: argocd-application-controller}]
  annotation: true
tenancy:
  namePattern: "^tenant-(?P<tenant>[a-z0-9-]+)$"
  grant: clusterRole
  roleName: tenant-secrets
  verbs: [get, list]
  subjects: [{kind: ServiceAccount, namespace: portal, name: api}]
  prune: true
"#,
            "p.yaml",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Warn);
        assert_eq!(p.eval.scope, BindingScope::Strict);
        assert_eq!(p.eval.indirect, RouteAction::Deny);
        assert!(p.eval.exempt_roles.is_match("platform-x"));
        assert!(!p.eval.exempt_roles.is_match("system:x"));
        assert_eq!(p.warnings().len(), 1, "a glob is warned about");
        assert!(p.warnings()[0].contains("\"platform-*\" is a glob"));
        assert_eq!(p.file.tenancy.grant, GrantMode::ClusterRole);
        assert!(p.file.tenancy.prune);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("modee: enforce", "modee"),
            ("mode: block", "block"),
            ("scope: cluster", "cluster"),
            (
                "exemptions: {subjects: [{kind: Robot, name: x}]}",
                "exemptions.subjects[0].kind",
            ),
            (
                "exemptions: {clusterRoles: [\"[\"]}",
                "exemptions.clusterRoles",
            ),
            (
                "tenancy: {namePattern: \"^az-(.+)$\"}",
                "tenancy.namePattern",
            ),
            ("tenancy: {namePattern: \"(\"}", "tenancy.namePattern"),
            ("tenancy: {verbs: [get, escalate]}", "tenancy.verbs[1]"),
            ("tenancy: {verbs: []}", "tenancy.verbs"),
            ("tenancy: {roleName: Secrets_Role}", "tenancy.roleName"),
            (
                "tenancy: {subjects: [{kind: ServiceAccount, name: api}]}",
                "tenancy.subjects[0].namespace",
            ),
            ("tenancy: {grant: cluster}", "cluster"),
        ];
        for (yaml, needle) in cases {
            let err = Policy::parse(yaml, "p.yaml").unwrap_err().to_string();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn tenancy_by_name_or_label() {
        let p = Policy::default();
        let none = std::collections::BTreeMap::new();
        assert_eq!(
            p.tenant_of("az-acme", &none),
            Some(Tenant {
                name: "acme".into(),
                needs_label: true
            })
        );
        assert_eq!(p.tenant_of("kube-system", &none), None);
        assert_eq!(
            p.tenant_of("az-", &none),
            None,
            "the tenant capture must not be empty"
        );
        let labelled: std::collections::BTreeMap<String, String> =
            [("secretscope.io/tenant".to_string(), "globex".to_string())].into();
        assert_eq!(
            p.tenant_of("shared-tools", &labelled),
            Some(Tenant {
                name: "globex".into(),
                needs_label: false
            })
        );
        assert!(is_label_value("acme-1.x") && is_label_value(""));
        assert!(
            !is_label_value("-acme")
                && !is_label_value("acme_")
                && !is_label_value(&"a".repeat(64))
        );
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let err = Policy::load(Path::new("/nonexistent/secretscope.yaml")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read policy /nonexistent/secretscope.yaml"));
    }
}
