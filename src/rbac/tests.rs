//! Verdict tables for the engine: each case is real manifest YAML judged against a state.

use super::*;

fn objects(yaml: &str) -> Vec<RbacObject> {
    let loaded = crate::manifest::parse_stream(yaml, "test.yaml", false);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.objects.into_iter().map(|o| o.object).collect()
}

fn one(yaml: &str) -> RbacObject {
    objects(yaml).remove(0)
}

/// Judge `object` against builtins plus `state_yaml`.
fn judge(object: &str, state_yaml: &str, opts: &EvalOptions) -> Vec<Finding> {
    let mut state = ClusterState::with_builtins();
    if !state_yaml.trim().is_empty() {
        state.extend(objects(state_yaml));
    }
    evaluate(&one(object), &state, opts).expect("within budget")
}

fn severities(findings: &[Finding]) -> Vec<(Severity, Route)> {
    findings.iter().map(|f| (f.severity, f.route)).collect()
}

const READER: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: y}
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get]
- apiGroups: [""]
  resources: ["*"]
  verbs: [get, list]
"#;

const BIND_BOB_TO_Y: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: x}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: y}
subjects:
- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}
"#;

#[test]
fn binding_a_secrets_role_cluster_wide_is_denied_with_the_design_message() {
    let f = judge(BIND_BOB_TO_Y, READER, &EvalOptions::default());
    // list already reads every Secret, so the indirect routes `get` on "*" opens are not reported.
    assert_eq!(severities(&f), vec![(Severity::Deny, Route::Secrets)]);
    assert_eq!(
        f[0].message,
        r#"secretscope: ClusterRoleBinding "x" grants User "bob" cluster-wide read of Secrets (get, list) via ClusterRole "y" rule 2 (apiGroups [""], resources ["*"], verbs ["get","list"])"#
    );
    assert_eq!(f[0].verbs, vec!["get", "list"]);
    assert_eq!(f[0].via[0].rule, 2);
    assert_eq!(f[0].bindings, vec!["x"]);
}

#[test]
fn binding_with_no_subjects_grants_nothing() {
    let crb = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: x}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: y}
"#;
    let f = judge(crb, READER, &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Info, Route::Secrets)]);
    assert!(f[0].message.contains("grants nothing"), "{}", f[0].message);
}

#[test]
fn a_rolebinding_of_a_secrets_clusterrole_is_namespace_scoped() {
    let rb = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb, namespace: az-acme}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: y}
subjects: [{kind: ServiceAccount, name: api, namespace: portal}]
"#;
    let f = judge(rb, READER, &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Info, Route::Secrets)]);
    assert_eq!(f[0].scope, Scope::Namespace);
    assert!(
        f[0].message.contains(r#"in namespace "az-acme" only"#),
        "{}",
        f[0].message
    );
}

#[test]
fn a_clusterrole_is_judged_on_its_bindings_unless_strict() {
    let unbound = judge(READER, "", &EvalOptions::default());
    assert_eq!(severities(&unbound), vec![(Severity::Info, Route::Secrets)]);
    assert_eq!(unbound[0].scope, Scope::Unbound);

    let bound = judge(READER, BIND_BOB_TO_Y, &EvalOptions::default());
    assert_eq!(severities(&bound), vec![(Severity::Deny, Route::Secrets)]);
    assert!(bound[0]
        .message
        .contains(r#"through ClusterRoleBinding "x""#));
    assert_eq!(bound[0].subjects[0].name, "bob");

    let strict = EvalOptions {
        scope: BindingScope::Strict,
        ..Default::default()
    };
    let f = judge(READER, "", &strict);
    assert_eq!(severities(&f), vec![(Severity::Deny, Route::Secrets)]);
    assert_eq!(f[0].scope, Scope::Strict);
}

#[test]
fn a_clusterrole_whose_labels_aggregate_it_into_a_bound_role_is_denied() {
    let member = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sneaky
  labels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
"#;
    // edit is aggregated into admin; only admin is bound cluster-wide here.
    let bind_admin = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ops-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects: [{kind: Group, name: ops, apiGroup: rbac.authorization.k8s.io}]
"#;
    let f = judge(member, bind_admin, &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Deny, Route::Secrets)]);
    assert!(
        f[0].message
            .contains(r#"(aggregated into ClusterRole "edit", which is aggregated into "admin")"#),
        "{}",
        f[0].message
    );

    // Without the binding, the same role is fine in bindings scope.
    let f = judge(member, "", &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Info, Route::Secrets)]);
}

