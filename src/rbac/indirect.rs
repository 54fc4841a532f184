//! Indirect routes to Secrets: permissions that are not Secrets access themselves but let their
//! holder obtain it when granted cluster-wide.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::effective::EffectiveRules;
use super::rule::{name_coverage, NameCoverage, ResourceRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndirectRoute {
    /// A pod can mount, or read through env, any Secret of its namespace.
    Workloads,
    PodExec,
    PodAttach,
    /// The kubelet API behind nodes/proxy runs commands in any pod on the node.
    NodeProxy,
    Impersonate,
    EscalateOrBind,
    ServiceAccountToken,
    WebhookConfigurations,
    ApproveCsr,
    RbacWildcard,
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// (verb, apiGroup, resource, subresource) probes; a route is open when any rule allows any of
/// its probes, judged by `RuleAllows` itself.
type Probe = (&'static str, &'static str, &'static str, &'static str);

impl IndirectRoute {
    pub const ALL: [IndirectRoute; 10] = [
        Self::Workloads,
        Self::PodExec,
        Self::PodAttach,
        Self::NodeProxy,
        Self::Impersonate,
        Self::EscalateOrBind,
        Self::ServiceAccountToken,
        Self::WebhookConfigurations,
        Self::ApproveCsr,
        Self::RbacWildcard,
    ];

    fn probes(self) -> &'static [Probe] {
        match self {
            Self::Workloads => &[
                ("create", "", "pods", ""),
                ("create", "", "replicationcontrollers", ""),
                ("update", "", "replicationcontrollers", ""),
                ("patch", "", "replicationcontrollers", ""),
                // Ephemeral containers can take env from any Secret in the pod's namespace.
                ("update", "", "pods", "ephemeralcontainers"),
                ("patch", "", "pods", "ephemeralcontainers"),
                ("create", "apps", "deployments", ""),
                ("update", "apps", "deployments", ""),
                ("patch", "apps", "deployments", ""),
                ("create", "apps", "replicasets", ""),
                ("update", "apps", "replicasets", ""),
                ("patch", "apps", "replicasets", ""),
                ("create", "apps", "statefulsets", ""),
                ("update", "apps", "statefulsets", ""),
                ("patch", "apps", "statefulsets", ""),
                ("create", "apps", "daemonsets", ""),
                ("update", "apps", "daemonsets", ""),
                ("patch", "apps", "daemonsets", ""),
                ("create", "batch", "jobs", ""),
                ("create", "batch", "cronjobs", ""),
                ("update", "batch", "cronjobs", ""),
                ("patch", "batch", "cronjobs", ""),
            ],
            // Exec and attach over WebSockets start with a GET, which older API servers
            // authorized as `get` (KEP-4006 moved it to `create`); both count.
            Self::PodExec => &[("create", "", "pods", "exec"), ("get", "", "pods", "exec")],
            Self::PodAttach => &[
                ("create", "", "pods", "attach"),
                ("get", "", "pods", "attach"),
            ],
            Self::NodeProxy => &[
                ("get", "", "nodes", "proxy"),
                ("create", "", "nodes", "proxy"),
            ],
            Self::Impersonate => &[
                ("impersonate", "", "users", ""),
                ("impersonate", "", "groups", ""),
                ("impersonate", "", "serviceaccounts", ""),
            ],
            Self::EscalateOrBind => &[
                ("escalate", RBAC, "roles", ""),
                ("escalate", RBAC, "clusterroles", ""),
                ("bind", RBAC, "roles", ""),
                ("bind", RBAC, "clusterroles", ""),
            ],
            Self::ServiceAccountToken => &[("create", "", "serviceaccounts", "token")],
            Self::WebhookConfigurations => &[
                (
                    "create",
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    "",
                ),
                (
                    "update",
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    "",
                ),
                (
                    "patch",
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    "",
                ),
                (
                    "create",
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations",
                    "",
                ),
                (
                    "update",
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations",
                    "",
                ),
                (
                    "patch",
                    "admissionregistration.k8s.io",
                    "validatingwebhookconfigurations",
                    "",
                ),
            ],
            Self::ApproveCsr => &[
                (
                    "update",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    "approval",
                ),
                (
                    "patch",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                    "approval",
                ),
            ],
            // A requested verb of "*" only equals a rule verb of "*": this asks for the literal
            // wildcard, which includes escalate and bind.
            Self::RbacWildcard => &[
                ("*", RBAC, "roles", ""),
                ("*", RBAC, "clusterroles", ""),
                ("*", RBAC, "rolebindings", ""),
                ("*", RBAC, "clusterrolebindings", ""),
            ],
        }
    }

    /// Whether rules restricted by `resourceNames` still open the route. Escalate/bind limited to
    /// named roles is the safe, recommended form (secretscope's own RBAC uses it).
    fn named_counts(self) -> bool {
        !matches!(self, Self::EscalateOrBind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workloads => "workloads",
            Self::PodExec => "pod-exec",
            Self::PodAttach => "pod-attach",
            Self::NodeProxy => "node-proxy",
            Self::Impersonate => "impersonate",
            Self::EscalateOrBind => "escalate-or-bind",
            Self::ServiceAccountToken => "serviceaccount-token",
            Self::WebhookConfigurations => "webhook-configurations",
            Self::ApproveCsr => "approve-csr",
            Self::RbacWildcard => "rbac-wildcard",
        }
    }

    /// What the grant lets its holder do, and why that reaches Secrets.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Self::Workloads => (
                "create or change pods and pod-creating workloads",
                "which can mount any Secret of their namespace",
            ),
            Self::PodExec => (
                "exec into pods (pods/exec)",
                "reading the Secrets they mount",
            ),
            Self::PodAttach => (
                "attach to pods (pods/attach)",
                "reading what they print of their Secrets",
            ),
            Self::NodeProxy => (
                "reach the kubelet API (nodes/proxy)",
                "which runs commands in any pod",
            ),
            Self::Impersonate => (
                "impersonate users, groups or service accounts",
                "taking on their Secrets access",
            ),
            Self::EscalateOrBind => (
                "escalate or bind any role (no resourceNames)",
                "granting itself Secrets access",
            ),
            Self::ServiceAccountToken => (
                "mint service account tokens (serviceaccounts/token)",
                "acting as any service account",
            ),
            Self::WebhookConfigurations => (
                "write admission webhook configurations",
                "which can be pointed at every Secret written",
            ),
            Self::ApproveCsr => (
                "approve certificate signing requests",
                "minting client certificates for any identity",
            ),
            Self::RbacWildcard => (
                "use every verb (\"*\") on RBAC objects",
                "escalate and bind included",
            ),
        }
    }
}

