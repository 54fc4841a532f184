//! What a tenancy namespace should hold, and what a refusal from the API server means: pure
//! functions of the policy and the objects, no I/O. The reconciler in [`crate::cluster`] only
//! carries these plans out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::policy::{is_label_value, GrantMode, Policy};

/// Label on every object secretscope manages; the reconciler watches only these.
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "secretscope";
/// `fieldManager` of every server-side apply.
pub const FIELD_MANAGER: &str = "secretscope";

pub fn managed_selector() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY}")
}

/// The Role (Role mode) and RoleBinding a tenancy namespace holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub namespace: String,
    pub tenant: String,
    pub role: Option<Role>,
    pub binding: RoleBinding,
}

/// What the reconciler does with one namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// A tenancy namespace: apply these.
    Grant(Box<Grant>),
    /// Being deleted: leave it alone (writes into it are refused anyway).
    Terminating,
    /// Not a tenancy namespace and `prune: true`: remove what secretscope put there, if anything.
    Prune {
        namespace: String,
        role: Option<String>,
        binding: String,
    },
    /// Not a tenancy namespace: nothing to do.
    Ignore,
}

pub fn plan(policy: &Policy, ns: &Namespace) -> Plan {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Plan::Terminating;
    }
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let t = &policy.file.tenancy;
    match policy.tenant_of(&name, &labels) {
        Some(tenant) => Plan::Grant(Box::new(grant(policy, &name, &tenant.name))),
        None if t.prune => Plan::Prune {
            namespace: name,
            role: (t.grant == GrantMode::Role).then(|| t.role_name.clone()),
            binding: t.role_name.clone(),
        },
        None => Plan::Ignore,
    }
}

fn meta(policy: &Policy, namespace: &str, tenant: &str) -> ObjectMeta {
    let mut labels = BTreeMap::from([(MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string())]);
    if is_label_value(tenant) {
        labels.insert(policy.file.tenancy.label.clone(), tenant.to_string());
    }
    ObjectMeta {
        name: Some(policy.file.tenancy.role_name.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The secrets rule the managed role carries.
pub fn secrets_rule(policy: &Policy) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: policy.file.tenancy.verbs.clone(),
        ..Default::default()
    }
}

pub fn grant(policy: &Policy, namespace: &str, tenant: &str) -> Grant {
    let t = &policy.file.tenancy;
    let role = (t.grant == GrantMode::Role).then(|| Role {
        metadata: meta(policy, namespace, tenant),
        rules: Some(vec![secrets_rule(policy)]),
    });
    let binding = RoleBinding {
        metadata: meta(policy, namespace, tenant),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: match t.grant {
                GrantMode::Role => "Role".into(),
                GrantMode::ClusterRole => "ClusterRole".into(),
            },
            name: t.role_name.clone(),
        },
        subjects: Some(
            t.subjects
                .iter()
                .map(|s| Subject {
                    api_group: (s.kind != "ServiceAccount")
                        .then(|| "rbac.authorization.k8s.io".into()),
                    kind: s.kind.clone(),
                    name: s.name.clone(),
                    namespace: s.namespace.clone(),
                })
                .collect(),
        ),
    };
    Grant {
        namespace: namespace.to_string(),
        tenant: tenant.to_string(),
        role,
        binding,
    }
}

/// A Role or RoleBinding that uses the managed role's name: allowed only in tenancy namespaces,
/// so that nobody hands the managed Secrets access out anywhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNameUse {
    pub namespace: String,
    /// `Role "x"` or `RoleBinding "y" (referencing Role "x")`, for the message.
    pub what: String,
}

