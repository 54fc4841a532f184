//! The engine on small arbitrary states, with an independent oracle.
//!
//! The generator draws ClusterRoles (rules, labels, `matchLabels`-only aggregation rules),
//! ClusterRoleBindings and RoleBindings from tiny alphabets, so that the interesting cases
//! (wildcards, aggregation chains and cycles, exempt and non-exempt subjects) come up often.
//! Every object is judged against the state with the default policy (scope `bindings`); nothing
//! may panic, and the oracle below, written from the Kubernetes RBAC authorizer's semantics and
//! not from the engine's code, must agree:
//!
//! * **Forward (binding).** A ClusterRoleBinding that binds `User bob` (not exempt) to a
//!   ClusterRole whose rules — its own and, transitively, those of every ClusterRole its
//!   selectors select — allow a request on core `secrets` with no name for one of the Secrets
//!   verbs is judged `Deny` with route `Secrets`, naming bob among its subjects.
//! * **Forward (role).** A ClusterRole (not a bootstrap name) whose rules, so resolved, allow such
//!   a request, and which is bound to bob directly or is selected (transitively) by an aggregated
//!   ClusterRole bound to bob, is judged `Deny`/`Secrets`.
//! * **Reverse.** An object gets no `Deny`/`Secrets` finding when no rule it reaches names a
//!   Secrets verb, a core group and `secrets` at all (whatever its resourceNames), or when bob
//!   is not among the subjects it reaches.
//!
//! `Err(OverBudget)` is a denial (admission fails closed), so it satisfies the forward oracle;
//! these states are far too small to be over budget, so it also fails the reverse oracle.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use secretscope::policy::Policy;
use secretscope::rbac::model::{AggregationRule, LabelSelector, ObjectMeta, RoleRef};
use secretscope::rbac::{
    evaluate, ClusterRole, ClusterRoleBinding, ClusterState, Finding, PolicyRule, RbacObject,
    RoleBinding, Route, RuleWord, Severity, Subject, RBAC_GROUP,
};

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

/// How often each forward oracle fired, printed every 2^16 inputs with `FUZZ_ORACLE_STATS=1`:
/// evidence that the generator reaches the cases the oracle is about.
static STATS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn count(i: usize) {
    STATS[i].fetch_add(1, Ordering::Relaxed);
}

fn report_stats() {
    let runs = STATS[0].fetch_add(1, Ordering::Relaxed) + 1;
    if runs % (1 << 16) == 0 && std::env::var_os("FUZZ_ORACLE_STATS").is_some() {
        eprintln!(
            "oracle: {runs} inputs; binding forward oracle fired {} times, role forward oracle {}",
            STATS[1].load(Ordering::Relaxed),
            STATS[2].load(Ordering::Relaxed)
        );
    }
}

const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
    "escalate",
    "bind",
];
const GROUPS: &[&str] = &["", "*", "apps", RBAC_GROUP];
const RESOURCES: &[&str] = &["secrets", "*", "pods", "*/status", "secrets/*", "roles"];
const NAMES: &[&[&str]] = &[&[], &["a"], &[""]];
const LABEL_KEYS: &[&str] = &["a", "b", "rbac.authorization.k8s.io/aggregate-to-view"];
const LABEL_VALUES: &[&str] = &["1", "true"];
/// The last two are bootstrap names: the engine exempts what their bootstrap definition grants,
/// so the role oracle skips them (the binding oracle and the reverse oracle do not).
const ROLE_NAMES: &[&str] = &[
    "r0",
    "r1",
    "r2",
    "r3",
    "r4",
    "view",
    "system:aggregate-to-view",
];
const BOOTSTRAP_NAMES: &[&str] = &["view", "system:aggregate-to-view"];
const BINDING_NAMES: &[&str] = &["b0", "b1", "b2", "b3"];

/// The Secrets verbs: reads exfiltrate, and every write returns the stored object.
const SECRETS_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

fn pick<'a, T: Copy>(u: &mut Unstructured<'_>, from: &'a [T]) -> arbitrary::Result<T> {
    Ok(*u.choose(from)?)
}