#[test]
fn binding_an_aggregated_role_is_judged_on_its_members() {
    let objects = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: umbrella}
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: team, operator: In, values: [a, b]}]
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: part, labels: {team: b}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [watch]}]
"#;
    let crb = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: u}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: umbrella}
subjects: [{kind: ServiceAccount, name: bot, namespace: ci}]
"#;
    let f = judge(crb, objects, &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Deny, Route::Secrets)]);
    assert_eq!(
        f[0].message,
        r#"secretscope: ClusterRoleBinding "u" grants ServiceAccount "ci/bot" cluster-wide read of Secrets (watch) via ClusterRole "umbrella", which aggregates ClusterRole "part" rule 1 (apiGroups [""], resources ["secrets"], verbs ["watch"])"#
    );
}

/// A binding of a harmless role is remembered as nothing to judge, per state: a role that joins
/// the bound one later (by insert, by a copy's extend, by a re-list) is judged with it.
#[test]
fn a_remembered_harmless_role_is_judged_again_once_the_state_changes() {
    let crb = one(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: User, name: bob}]
"#);
    let joins_view = one(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: extra, labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
"#);
    let opts = EvalOptions::default();
    let denied = |state: &ClusterState| {
        let f = evaluate(&crb, state, &opts).expect("within budget");
        severities(&f).contains(&(Severity::Deny, Route::Secrets))
    };
    let mut state = ClusterState::with_builtins();
    assert!(!state.memo().is_harmless("view"));
    assert!(!denied(&state));
    // Remembered: the second answer comes from the memo.
    assert!(state.memo().is_harmless("view"));
    assert!(!denied(&state));
    let mut copy = state.clone();
    assert!(!copy.memo().is_harmless("view"));
    copy.extend([joins_view.clone()]);
    assert!(denied(&copy));
    state.insert(joins_view.clone());
    assert!(!state.memo().is_harmless("view"));
    assert!(denied(&state));
    // A role found to grant Secrets is never remembered as harmless.
    assert!(!state.memo().is_harmless("view"));

    let mut relisted = ClusterState::with_builtins();
    assert!(!denied(&relisted));
    let mut roles: Vec<RbacObject> = ClusterState::with_builtins()
        .cluster_roles()
        .cloned()
        .map(RbacObject::ClusterRole)
        .collect();
    roles.push(joins_view);
    relisted.replace_kind(RbacKind::ClusterRole, roles);
    assert!(denied(&relisted));
}

#[test]
fn an_empty_aggregation_selector_pulls_in_cluster_admin() {
    let everything = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: everything}
aggregationRule: {clusterRoleSelectors: [{}]}
"#;
    let bind = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: everything}
subjects: [{kind: User, name: eve}]
"#;
    let f = judge(everything, bind, &EvalOptions::default());
    assert_eq!(f[0].severity, Severity::Deny);
    assert_eq!(f[0].verbs.len(), 8);
    assert!(f[0].via.iter().any(|r| r.role == "cluster-admin"));
}

#[test]
fn aggregation_cycles_terminate() {
    let cyclic = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: a, labels: {in: b}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {in: a}}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: b, labels: {in: a}}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {in: b}}]}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ab}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: a}
subjects: [{kind: User, name: u}]
"#;
    let mut state = ClusterState::new();
    state.extend(objects(cyclic));
    for o in objects(cyclic) {
        let f = evaluate(&o, &state, &EvalOptions::default()).expect("within budget");
        assert!(f.iter().any(|f| f.severity == Severity::Deny), "{o:?}");
    }
}

/// The default policy, as `serve` and `check` run it.
fn default_opts() -> EvalOptions {
    crate::policy::Policy::default().eval
}

const BIND_BOB_TO_VIEW: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}
"#;

fn denies(f: &[Finding]) -> bool {
    f.iter()
        .any(|f| f.severity == Severity::Deny && f.route == Route::Secrets)
}

