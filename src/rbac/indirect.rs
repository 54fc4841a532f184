//! Indirect routes to Secrets: permissions that are not Secrets access themselves but let their
//! holder obtain it when granted cluster-wide.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::effective::EffectiveRules;
use super::rule::{name_coverage, resource_name_matches, NameCoverage, ResourceRequest};
use super::secrets::Names;
use super::word::RuleWord;

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
    /// `escalate`/`bind` limited to named roles, with the create/patch that writes and binds a
    /// role of that name: any rules, in every namespace (the tenancy reconciler's own power).
    NamedRoleGrant,
    ServiceAccountToken,
    WebhookConfigurations,
    ApproveCsr,
    RbacWildcard,
}

const RBAC: &str = "rbac.authorization.k8s.io";
const ADMREG: &str = "admissionregistration.k8s.io";

/// (verb, apiGroup, resource, subresource) probes; a route is open when any rule allows any of
/// its probes, judged by `RuleAllows` itself.
type Probe = (&'static str, &'static str, &'static str, &'static str);

impl IndirectRoute {
    pub const ALL: [IndirectRoute; 11] = [
        Self::Workloads,
        Self::PodExec,
        Self::PodAttach,
        Self::NodeProxy,
        Self::Impersonate,
        Self::EscalateOrBind,
        Self::NamedRoleGrant,
        Self::ServiceAccountToken,
        Self::WebhookConfigurations,
        Self::ApproveCsr,
        Self::RbacWildcard,
    ];

    const fn probes(self) -> &'static [Probe] {
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
            // Judged by `named_role_grant`, which pairs rules by name.
            Self::NamedRoleGrant => &[],
            Self::ServiceAccountToken => &[("create", "", "serviceaccounts", "token")],
            // Deleting one switches its webhook off (secretscope's included).
            Self::WebhookConfigurations => &[
                ("create", ADMREG, "mutatingwebhookconfigurations", ""),
                ("update", ADMREG, "mutatingwebhookconfigurations", ""),
                ("patch", ADMREG, "mutatingwebhookconfigurations", ""),
                ("delete", ADMREG, "mutatingwebhookconfigurations", ""),
                (
                    "deletecollection",
                    ADMREG,
                    "mutatingwebhookconfigurations",
                    "",
                ),
                ("create", ADMREG, "validatingwebhookconfigurations", ""),
                ("update", ADMREG, "validatingwebhookconfigurations", ""),
                ("patch", ADMREG, "validatingwebhookconfigurations", ""),
                ("delete", ADMREG, "validatingwebhookconfigurations", ""),
                (
                    "deletecollection",
                    ADMREG,
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
            Self::NamedRoleGrant => "named-role-grant",
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
            Self::NamedRoleGrant => (
                "write and bind roles with any rules",
                "in every namespace (escalate/bind limited by resourceNames, with create/patch of that name): Secrets in all of them, one namespace at a time",
            ),
            Self::ServiceAccountToken => (
                "mint service account tokens (serviceaccounts/token)",
                "acting as any service account",
            ),
            Self::WebhookConfigurations => (
                "write or delete admission webhook configurations",
                "which can be pointed at every Secret written, or switch secretscope off",
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
pub struct OpenRoute<'a> {
    pub route: IndirectRoute,
    pub rules: Vec<usize>,
    /// Set when every opening rule is limited by `resourceNames`: the objects it is limited to.
    pub only_named: Option<Names<'a>>,
}

pub fn indirect_routes<'a>(rules: &EffectiveRules<'a>) -> Vec<OpenRoute<'a>> {
    // The rules' verbs as bit sets, once per rule set rather than once per rule and probe.
    let verbs: Vec<u32> = rules.iter().map(|sr| verb_bits(&sr.rule.verbs)).collect();
    IndirectRoute::ALL
        .into_iter()
        .filter_map(|route| match route {
            IndirectRoute::NamedRoleGrant => named_role_grant(rules),
            _ => probed_route(route, rules, &verbs),
        })
        .collect()
}

/// Every verb a probe asks for. A rule granting none of a route's probe verbs cannot open it,
/// and most routes of most rules are decided by that bit test alone (probing was the engine's
/// top cost: ~50 probes per rule, each scanning the rule's verbs). A verb not listed here gets
/// no bit; every probe verb has one (checked at compile time in `ROUTE_BITS`).
const PROBE_VERBS: [&str; 10] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "get",
    "impersonate",
    "escalate",
    "bind",
    "*",
];

const fn verb_bit(verb: &str) -> u32 {
    let mut i = 0;
    while i < PROBE_VERBS.len() {
        if str_eq(PROBE_VERBS[i], verb) {
            return 1 << i;
        }
        i += 1;
    }
    0
}