/// Up to `max` distinct items of `from` (a subset, in alphabet order).
fn subset(
    u: &mut Unstructured<'_>,
    from: &[&'static str],
    max: usize,
) -> arbitrary::Result<Vec<RuleWord>> {
    let n = u.int_in_range(0..=max)?;
    let mut out = BTreeSet::new();
    for _ in 0..n {
        out.insert(pick(u, from)?);
    }
    // Keep the generator's order stable but not always sorted: rotate by one byte.
    let mut v: Vec<RuleWord> = out.into_iter().map(RuleWord::Borrowed).collect();
    if !v.is_empty() {
        let k = u.int_in_range(0..=v.len() - 1)?;
        v.rotate_left(k);
    }
    Ok(v)
}

fn labels(u: &mut Unstructured<'_>, max: usize) -> arbitrary::Result<BTreeMap<String, String>> {
    let n = u.int_in_range(0..=max)?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        out.insert(
            pick(u, LABEL_KEYS)?.to_string(),
            pick(u, LABEL_VALUES)?.to_string(),
        );
    }
    Ok(out)
}

fn rule(u: &mut Unstructured<'_>) -> arbitrary::Result<PolicyRule> {
    Ok(PolicyRule {
        verbs: subset(u, VERBS, 3)?,
        api_groups: subset(u, GROUPS, 2)?,
        resources: subset(u, RESOURCES, 2)?,
        resource_names: pick(u, NAMES)?.iter().map(|s| RuleWord::from(*s)).collect(),
        non_resource_urls: Vec::new(),
    })
}

fn cluster_role(u: &mut Unstructured<'_>) -> arbitrary::Result<ClusterRole> {
    let name = pick(u, ROLE_NAMES)?.to_string();
    let own_labels = labels(u, 2)?;
    let n = u.int_in_range(0..=3)?;
    let rules = (0..n).map(|_| rule(u)).collect::<Result<_, _>>()?;
    let aggregation_rule = if u.ratio(1, 2)? {
        let n = u.int_in_range(0..=2)?;
        let cluster_role_selectors = (0..n)
            .map(|_| {
                Ok(LabelSelector {
                    match_labels: labels(u, 2)?,
                    match_expressions: Vec::new(),
                })
            })
            .collect::<arbitrary::Result<_>>()?;
        Some(AggregationRule {
            cluster_role_selectors,
        })
    } else {
        None
    };
    Ok(ClusterRole {
        metadata: ObjectMeta {
            name,
            labels: own_labels,
            ..Default::default()
        },
        rules,
        aggregation_rule,
    })
}

fn subjects(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<Subject>> {
    let n = u.int_in_range(0..=2)?;
    (0..n)
        .map(|_| {
            Ok(match u.int_in_range(0..=2)? {
                0 => Subject {
                    kind: "User".into(),
                    name: "bob".into(),
                    namespace: None,
                    api_group: Some(RBAC_GROUP.into()),
                },
                1 => Subject {
                    kind: "Group".into(),
                    name: "system:masters".into(),
                    namespace: None,
                    api_group: Some(RBAC_GROUP.into()),
                },
                _ => Subject {
                    kind: "ServiceAccount".into(),
                    name: "namespace-controller".into(),
                    namespace: Some("kube-system".into()),
                    api_group: None,
                },
            })
        })
        .collect()
}

fn role_ref(u: &mut Unstructured<'_>) -> arbitrary::Result<RoleRef> {
    Ok(RoleRef {
        api_group: RBAC_GROUP.into(),
        // Mostly ClusterRole; a `Role` roleRef in a ClusterRoleBinding binds nothing.
        kind: if u.ratio(1, 8)? {
            "Role"
        } else {
            "ClusterRole"
        }
        .into(),
        name: pick(u, ROLE_NAMES)?.into(),
    })
}

/// The generated cluster, one object per name (a later object of the same name replaces an
/// earlier one, as `ClusterState::insert` does).
#[derive(Debug)]
struct Cluster {
    roles: BTreeMap<String, ClusterRole>,
    bindings: BTreeMap<String, ClusterRoleBinding>,
    role_bindings: Vec<RoleBinding>,
}

impl<'a> Arbitrary<'a> for Cluster {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut roles = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=6)? {
            let r = cluster_role(u)?;
            roles.insert(r.metadata.name.clone(), r);
        }
        let mut bindings = BTreeMap::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let b = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: pick(u, BINDING_NAMES)?.into(),
                    ..Default::default()
                },
                role_ref: role_ref(u)?,
                subjects: subjects(u)?,
            };
            bindings.insert(b.metadata.name.clone(), b);
        }
        let mut role_bindings = Vec::new();
        for i in 0..u.int_in_range(0..=2)? {
            role_bindings.push(RoleBinding {
                metadata: ObjectMeta {
                    name: format!("rb{i}"),
                    namespace: Some("ns".into()),
                    ..Default::default()
                },
                role_ref: role_ref(u)?,
                subjects: subjects(u)?,
            });
        }
        Ok(Self {
            roles,
            bindings,
            role_bindings,
        })
    }
}