/// Issue 8 hole 1: no exemption by choosing a name. A role *named* `system:...` that aggregates
/// a Secrets rule into a cluster-wide `view` is judged like any other.
#[test]
fn a_system_name_earns_no_exemption() {
    let squatter = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:anything
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules:
- {apiGroups: [""], resources: [secrets], verbs: [get, list]}
"#;
    let f = judge(squatter, BIND_BOB_TO_VIEW, &default_opts());
    assert!(denies(&f), "{f:#?}");
    assert!(
        f[0].message
            .contains(r#"(aggregated into ClusterRole "view")"#),
        "{}",
        f[0].message
    );
    // Without a cluster-wide view it is only an unbound Secrets role.
    let f = judge(squatter, "", &default_opts());
    assert!(!denies(&f));
}

/// Issue 8 hole 1, UPDATE: a bootstrap role is exempt only for what its bootstrap definition
/// grants; a rule added to `system:aggregate-to-view` is judged.
#[test]
fn a_rule_added_to_a_bootstrap_role_is_judged() {
    let state = ClusterState::with_builtins();
    let mut role = state
        .cluster_role("system:aggregate-to-view")
        .cloned()
        .expect("bootstrap role");
    let as_defined = judge_object(&RbacObject::ClusterRole(role.clone()), BIND_BOB_TO_VIEW);
    assert!(
        as_defined.iter().all(|f| f.severity == Severity::Info),
        "{as_defined:#?}"
    );
    role.rules
        .push(PolicyRule::of(&["get"], &[""], &["secrets"], &[]));
    let added = judge_object(&RbacObject::ClusterRole(role), BIND_BOB_TO_VIEW);
    assert!(denies(&added), "{added:#?}");
    assert_eq!(added[0].verbs, vec!["get"]);
    assert_eq!(
        added[0].via.len(),
        1,
        "only the added rule is named: {:?}",
        added[0].via
    );
}

/// Issue 8 hole 1, bound directly: a `system:`-named role already granted by a
/// ClusterRoleBinding gets a Secrets rule by UPDATE.
#[test]
fn a_bound_system_named_role_is_judged() {
    let role = READER.replace("name: y", "name: \"system:monitoring\"");
    let bind = BIND_BOB_TO_Y.replace("name: y", "name: \"system:monitoring\"");
    let f = judge(&role, &bind, &default_opts());
    assert!(denies(&f), "{f:#?}");
}

/// A bootstrap role with a label its definition lacks aggregates somewhere new: every rule it
/// holds is judged there, bootstrap ones included.
#[test]
fn a_bootstrap_role_aggregated_somewhere_new_is_judged_in_full() {
    let state = ClusterState::with_builtins();
    let mut role = state
        .cluster_role("system:aggregate-to-edit")
        .cloned()
        .unwrap();
    assert!(
        judge_object(&RbacObject::ClusterRole(role.clone()), BIND_BOB_TO_VIEW)
            .iter()
            .all(|f| f.severity == Severity::Info)
    );
    role.metadata.labels.insert(
        "rbac.authorization.k8s.io/aggregate-to-view".into(),
        "true".into(),
    );
    let f = judge_object(&RbacObject::ClusterRole(role), BIND_BOB_TO_VIEW);
    assert!(denies(&f), "{f:#?}");
}

/// Configured exemptions: by exact name, for direct bindings only; aggregation is judged; and
/// bindings to a bootstrap role are judged by everything the role grants.
#[test]
fn configured_exemptions_cover_direct_bindings_only() {
    let opts = EvalOptions {
        exempt_roles: NameGlobs::new(&["platform-reader"]).unwrap(),
        ..default_opts()
    };
    let role = READER.replace("name: y", "name: platform-reader");
    let bind = BIND_BOB_TO_Y.replace("name: y", "name: platform-reader");
    assert!(!denies(&judge(&role, &bind, &opts)));
    let aggregated = role.replace(
        "metadata: {name: platform-reader}",
        "metadata: {name: platform-reader, labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}}",
    );
    assert!(denies(&judge(&aggregated, BIND_BOB_TO_VIEW, &opts)));

    let bind_ca = BIND_BOB_TO_Y.replace("name: y", "name: cluster-admin");
    let f = judge(&bind_ca, "", &opts);
    assert_eq!(f[0].severity, Severity::Deny);
    assert!(f[0].message.contains("read and write of Secrets"));
}

fn judge_object(object: &RbacObject, state_yaml: &str) -> Vec<Finding> {
    let mut state = ClusterState::with_builtins();
    state.extend(objects(state_yaml));
    evaluate(object, &state, &default_opts()).expect("within budget")
}

#[test]
fn exempt_subjects_do_not_count_as_grantees() {
    let opts = EvalOptions {
        exempt_subjects: vec![SubjectPattern {
            kind: "ServiceAccount".into(),
            name: NameGlobs::new(&["*"]).unwrap(),
            namespace: Some(NameGlobs::new(&["kube-system"]).unwrap()),
            reason: None,
        }],
        ..Default::default()
    };
    let crb = |ns: &str| {
        format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: x}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: y}}
subjects: [{{kind: ServiceAccount, name: ctrl, namespace: {ns}}}]
"#
        )
    };
    let f = judge(&crb("kube-system"), READER, &opts);
    assert_eq!(severities(&f), vec![(Severity::Info, Route::Secrets)]);
    let f = judge(&crb("kube-systemx"), READER, &opts);
    assert_eq!(f[0].severity, Severity::Deny);
}