/// `a == b` where a `const fn` needs it (`str`'s `==` is not const). `rule::same` stays the
/// runtime comparison: its iterator form measured 1% fewer instructions per review than a
/// `const` loop.
const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const MAX_PROBES: usize = 24;

/// A route's probe verbs as bits, each probe's and their union.
#[derive(Clone, Copy)]
struct RouteBits {
    wanted: u32,
    probes: [u32; MAX_PROBES],
}

/// `RouteBits` of every route, indexed by `route as usize`: computed once, at compile time,
/// rather than on every review (it was a tenth of the route probing).
const ROUTE_BITS: [RouteBits; IndirectRoute::ALL.len()] = {
    let mut out = [RouteBits {
        wanted: 0,
        probes: [0; MAX_PROBES],
    }; IndirectRoute::ALL.len()];
    let mut r = 0;
    while r < IndirectRoute::ALL.len() {
        assert!(
            IndirectRoute::ALL[r] as usize == r,
            "ALL is in declaration order"
        );
        let probes = IndirectRoute::ALL[r].probes();
        assert!(probes.len() <= MAX_PROBES, "raise MAX_PROBES");
        let mut p = 0;
        while p < probes.len() {
            let bit = verb_bit(probes[p].0);
            assert!(bit != 0, "every probe verb is in PROBE_VERBS");
            out[r].probes[p] = bit;
            out[r].wanted |= bit;
            p += 1;
        }
        r += 1;
    }
    out
};

/// The probe verbs `verbs` grant; `*` grants them all (as `verb_matches` reads it).
fn verb_bits(verbs: &[RuleWord]) -> u32 {
    verbs.iter().fold(0, |bits, v| {
        if v == "*" {
            u32::MAX
        } else {
            bits | verb_bit(v)
        }
    })
}

fn probed_route<'a>(
    route: IndirectRoute,
    rules: &EffectiveRules<'a>,
    rule_verbs: &[u32],
) -> Option<OpenRoute<'a>> {
    let bits = &ROUTE_BITS[route as usize];
    let mut opening = Vec::new();
    let mut all_names = false;
    let mut names = Names::default();
    for (i, sr) in rules.iter().enumerate() {
        let granted = rule_verbs.get(i).copied().unwrap_or(u32::MAX);
        if granted & bits.wanted == 0 {
            continue;
        }
        // Only the probes whose verb the rule grants can match it.
        let coverage = route
            .probes()
            .iter()
            .zip(&bits.probes)
            .filter(|(_, &bit)| bit & granted != 0)
            .map(|(&(verb, group, resource, sub), _)| {
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
            Some(NameCoverage::Named) if route.named_counts() => names.add(&sr.rule.resource_names),
            _ => continue,
        }
        opening.push(i);
    }
    (!opening.is_empty()).then_some(OpenRoute {
        route,
        rules: opening,
        only_named: (!all_names).then_some(names),
    })
}