impl fmt::Display for IndirectRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One open route with the indices (into the `EffectiveRules`) of the rules that open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRoute {
    pub route: IndirectRoute,
    pub rules: Vec<usize>,
    /// Set when every opening rule is limited by `resourceNames`: the objects it is limited to.
    pub only_named: Option<BTreeSet<String>>,
}

pub fn indirect_routes(rules: &EffectiveRules<'_>) -> Vec<OpenRoute> {
    IndirectRoute::ALL
        .into_iter()
        .filter_map(|route| {
            let mut opening = Vec::new();
            let mut all_names = false;
            let mut names = BTreeSet::new();
            for (i, sr) in rules.iter().enumerate() {
                let coverage = route
                    .probes()
                    .iter()
                    .map(|&(verb, group, resource, sub)| {
                        let req = ResourceRequest::new(verb, group, resource).subresource(sub);
                        name_coverage(sr.rule, &req)
                    })
                    .max_by_key(|c| match c {
                        NameCoverage::None => 0,
                        NameCoverage::Named => 1,
                        NameCoverage::All => 2,
                    });
                match coverage {
                    Some(NameCoverage::All) => all_names = true,
                    Some(NameCoverage::Named) if route.named_counts() => {
                        names.extend(sr.rule.resource_names.iter().cloned())
                    }
                    _ => continue,
                }
                opening.push(i);
            }
            (!opening.is_empty()).then_some(OpenRoute {
                route,
                rules: opening,
                only_named: (!all_names).then_some(names),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::model::PolicyRule;

    fn routes(
        verbs: &[&str],
        groups: &[&str],
        resources: &[&str],
        names: &[&str],
    ) -> Vec<IndirectRoute> {
        let rules = vec![PolicyRule::of(verbs, groups, resources, names)];
        indirect_routes(&EffectiveRules::own("r", &rules))
            .into_iter()
            .map(|r| r.route)
            .collect()
    }

    #[test]
    fn each_route() {
        use IndirectRoute::*;
        assert_eq!(routes(&["create"], &[""], &["pods"], &[]), vec![Workloads]);
        assert_eq!(
            routes(&["patch"], &["apps"], &["deployments"], &[]),
            vec![Workloads]
        );
        assert_eq!(
            routes(&["get", "list"], &["apps"], &["deployments"], &[]),
            vec![]
        );
        assert_eq!(
            routes(&["create"], &[""], &["pods/exec"], &[]),
            vec![PodExec]
        );
        assert_eq!(
            routes(&["get"], &[""], &["pods/attach"], &[]),
            vec![PodAttach]
        );
        assert_eq!(
            routes(&["get"], &[""], &["nodes/proxy"], &[]),
            vec![NodeProxy]
        );
        assert_eq!(
            routes(&["get"], &[""], &["nodes/*"], &[]),
            vec![],
            "nodes/* is literal"
        );
        assert_eq!(
            routes(&["impersonate"], &[""], &["serviceaccounts"], &[]),
            vec![Impersonate]
        );
        assert_eq!(
            routes(&["bind"], &[RBAC], &["clusterroles"], &[]),
            vec![EscalateOrBind]
        );
        assert_eq!(
            routes(
                &["bind", "escalate"],
                &[RBAC],
                &["roles"],
                &["secrets-role"]
            ),
            vec![]
        );
        assert_eq!(
            routes(&["create"], &[""], &["serviceaccounts/token"], &[]),
            vec![ServiceAccountToken]
        );
        assert_eq!(
            routes(
                &["patch"],
                &["admissionregistration.k8s.io"],
                &["mutatingwebhookconfigurations"],
                &[]
            ),
            vec![WebhookConfigurations]
        );
        assert_eq!(
            routes(
                &["update"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/approval"],
                &[]
            ),
            vec![ApproveCsr]
        );
        assert_eq!(
            routes(&["*"], &[RBAC], &["rolebindings"], &[]),
            vec![RbacWildcard]
        );
        assert_eq!(
            routes(&["create", "update"], &[RBAC], &["rolebindings"], &[]),
            vec![]
        );
        assert_eq!(
            routes(&["*"], &["*"], &["*"], &[]),
            IndirectRoute::ALL.to_vec()
        );
    }
}