#[test]
fn indirect_routes_follow_the_configured_action() {
    let pods = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: y}
rules: [{apiGroups: [""], resources: [pods, pods/exec], verbs: [create]}]
"#;
    let routes = |action| {
        let opts = EvalOptions {
            indirect: action,
            ..Default::default()
        };
        severities(&judge(BIND_BOB_TO_Y, pods, &opts))
    };
    use IndirectRoute::*;
    assert_eq!(
        routes(RouteAction::Warn),
        vec![
            (Severity::Warn, Route::Indirect(Workloads)),
            (Severity::Warn, Route::Indirect(PodExec))
        ]
    );
    assert_eq!(routes(RouteAction::Deny)[0].0, Severity::Deny);
    assert!(routes(RouteAction::Off).is_empty());
    // Unbound, the same role raises nothing.
    assert!(judge(pods, "", &EvalOptions::default()).is_empty());
}

#[test]
fn indirect_routes_are_reported_beside_partial_secrets_access() {
    // `get` on every core resource reaches pods/exec, pods/attach and nodes/proxy too (their
    // WebSocket upgrade starts with a GET). get alone needs a Secret's name, so the routes that
    // reach every Secret are still worth a warning.
    let getter = READER.replace("verbs: [get, list]", "verbs: [get]");
    let f = judge(BIND_BOB_TO_Y, &getter, &EvalOptions::default());
    use IndirectRoute::*;
    assert_eq!(
        severities(&f),
        vec![
            (Severity::Deny, Route::Secrets),
            (Severity::Warn, Route::Indirect(PodExec)),
            (Severity::Warn, Route::Indirect(PodAttach)),
            (Severity::Warn, Route::Indirect(NodeProxy)),
        ]
    );
    let watcher = READER.replace("verbs: [get, list]", "verbs: [watch]");
    assert_eq!(
        judge(BIND_BOB_TO_Y, &watcher, &EvalOptions::default()).len(),
        1
    );
}

#[test]
fn named_secrets_are_reported_as_such() {
    let named = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: y}