/// `escalate` on roles named X with create/patch of a role named X writes Role X with any
/// rules; `bind` on (cluster)roles named X with create/patch of (cluster)rolebindings binds it
/// to anyone. Held cluster-wide, that is any rules, Secrets included, in every namespace.
/// (Unrestricted escalate/bind is `EscalateOrBind`.)
fn named_role_grant<'a>(rules: &EffectiveRules<'a>) -> Option<OpenRoute<'a>> {
    let allows = |verb: &str, resource: &str, name: &str| -> Vec<usize> {
        rules
            .iter()
            .enumerate()
            .filter(|(_, sr)| {
                let req = ResourceRequest::new(verb, RBAC, resource);
                match name_coverage(sr.rule, &req) {
                    NameCoverage::All => true,
                    NameCoverage::Named => name.is_empty() || resource_name_matches(sr.rule, name),
                    NameCoverage::None => false,
                }
            })
            .map(|(i, _)| i)
            .collect()
    };
    let writes = |resource: &str, name: &str| {
        let mut v = allows("create", resource, name);
        v.extend(allows("patch", resource, name));
        v
    };
    let mut opening = BTreeSet::new();
    let mut names = Names::default();
    for (i, sr) in rules.iter().enumerate() {
        let rule = sr.rule;
        if rule.resource_names.is_empty() {
            continue;
        }
        for (verb, resource) in [
            ("escalate", "roles"),
            ("escalate", "clusterroles"),
            ("bind", "roles"),
            ("bind", "clusterroles"),
        ] {
            let req = ResourceRequest::new(verb, RBAC, resource);
            if name_coverage(rule, &req) != NameCoverage::Named {
                continue;
            }
            for name in &rule.resource_names {
                // What the named escalate or bind is paired with: writing the role itself, or
                // a binding of it (of any name).
                let with = if verb == "escalate" {
                    writes(resource, name)
                } else if resource == "roles" {
                    writes("rolebindings", "")
                } else {
                    let mut v = writes("rolebindings", "");
                    v.extend(writes("clusterrolebindings", ""));
                    v
                };
                if !with.is_empty() {
                    opening.insert(i);
                    opening.extend(with);
                    names.add(std::slice::from_ref(name));
                }
            }
        }
    }
    (!opening.is_empty()).then(|| OpenRoute {
        route: IndirectRoute::NamedRoleGrant,
        rules: opening.into_iter().collect(),
        // Only the names that pair with a write; the rest of those lists open nothing.
        only_named: Some(names),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::model::PolicyRule;

    fn open(rules: &[PolicyRule]) -> Vec<OpenRoute<'_>> {
        indirect_routes(&EffectiveRules::own("r", rules))
    }

    /// The verb bit sets only skip work: every probe verb has a bit, and over rules of every
    /// verb mix the routes found equal those of probing every rule in full.
    #[test]
    fn verb_bits_skip_only_rules_that_cannot_open_a_route() {
        for route in IndirectRoute::ALL {
            for p in route.probes() {
                assert_ne!(verb_bit(p.0), 0, "{route:?} probe verb {:?}", p.0);
            }
        }
        let verbs: [&[&str]; 8] = [
            &["get", "list", "watch"],
            &["list"],
            &["create"],
            &["*"],
            &["patch", "list"],
            &["impersonate"],
            &["escalate", "bind"],
            &["approve", "sign"],
        ];
        let resources: [&[&str]; 4] = [&["*"], &["pods", "pods/exec"], &["*/proxy"], &["roles"]];
        let groups: [&[&str]; 2] = [&["*"], &[""]];
        let mut rules = Vec::new();
        for v in verbs {
            for r in resources {
                for g in groups {
                    rules.push(PolicyRule::of(v, g, r, &[]));
                    rules.push(PolicyRule::of(v, g, r, &["n"]));
                }
            }
        }
        let effective = EffectiveRules::own("r", &rules);
        let full = vec![u32::MAX; rules.len()];
        let bits: Vec<u32> = effective
            .iter()
            .map(|sr| verb_bits(&sr.rule.verbs))
            .collect();
        for route in IndirectRoute::ALL {
            if route == IndirectRoute::NamedRoleGrant {
                continue;
            }
            assert_eq!(
                probed_route(route, &effective, &bits),
                probed_route(route, &effective, &full),
                "{route:?}"
            );
        }
    }

    /// Issue 8 hole 5: the tenancy reconciler's own power, named escalate/bind with the writes
    /// that use it, is a route; either half alone is not.
    #[test]
    fn named_escalate_and_bind_with_writes_of_that_name() {
        let r = |v: &[&str], res: &[&str], n: &[&str]| PolicyRule::of(v, &[RBAC], res, n);
        let own = [
            r(
                &["create", "patch", "delete"],
                &["roles", "rolebindings"],
                &["secretscope-secrets"],
            ),
            r(&["escalate", "bind"], &["roles"], &["secretscope-secrets"]),
        ];
        let found = open(&own);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].route, IndirectRoute::NamedRoleGrant);
        assert_eq!(found[0].rules, vec![0, 1]);
        assert_eq!(
            found[0].only_named.as_ref().map(Names::set),
            Some(BTreeSet::from(["secretscope-secrets"]))
        );
        assert!(open(&own[1..]).is_empty(), "escalate/bind alone");
        assert!(open(&own[..1]).is_empty(), "writes alone");
        // Writes of another name do not pair with escalate, but a binding of any name pairs
        // with bind.
        let other = [
            r(&["create"], &["roles"], &["other"]),
            r(&["escalate"], &["roles"], &["secretscope-secrets"]),
        ];
        assert!(open(&other).is_empty());
        let bind_any = [
            r(&["create"], &["rolebindings"], &[]),
            r(&["bind"], &["clusterroles"], &["tenant-secrets"]),
        ];
        assert_eq!(open(&bind_any)[0].route, IndirectRoute::NamedRoleGrant);
    }

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
            IndirectRoute::ALL
                .into_iter()
                .filter(|r| *r != NamedRoleGrant)
                .collect::<Vec<_>>(),
            "everything but the named pattern, which needs a named rule"
        );
        for verb in ["delete", "deletecollection"] {
            for resource in [
                "validatingwebhookconfigurations",
                "mutatingwebhookconfigurations",
            ] {
                assert_eq!(
                    routes(&[verb], &["admissionregistration.k8s.io"], &[resource], &[]),
                    vec![WebhookConfigurations],
                    "{verb} {resource} switches a webhook off"
                );
            }
        }
    }
}