pub fn managed_name_use(
    policy: &Policy,
    object: &crate::rbac::RbacObject,
) -> Option<ManagedNameUse> {
    use crate::rbac::RbacObject;
    let name = &policy.file.tenancy.role_name;
    let (meta, what) = match object {
        RbacObject::Role(r) if &r.metadata.name == name => {
            (&r.metadata, format!("Role {:?}", r.metadata.name))
        }
        // Named like the managed binding, or referencing the managed role: a binding that only
        // squats the name would later stand in the reconciler's way (roleRef is immutable).
        RbacObject::RoleBinding(b) if &b.role_ref.name == name || &b.metadata.name == name => (
            &b.metadata,
            format!(
                "RoleBinding {:?} (referencing {} {:?})",
                crate::rbac::text::clip(&b.metadata.name, 253),
                crate::rbac::text::clip(&b.role_ref.kind, 64),
                crate::rbac::text::clip(&b.role_ref.name, 253)
            ),
        ),
        _ => return None,
    };
    Some(ManagedNameUse {
        namespace: meta.namespace.clone().unwrap_or_default(),
        what,
    })
}

impl ManagedNameUse {
    pub fn denial(&self, policy: &Policy, why: &str) -> String {
        format!(
            "secretscope: {} in namespace {:?} uses the name of the Secrets role secretscope manages ({:?}), which is allowed only in tenancy namespaces (name matching {:?} or label {:?}); {why}",
            self.what,
            self.namespace,
            policy.file.tenancy.role_name,
            policy.file.tenancy.name_pattern,
            policy.file.tenancy.label
        )
    }
}

/// Which of the managed objects a refused write was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    Role,
    RoleBinding,
}

impl Managed {
    pub fn kind(self) -> &'static str {
        match self {
            Self::Role => "Role",
            Self::RoleBinding => "RoleBinding",
        }
    }
}

/// The permission secretscope lacks, read off a 403 from the API server, with what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPermission {
    pub verb: String,
    /// `roles.rbac.authorization.k8s.io`, ...
    pub resource: String,
    pub resource_name: String,
}

impl MissingPermission {
    /// The one-line fix, naming secretscope's own ClusterRole.
    pub fn advice(&self, own_cluster_role: &str) -> String {
        format!(
            "grant verb {:?} on {} with resourceNames [{:?}] in ClusterRole {own_cluster_role:?} (deploy/base/rbac.yaml)",
            self.verb, self.resource, self.resource_name
        )
    }
}

