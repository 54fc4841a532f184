//! RBAC authorization and escalation prevention for one caller, so that secretscope can be run
//! against the fake with exactly the permissions `deploy/` gives it. Rule matching is the engine's
//! own port of the authorizer's `RuleAllows`.
//!
//! What the real API server does and this reproduces:
//! - the verb of a request (get/list/watch/create/update/patch/delete/deletecollection), with the
//!   object's name for requests that name one;
//! - a server-side apply that creates the object is also authorized as `create` with the name
//!   (k8s.io/apiserver handlers/patch.go, `createAuthorizerAttributes`);
//! - writing a Role needs the caller to hold every permission in it or `escalate` on it; writing a
//!   RoleBinding needs the caller to hold the referenced role's permissions or `bind` on it
//!   (pkg/registry/rbac/{role,rolebinding}/policybased).
//!
//! Simplified: "holds the permissions" is checked rule by rule for each (verb, group, resource)
//! the new rules name, without wildcard expansion or resourceNames; good enough for Secrets rules.

use secretscope::rbac::rule::{rule_allows, ResourceRequest};
use secretscope::rbac::{PolicyRule, RbacObject};

#[derive(Debug, Clone)]
pub struct Authorizer {
    pub user: String,
    pub groups: Vec<String>,
    /// Rules that apply in every namespace (ClusterRoleBindings).
    cluster: Vec<PolicyRule>,
    /// Rules that apply in one namespace (RoleBindings).
    namespaced: Vec<(String, PolicyRule)>,
}

impl Authorizer {
    /// The permissions that `objects` (RBAC manifests, e.g. deploy/base/rbac.yaml) give the
    /// ServiceAccount `namespace/name`.
    pub fn for_service_account(objects: &[RbacObject], namespace: &str, name: &str) -> Self {
        let is_me = |s: &secretscope::rbac::Subject| {
            s.kind == "ServiceAccount"
                && s.name == name
                && s.namespace.as_deref() == Some(namespace)
        };
        let cluster_role = |n: &str| {
            objects.iter().find_map(|o| match o {
                RbacObject::ClusterRole(r) if r.metadata.name == n => Some(r.rules.clone()),
                _ => None,
            })
        };
        let mut cluster = Vec::new();
        let mut namespaced = Vec::new();
        for o in objects {
            match o {
                RbacObject::ClusterRoleBinding(b) if b.subjects.iter().any(is_me) => {
                    cluster.extend(cluster_role(&b.role_ref.name).unwrap_or_default());
                }
                RbacObject::RoleBinding(b) if b.subjects.iter().any(is_me) => {
                    let ns = b.metadata.namespace.clone().unwrap_or_default();
                    let rules = if b.role_ref.kind == "ClusterRole" {
                        cluster_role(&b.role_ref.name).unwrap_or_default()
                    } else {
                        objects
                            .iter()
                            .find_map(|o| match o {
                                RbacObject::Role(r)
                                    if r.metadata.name == b.role_ref.name
                                        && r.metadata.namespace.as_deref() == Some(&ns) =>
                                {
                                    Some(r.rules.clone())
                                }
                                _ => None,
                            })
                            .unwrap_or_default()
                    };
                    namespaced.extend(rules.into_iter().map(|r| (ns.clone(), r)));
                }
                _ => {}
            }
        }
        Self {
            user: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            cluster,
            namespaced,
        }
    }

    /// Whether `req` is allowed in `namespace` ("" for cluster-scoped requests).
    pub fn allows(&self, req: &ResourceRequest<'_>, namespace: &str) -> bool {
        self.cluster.iter().any(|r| rule_allows(r, req))
            || self
                .namespaced
                .iter()
                .any(|(ns, r)| ns == namespace && rule_allows(r, req))
    }

    /// The API server's message for a request RBAC refuses.
    pub fn forbidden_message(&self, req: &ResourceRequest<'_>, namespace: &str) -> String {
        let group_resource = if req.api_group.is_empty() {
            req.resource.to_string()
        } else {
            format!("{}.{}", req.resource, req.api_group)
        };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        format!(
            "{group_resource} \"{}\" is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
            req.name, self.user, req.verb, req.resource, req.api_group
        )
    }

    /// Rules in `rules` the caller does not hold in `namespace`.
    pub fn missing(&self, namespace: &str, rules: &[PolicyRule]) -> Vec<PolicyRule> {
        rules
            .iter()
            .filter(|rule| {
                rule.verbs.iter().any(|verb| {
                    rule.api_groups.iter().any(|group| {
                        rule.resources.iter().any(|resource| {
                            !self.allows(&ResourceRequest::new(verb, group, resource), namespace)
                        })
                    })
                })
            })
            .cloned()
            .collect()
    }

    /// The API server's escalation-prevention message (`rbac/validation.ConfirmNoEscalation`).
    pub fn escalation_message(
        &self,
        group_resource: &str,
        name: &str,
        missing: &[PolicyRule],
    ) -> String {
        fn quoted<S: std::fmt::Debug>(v: &[S]) -> String {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
        let rules: Vec<String> = missing
            .iter()
            .map(|r| {
                format!(
                    "{{APIGroups:[{}], Resources:[{}], Verbs:[{}]}}",
                    quoted(&r.api_groups),
                    quoted(&r.resources),
                    quoted(&r.verbs)
                )
            })
            .collect();
        format!(
            "{group_resource} {name:?} is forbidden: user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            self.user,
            quoted(&self.groups),
            rules.join("\n")
        )
    }
}