rules: [{apiGroups: [""], resources: [secrets], resourceNames: [webhook-tls], verbs: [get, update, create]}]
"#;
    let f = judge(BIND_BOB_TO_Y, named, &EvalOptions::default());
    assert_eq!(f[0].severity, Severity::Deny);
    assert_eq!(f[0].names, vec!["webhook-tls"]);
    assert_eq!(
        f[0].verbs,
        vec!["get", "create", "update"],
        "a PUT or apply creating Secret webhook-tls is a named create"
    );
    assert!(f[0].message.contains(r#"read and write of Secrets named "webhook-tls" (get, create, update; write responses return Secret data too)"#), "{}", f[0].message);
}

#[test]
fn subresources_of_secrets_are_not_secrets() {
    let status = READER.replace(
        r#"resources: ["*"]"#,
        "resources: [secrets/status, secrets/*]",
    );
    assert!(judge(BIND_BOB_TO_Y, &status, &EvalOptions::default()).is_empty());
}

#[test]
fn a_binding_to_an_unknown_role_is_a_warning() {
    let f = judge(BIND_BOB_TO_Y, "", &EvalOptions::default());
    assert_eq!(severities(&f), vec![(Severity::Warn, Route::Secrets)]);
    assert_eq!(f[0].scope, Scope::Unknown);
}

#[test]
fn the_exempt_annotation_is_honoured_only_when_allowed() {
    let annotated = BIND_BOB_TO_Y.replace(
        "metadata: {name: x}",
        "metadata: {name: x, annotations: {secretscope.io/exempt: \"break-glass INC-42\"}}",
    );
    let f = judge(&annotated, READER, &EvalOptions::default());
    assert_eq!(f[0].severity, Severity::Deny);
    let opts = EvalOptions {
        honour_exempt_annotation: true,
        ..Default::default()
    };
    let f = judge(&annotated, READER, &opts);
    assert_eq!(f[0].severity, Severity::Info);
    assert!(f[0]
        .message
        .ends_with("(exempt by annotation: break-glass INC-42)"));
}

mod properties {
    use super::super::rule::{rule_allows, ResourceRequest};
    use super::*;
    use proptest::prelude::*;

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
    const GROUPS: &[&str] = &["", "*", "apps", "rbac.authorization.k8s.io"];
    const RESOURCES: &[&str] = &[
        "secrets",
        "*",
        "pods",
        "secrets/status",
        "*/status",
        "secrets/*",
        "pods/exec",
        "*/*",
        "clusterroles",
    ];
    const NAMES: &[&str] = &["a", "b", ""];

    fn pick(from: &'static [&'static str]) -> impl Strategy<Value = Vec<RuleWord>> {
        proptest::sample::subsequence(from, 0..=from.len().min(3))
            .prop_map(|v| v.into_iter().map(RuleWord::from).collect())
    }

    fn rule() -> impl Strategy<Value = PolicyRule> {
        (
            pick(VERBS),
            pick(GROUPS),
            pick(RESOURCES),
            prop_oneof![Just(vec![]), pick(NAMES)],
        )
            .prop_map(
                |(verbs, api_groups, resources, resource_names)| PolicyRule {
                    verbs,
                    api_groups,
                    resources,
                    resource_names,
                    non_resource_urls: vec![],
                },
            )
    }

    fn request() -> impl Strategy<Value = (String, String, String, String, String)> {
        (
            proptest::sample::select(VERBS),
            proptest::sample::select(GROUPS),
            proptest::sample::select(&["secrets", "pods", "clusterroles"][..]),
            proptest::sample::select(&["", "status", "exec", "*"][..]),
            proptest::sample::select(&["", "a", "c"][..]),
        )
            .prop_map(|(v, g, r, s, n)| (v.into(), g.into(), r.into(), s.into(), n.into()))
    }

    fn covers(big: &SecretsAccess, small: &SecretsAccess) -> bool {
        small
            .grants()
            .iter()
            .all(|(verb, reach)| match (big.reach(*verb), reach) {
                (Some(Reach::All), _) => true,
                (Some(Reach::Named(b)), Reach::Named(s)) => s.is_subset(b),
                _ => false,
            })
    }

    proptest! {
        #[test]
        fn adding_a_rule_never_removes_access(rules in proptest::collection::vec(rule(), 0..5), extra in rule()) {
            let before = SecretsAccess::of(&EffectiveRules::own("r", &rules));
            let mut more = rules.clone();
            more.push(extra);
            let after = SecretsAccess::of(&EffectiveRules::own("r", &more));
            prop_assert!(covers(&after, &before), "{before:?} -> {after:?}");
        }

        #[test]
        fn a_wildcard_covers_everything_its_literal_would(r in rule(), req in request()) {
            let (v, g, res, sub, n) = &req;
            let q = ResourceRequest { verb: v, api_group: g, resource: res, subresource: sub, name: n };
            if rule_allows(&r, &q) {
                for widen in 0..4 {
                    let mut w = r.clone();
                    match widen {
                        0 => w.verbs = vec!["*".into()],
                        1 => w.api_groups = vec!["*".into()],
                        2 => w.resources = vec!["*".into()],
                        _ => w.resource_names.clear(),
                    }
                    prop_assert!(rule_allows(&w, &q), "{w} should allow {q:?} as {r} does");
                }
            }
        }

        /// Issue 10: per verb, the reach SecretsAccess reports equals the one found by
        /// enumerating requests and asking `RuleAllows` alone: the unnamed request (a plain list
        /// or watch, a POST create, a deletecollection: name "") and requests for listed and
        /// unlisted names. Rules draw `resourceNames` from "a", "b" and "".
        #[test]
        fn reach_equals_request_enumeration(rules in proptest::collection::vec(rule(), 1..4)) {
            let rules: &'static [PolicyRule] = Box::leak(rules.into_boxed_slice());
            let access = SecretsAccess::of(&EffectiveRules::own("r", rules));
            for verb in SecretsVerb::ALL {
                let v = verb.as_str();
                let allows = |name: &str| {
                    let req = ResourceRequest::new(v, "", "secrets").named(name);
                    rules.iter().any(|r| rule_allows(r, &req))
                };
                let unnamed = matches!(v, "list" | "watch" | "create" | "deletecollection");
                let named = v != "deletecollection";
                let everything = (unnamed && allows("")) || (named && allows("an-unlisted-name"));
                let listed: std::collections::BTreeSet<&str> = ["a", "b"]
                    .into_iter()
                    .filter(|n| named && allows(n))
                    .collect();
                match access.reach(verb) {
                    Some(Reach::All) => prop_assert!(everything, "{v}: reported all"),
                    Some(Reach::Named(names)) => {
                        prop_assert!(!everything, "{v}: reported named, reaches all");
                        prop_assert_eq!(names.set(), listed, "{}", v);
                    }
                    None => prop_assert!(!everything && listed.is_empty(), "{v}: reported none"),
                }
            }
        }

    }
}