/// Reads the missing permission off a 403 message.
///
/// - Escalation prevention (`... is attempting to grant RBAC permissions not currently held`):
///   writing the Role needs `escalate` on it; writing the RoleBinding needs `bind` on the role it
///   references (a Role in Role mode, the ClusterRole in ClusterRole mode).
/// - Plain RBAC (`User "u" cannot patch resource "roles" in API group "..."`): that verb on that
///   resource.
pub fn missing_permission(
    policy: &Policy,
    what: Managed,
    message: &str,
) -> Option<MissingPermission> {
    let name = policy.file.tenancy.role_name.clone();
    if message.contains("attempting to grant RBAC permissions not currently held") {
        let (verb, resource) = match (what, policy.file.tenancy.grant) {
            (Managed::Role, _) => ("escalate", "roles"),
            (Managed::RoleBinding, GrantMode::Role) => ("bind", "roles"),
            (Managed::RoleBinding, GrantMode::ClusterRole) => ("bind", "clusterroles"),
        };
        return Some(MissingPermission {
            verb: verb.into(),
            resource: format!("{resource}.rbac.authorization.k8s.io"),
            resource_name: name,
        });
    }
    let rest = message.split(" cannot ").nth(1)?;
    let verb = rest.split_whitespace().next()?;
    let resource = rest.split("resource \"").nth(1)?.split('"').next()?;
    let group = rest
        .split("in API group \"")
        .nth(1)
        .and_then(|g| g.split('"').next())
        .unwrap_or_default();
    Some(MissingPermission {
        verb: verb.into(),
        resource: if group.is_empty() {
            resource.into()
        } else {
            format!("{resource}.{group}")
        },
        resource_name: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyFile;

    fn policy(yaml: &str) -> Policy {
        Policy::parse(yaml, "test").expect("policy")
    }

    fn namespace(name: &str, labels: &[(&str, &str)], terminating: bool) -> Namespace {
        let mut ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        if terminating {
            ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
                phase: Some("Terminating".into()),
                ..Default::default()
            });
        }
        ns
    }

    const SUBJECTS: &str =
        "tenancy:\n  subjects:\n  - {kind: ServiceAccount, name: portal, namespace: platform}\n";

    #[test]
    fn a_tenancy_namespace_gets_the_role_and_binding() {
        let p = policy(SUBJECTS);
        let Plan::Grant(g) = plan(&p, &namespace("az-acme", &[], false)) else {
            panic!("expected a grant");
        };
        let role = g.role.as_ref().expect("role mode");
        assert_eq!(role.metadata.name.as_deref(), Some("secretscope-secrets"));
        assert_eq!(role.metadata.namespace.as_deref(), Some("az-acme"));
        let rules = role.rules.as_ref().expect("rules");
        assert_eq!(rules[0].resources, Some(vec!["secrets".to_string()]));
        assert_eq!(
            rules[0].verbs,
            ["get", "list", "create", "update", "patch", "delete"]
        );
        let labels = role.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[MANAGED_BY_KEY], "secretscope");
        assert_eq!(labels["secretscope.io/tenant"], "acme");
        assert_eq!(g.binding.role_ref.kind, "Role");
        let subjects = g.binding.subjects.as_ref().expect("subjects");
        assert_eq!(subjects[0].namespace.as_deref(), Some("platform"));
        assert_eq!(subjects[0].api_group, None);

        // By label, whatever the name.
        let Plan::Grant(g) = plan(
            &p,
            &namespace("tools", &[("secretscope.io/tenant", "t1")], false),
        ) else {
            panic!("expected a grant");
        };
        assert_eq!(g.tenant, "t1");
    }

    #[test]
    fn cluster_role_mode_binds_the_shared_cluster_role() {
        let p = policy(&format!("{SUBJECTS}  grant: clusterRole\n"));
        let Plan::Grant(g) = plan(&p, &namespace("az-acme", &[], false)) else {
            panic!("expected a grant");
        };
        assert!(g.role.is_none());
        assert_eq!(g.binding.role_ref.kind, "ClusterRole");
    }

    #[test]
    fn terminating_and_other_namespaces() {
        let p = Policy::default();
        assert_eq!(
            plan(&p, &namespace("az-acme", &[], true)),
            Plan::Terminating
        );
        assert_eq!(plan(&p, &namespace("payments", &[], false)), Plan::Ignore);
        let mut file = PolicyFile::default();
        file.tenancy.prune = true;
        let p = Policy::compile(file).expect("policy");
        assert_eq!(
            plan(&p, &namespace("payments", &[], false)),
            Plan::Prune {
                namespace: "payments".into(),
                role: Some("secretscope-secrets".into()),
                binding: "secretscope-secrets".into()
            }
        );
    }

    #[test]
    fn a_403_names_the_missing_permission() {
        let p = Policy::default();
        let escalation = "roles.rbac.authorization.k8s.io \"secretscope-secrets\" is forbidden: user \"system:serviceaccount:secretscope:secretscope\" (groups=[\"system:serviceaccounts\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}";
        let m = missing_permission(&p, Managed::Role, escalation).expect("escalate");
        assert_eq!(m.verb, "escalate");
        assert_eq!(m.resource, "roles.rbac.authorization.k8s.io");
        let m = missing_permission(&p, Managed::RoleBinding, escalation).expect("bind");
        assert_eq!(m.verb, "bind");
        assert!(m
            .advice("secretscope")
            .contains("verb \"bind\" on roles.rbac.authorization.k8s.io with resourceNames [\"secretscope-secrets\"] in ClusterRole \"secretscope\""));

        let rbac = "roles.rbac.authorization.k8s.io \"secretscope-secrets\" is forbidden: User \"system:serviceaccount:secretscope:secretscope\" cannot create resource \"roles\" in API group \"rbac.authorization.k8s.io\" in the namespace \"az-a\"";
        let m = missing_permission(&p, Managed::Role, rbac).expect("create");
        assert_eq!(m.verb, "create");
        assert_eq!(m.resource, "roles.rbac.authorization.k8s.io");
        assert_eq!(
            missing_permission(&p, Managed::Role, "quota exceeded"),
            None
        );
    }
}