// ---- The oracle: Kubernetes semantics, written out plainly. ----

fn has(list: &[RuleWord], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

/// `matchLabels` only: every pair present; `{}` selects every ClusterRole.
fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(selector.match_expressions.is_empty());
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The names of `root` and of every ClusterRole its aggregation reaches, transitively.
fn closure<'c>(root: &'c str, roles: &'c BTreeMap<String, ClusterRole>) -> BTreeSet<&'c str> {
    let mut seen = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(name) = queue.pop_front() {
        let Some(agg) = roles.get(name).and_then(|r| r.aggregation_rule.as_ref()) else {
            continue;
        };
        for selector in &agg.cluster_role_selectors {
            for (other, role) in roles {
                if selects(selector, &role.metadata.labels) && seen.insert(other.as_str()) {
                    queue.push_back(other.as_str());
                }
            }
        }
    }
    seen
}

/// The authorizer's answer to "<verb> secrets" (core group, no name) for one rule, for some
/// Secrets verb.
fn allows_secrets_request(r: &PolicyRule) -> bool {
    SECRETS_VERBS
        .iter()
        .any(|v| has(&r.verbs, v) || has(&r.verbs, "*"))
        && (has(&r.api_groups, "") || has(&r.api_groups, "*"))
        && (has(&r.resources, "secrets") || has(&r.resources, "*"))
        && r.resource_names.is_empty()
}

/// Whether a rule could allow any request on Secrets at all, for some name: an
/// over-approximation, so "no" is certain.
fn might_touch_secrets(r: &PolicyRule) -> bool {
    SECRETS_VERBS
        .iter()
        .any(|v| has(&r.verbs, v) || has(&r.verbs, "*"))
        && (has(&r.api_groups, "") || has(&r.api_groups, "*"))
        && (has(&r.resources, "secrets") || has(&r.resources, "*"))
}

fn rules_of<'c>(
    names: &BTreeSet<&'c str>,
    roles: &'c BTreeMap<String, ClusterRole>,
) -> Vec<&'c PolicyRule> {
    names
        .iter()
        .filter_map(|n| roles.get(*n))
        .flat_map(|r| r.rules.iter())
        .collect()
}

fn is_bob(s: &Subject) -> bool {
    s.kind == "User" && s.name == "bob"
}

/// The ClusterRole a ClusterRoleBinding really binds, if any.
fn bound_role<'c>(b: &'c ClusterRoleBinding, c: &Cluster) -> Option<&'c str> {
    (b.role_ref.kind == "ClusterRole" && c.roles.contains_key(&b.role_ref.name))
        .then_some(b.role_ref.name.as_str())
}

fn denies_secrets(findings: &[Finding]) -> Option<&Finding> {
    findings
        .iter()
        .find(|f| f.severity == Severity::Deny && f.route == Route::Secrets)
}

fuzz_target!(|c: Cluster| {
    report_stats();
    let mut state = ClusterState::new();
    for r in c.roles.values() {
        state.insert(RbacObject::ClusterRole(r.clone()));
    }
    for b in c.bindings.values() {
        state.insert(RbacObject::ClusterRoleBinding(b.clone()));
    }
    for rb in &c.role_bindings {
        state.insert(RbacObject::RoleBinding(rb.clone()));
    }
    let opts = &POLICY.eval;

    // The roles bound to bob cluster-wide, by binding.
    let bob_bound: Vec<(&str, &str)> = c
        .bindings
        .values()
        .filter(|b| b.subjects.iter().any(is_bob))
        .filter_map(|b| Some((b.metadata.name.as_str(), bound_role(b, &c)?)))
        .collect();

    for b in c.bindings.values() {
        let result = evaluate(&RbacObject::ClusterRoleBinding(b.clone()), &state, opts);
        let reach = bound_role(b, &c).map(|r| closure(r, &c.roles));
        let grants = reach.as_ref().is_some_and(|names| {
            rules_of(names, &c.roles)
                .into_iter()
                .any(|r| allows_secrets_request(r))
        });
        let might = reach.as_ref().is_some_and(|names| {
            rules_of(names, &c.roles)
                .into_iter()
                .any(|r| might_touch_secrets(r))
        });
        let to_bob = b.subjects.iter().any(is_bob);
        match &result {
            Err(_) => assert!(!(to_bob && !might), "a tiny state is over budget\n{c:#?}"),
            Ok(findings) => {
                let deny = denies_secrets(findings);
                if to_bob && grants {
                    count(1);
                    let f = deny.unwrap_or_else(|| {
                        panic!(
                            "ClusterRoleBinding {:?} grants bob Secrets cluster-wide but is not denied\nfindings: {findings:#?}\n{c:#?}",
                            b.metadata.name
                        )
                    });
                    assert!(
                        f.subjects.iter().any(is_bob),
                        "the deny names bob: {f:#?}\n{c:#?}"
                    );
                }
                if !(to_bob && might) {
                    assert!(
                        deny.is_none(),
                        "ClusterRoleBinding {:?} denied though it grants bob no Secrets rule\nfindings: {findings:#?}\n{c:#?}",
                        b.metadata.name
                    );
                }
            }
        }
    }

    for r in c.roles.values() {
        let name = r.metadata.name.as_str();
        let result = evaluate(&RbacObject::ClusterRole(r.clone()), &state, opts);
        let own = closure(name, &c.roles);
        let grants = rules_of(&own, &c.roles)
            .into_iter()
            .any(|r| allows_secrets_request(r));
        let might = rules_of(&own, &c.roles)
            .into_iter()
            .any(|r| might_touch_secrets(r));
        // Bound to bob directly, or selected (transitively) by a role bound to bob.
        let via: Vec<&str> = bob_bound
            .iter()
            .filter(|(_, bound)| closure(bound, &c.roles).contains(name))
            .map(|(binding, _)| *binding)
            .collect();
        let reaches_bob = !via.is_empty();
        match &result {
            Err(_) => assert!(
                !(reaches_bob && !might),
                "a tiny state is over budget\n{c:#?}"
            ),
            Ok(findings) => {
                let deny = denies_secrets(findings);
                if reaches_bob && grants && !BOOTSTRAP_NAMES.contains(&name) {
                    count(2);
                    assert!(
                        deny.is_some(),
                        "ClusterRole {name:?} reaches bob (through ClusterRoleBinding {via:?}) with a Secrets rule but is not denied\nfindings: {findings:#?}\n{c:#?}"
                    );
                }
                if !(reaches_bob && might) {
                    assert!(
                        deny.is_none(),
                        "ClusterRole {name:?} denied though no Secrets rule of it reaches bob\nfindings: {findings:#?}\n{c:#?}"
                    );
                }
            }
        }
    }

    // Namespace-scoped grants are judged too; only "never a panic" is asked of them.
    for rb in &c.role_bindings {
        let _ = evaluate(&RbacObject::RoleBinding(rb.clone()), &state, opts);
    }
});
