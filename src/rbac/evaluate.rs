//! The verdict: findings for one RBAC object judged against a `ClusterState`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::budget::{Budget, OverBudget, DEFAULT_WORK_LIMIT};
use super::builtin::{self, Bootstrap};
use super::effective::{cluster_bindings, BindingPath, EffectiveRules};
use super::finding::{
    describe_subjects, describe_via, Finding, Route, RuleRef, Scope, Severity, VerbReach,
};
use super::indirect::{indirect_routes, OpenRoute};
use super::model::{
    ClusterRole, ClusterRoleBinding, ObjectRef, RbacKind, RbacObject, Role, RoleBinding, Subject,
};
use super::secrets::{Reach, SecretsAccess};
use super::state::ClusterState;

/// Per-object opt-out, honoured only when the policy allows it.
pub const EXEMPT_ANNOTATION: &str = "secretscope.io/exempt";

/// Which ClusterRoles are judged on Secrets access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingScope {
    /// Only those a ClusterRoleBinding grants to someone, directly or through aggregation.
    #[default]
    Bindings,
    /// Every ClusterRole that carries a Secrets rule, bound or not.
    Strict,
}

/// What to do about indirect routes granted cluster-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAction {
    Off,
    #[default]
    Warn,
    Deny,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid glob {pattern:?}: {source}")]
pub struct GlobError {
    pub pattern: String,
    #[source]
    pub source: globset::Error,
}

/// A set of name globs (`system:*`); `*` matches any run of characters.
#[derive(Debug, Clone, Default)]
pub struct NameGlobs {
    /// Patterns without a glob metacharacter, compared as strings: most exemptions name one
    /// subject exactly, and a GlobSet match costs ~460 instructions (Candidate set-up) where a
    /// comparison costs a few (benches/profile.sh; six of them were 2% of a review).
    literals: Vec<String>,
    /// The rest.
    set: GlobSet,
    patterns: Vec<String>,
}

/// Characters that make a pattern a glob for globset (escapes and classes included).
fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl NameGlobs {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, GlobError> {
        let mut literals = Vec::new();
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
            if is_literal(p) {
                literals.push(p.to_string());
                continue;
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|source| GlobError {
                    pattern: p.to_string(),
                    source,
                })?;
            b.add(glob);
        }
        let set = b.build().map_err(|source| GlobError {
            pattern: String::new(),
            source,
        })?;
        Ok(Self {
            literals,
            set,
            patterns: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.literals.iter().any(|l| l == name) || (!self.set.is_empty() && self.set.is_match(name))
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// A subject exemption: kind exact (or `*`), name and namespace as globs.
#[derive(Debug, Clone)]
pub struct SubjectPattern {
    pub kind: String,
    pub name: NameGlobs,
    /// For ServiceAccounts; `None` matches any namespace.
    pub namespace: Option<NameGlobs>,
    /// Why the policy trusts it, repeated in every finding it exempts.
    pub reason: Option<String>,
}

impl SubjectPattern {
    pub fn matches(&self, s: &Subject) -> bool {
        (self.kind == "*" || self.kind == s.kind)
            && self.name.is_match(&s.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| s.namespace.as_deref().is_some_and(|n| ns.is_match(n)))
    }
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub scope: BindingScope,
    pub indirect: RouteAction,
    /// ClusterRoles (configured by name) whose own definition is not judged where they are
    /// bound directly. Bindings *to* them still are, and so is any aggregation of them into a
    /// bound role. Bootstrap roles need no entry: the engine knows what they grant.
    pub exempt_roles: NameGlobs,
    pub exempt_subjects: Vec<SubjectPattern>,
    pub honour_exempt_annotation: bool,
    /// Steps one object's judgement may take (see [`Budget`]).
    pub work_limit: u64,
    /// Fill `names` and `reach` in findings. Admission reads only messages, and a rule may name
    /// a great many Secrets: it turns this off rather than copy every name per verb.
    pub name_details: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            scope: BindingScope::default(),
            indirect: RouteAction::default(),
            exempt_roles: NameGlobs::default(),
            exempt_subjects: Vec::new(),
            honour_exempt_annotation: false,
            work_limit: DEFAULT_WORK_LIMIT,
            name_details: true,
        }
    }
}

impl EvalOptions {
    pub fn subject_exempt(&self, s: &Subject) -> bool {
        self.exempt_subjects.iter().any(|p| p.matches(s))
    }

    /// ` (exempt by policy: reason, ...)` for the exempt subjects among `subjects`.
    fn exemption_note(&self, subjects: &[Subject]) -> String {
        let mut reasons: Vec<&str> = subjects
            .iter()
            .filter_map(|s| self.exempt_subjects.iter().find(|p| p.matches(s)))
            .filter_map(|p| p.reason.as_deref())
            .collect();
        reasons.sort();
        reasons.dedup();
        if reasons.is_empty() {
            " (exempt by policy)".to_string()
        } else {
            format!(" (exempt by policy: {})", reasons.join("; "))
        }
    }

    fn granted_subjects(&self, subjects: &[Subject]) -> Vec<Subject> {
        subjects
            .iter()
            .filter(|s| !self.subject_exempt(s))
            .cloned()
            .collect()
    }

    fn route_severity(&self) -> Option<Severity> {
        match self.indirect {
            RouteAction::Off => None,
            RouteAction::Warn => Some(Severity::Warn),
            RouteAction::Deny => Some(Severity::Deny),
        }
    }
}

/// Judges `object` as if it were written to a cluster holding `state` (an older version of the
/// object in `state` is superseded by this one). `Err` when judging it would take more than
/// `opts.work_limit` steps: callers deny (admission) or report an input error (`check`).
pub fn evaluate(
    object: &RbacObject,
    state: &ClusterState,
    opts: &EvalOptions,
) -> Result<Vec<Finding>, OverBudget> {
    let budget = Budget::new(opts.work_limit);
    let mut findings = match object {
        RbacObject::ClusterRole(cr) => cluster_role(cr, state, opts, &budget)?,
        RbacObject::ClusterRoleBinding(crb) => cluster_role_binding(crb, state, opts, &budget)?,
        RbacObject::Role(r) => role(r, object.object_ref(), opts.name_details),
        RbacObject::RoleBinding(rb) => {
            role_binding(rb, state, object.object_ref(), &budget, opts.name_details)?
        }
    };
    if opts.honour_exempt_annotation {
        if let Some(reason) = object
            .metadata()
            .annotations
            .get(EXEMPT_ANNOTATION)
            .filter(|r| !r.trim().is_empty())
        {
            for f in &mut findings {
                if f.severity > Severity::Info {
                    f.severity = Severity::Info;
                    f.message
                        .push_str(&format!(" (exempt by annotation: {reason})"));
                }
            }
        }
    }
    Ok(findings)
}

struct Grant<'a> {
    /// See [`EvalOptions::name_details`].
    details: bool,
    object: ObjectRef,
    rules: &'a EffectiveRules<'a>,
    role_kind: &'static str,
    role_name: &'a str,
}

impl Grant<'_> {
    fn secrets(&self, access: &SecretsAccess, severity: Severity, scope: Scope) -> Finding {
        Finding {
            object: self.object.clone(),
            severity,
            route: Route::Secrets,
            scope,
            verbs: access.verbs().iter().map(|v| v.to_string()).collect(),
            names: if self.details {
                access.names().into_iter().map(String::from).collect()
            } else {
                Vec::new()
            },
            reach: access
                .grants()
                .iter()
                .filter(|_| self.details)
                .map(|(verb, reach)| match reach {
                    Reach::All => VerbReach {
                        verb: verb.as_str(),
                        secrets: "all",
                        names: Vec::new(),
                    },
                    Reach::Named(names) => VerbReach {
                        verb: verb.as_str(),
                        secrets: "named",
                        names: names.set().into_iter().map(String::from).collect(),
                    },
                })
                .collect(),
            subjects: Vec::new(),
            bindings: Vec::new(),
            via: RuleRef::collect(self.role_kind, self.rules, &access.granting_rules),
            message: String::new(),
        }
    }

    fn via(&self, f: &Finding) -> String {
        describe_via(&f.via, self.role_kind, self.role_name)
    }

    /// One finding per indirect route the rules open, granted to `subjects` through `bindings`.
    /// `through` names the bindings in the message when the object is not itself the binding;
    /// `note` ends the message.
    fn routes(
        &self,
        severity: Severity,
        subjects: &[Subject],
        bindings: &[String],
        through: bool,
        note: &str,
    ) -> Vec<Finding> {
        indirect_routes(self.rules)
            .iter()
            .map(|open| {
                let mut f = Finding {
                    object: self.object.clone(),
                    severity,
                    route: Route::Indirect(open.route),
                    scope: Scope::ClusterWide,
                    verbs: Vec::new(),
                    names: Vec::new(),
                    reach: Vec::new(),
                    subjects: subjects.to_vec(),
                    bindings: bindings.to_vec(),
                    via: RuleRef::collect(self.role_kind, self.rules, &open.rules),
                    message: String::new(),
                };
                let (action, why) = open.route.describe();
                let through = if through {
                    format!(
                        " through ClusterRoleBinding {}",
                        quoted(bindings.iter().map(String::as_str))
                    )
                } else {
                    String::new()
                };
                f.message = format!(
                    "secretscope: {} lets {} {action}{} cluster-wide{through}, {why}: an indirect route to Secrets {}{note}",
                    self.object,
                    describe_subjects(subjects),
                    only_named(open),
                    self.via(&f),
                );
                f
            })
            .collect()
    }
}

/// What a ClusterRole under review is exempt for. Never its name alone: whoever writes a
/// ClusterRole picks its name.
#[derive(Clone, Copy)]
enum RoleExemption {
    None,
    /// A bootstrap role: the rules its bootstrap definition grants, where that definition binds
    /// or aggregates them. A rule an UPDATE adds, or a label that aggregates it somewhere new, is
    /// judged.
    Bootstrap(&'static Bootstrap),
    /// Named in `exemptions.clusterRoles`: its definition where it is bound directly. Its
    /// aggregation into a bound role is judged whatever the policy says of its name.
    Configured,
}

impl RoleExemption {
    fn of(name: &str, opts: &EvalOptions) -> Self {
        if opts.exempt_roles.is_match(name) {
            Self::Configured
        } else if let Some(b) = builtin::bootstrap(name) {
            Self::Bootstrap(b)
        } else {
            Self::None
        }
    }

    /// The rules judged on the paths the exemption covers.
    fn judged<'a>(self, all: &EffectiveRules<'a>) -> EffectiveRules<'a> {
        match self {
            Self::None => all.clone(),
            Self::Bootstrap(b) => all.filtered(|r| !b.covers(r.rule)),
            Self::Configured => EffectiveRules::default(),
        }
    }

    /// Whether `path` is one the exemption covers (else every rule is judged on it).
    fn covers_path(self, path: &BindingPath<'_>, state: &ClusterState) -> bool {
        match self {
            Self::None => true,
            Self::Bootstrap(b) => path.through.first().is_none_or(|agg| {
                state
                    .cluster_role(agg)
                    .is_some_and(|agg| b.aggregates_into(agg))
            }),
            Self::Configured => path.through.is_empty(),
        }
    }
}

fn cluster_role(
    cr: &ClusterRole,
    state: &ClusterState,
    opts: &EvalOptions,
    budget: &Budget,
) -> Result<Vec<Finding>, OverBudget> {
    let name = cr.metadata.name.as_str();
    let exemption = RoleExemption::of(name, opts);
    let all = EffectiveRules::of_cluster_role(cr, state, budget)?;
    let judged = exemption.judged(&all);
    let object = ObjectRef {
        kind: RbacKind::ClusterRole,
        name: name.to_string(),
        namespace: None,
    };
    let grant = |rules| Grant {
        details: opts.name_details,
        object: object.clone(),
        rules,
        role_kind: "ClusterRole",
        role_name: name,
    };
    let (exempt_grant, full_grant) = (grant(&judged), grant(&all));
    let exempt_access = SecretsAccess::of(&judged);
    let full_access = match exemption {
        RoleExemption::None => exempt_access.clone(),
        _ => SecretsAccess::of(&all),
    };
    let paths = cluster_bindings(name, &cr.metadata.labels, state, budget)?;
    // Each path that grants to someone not exempt, with the rules judged on it.
    let granting: Vec<(&BindingPath, Vec<Subject>, &Grant, &SecretsAccess)> = paths
        .iter()
        .map(|p| (p, opts.granted_subjects(&p.binding.subjects)))
        .filter(|(_, s)| !s.is_empty())
        .map(|(p, s)| {
            if exemption.covers_path(p, state) {
                (p, s, &exempt_grant, &exempt_access)
            } else {
                (p, s, &full_grant, &full_access)
            }
        })
        .collect();

    let mut out = Vec::new();
    for (path, subjects, g, access) in &granting {
        if access.is_empty() {
            continue;
        }
        let mut f = g.secrets(access, Severity::Deny, Scope::ClusterWide);
        let through = aggregation_chain(&path.through);
        f.message = format!(
            "secretscope: {} grants {} cluster-wide {access}{through} through ClusterRoleBinding {} {}{}",
            g.object,
            describe_subjects(subjects),
            quoted([path.binding.metadata.name.as_str()].into_iter()),
            g.via(&f),
            aggregated_fix(&f, name),
        );
        f.subjects = subjects.clone();
        f.bindings = vec![path.binding.metadata.name.clone()];
        out.push(f);
    }
    if granting.is_empty() && !exempt_access.is_empty() {
        let (severity, scope, why) = match opts.scope {
            BindingScope::Strict => (
                Severity::Deny,
                Scope::Strict,
                "; scope strict allows no ClusterRole to carry a Secrets rule".to_string(),
            ),
            BindingScope::Bindings if paths.is_empty() => (
                Severity::Info,
                Scope::Unbound,
                "; no ClusterRoleBinding grants it, so it reaches only the namespaces a RoleBinding names".to_string(),
            ),
            BindingScope::Bindings => (
                Severity::Info,
                Scope::Unbound,
                format!(
                    "; it is bound cluster-wide only to exempt subjects or none (ClusterRoleBinding {})",
                    quoted(paths.iter().map(|p| p.binding.metadata.name.as_str()))
                ),
            ),
        };
        let mut f = exempt_grant.secrets(&exempt_access, severity, scope);
        f.message = format!(
            "secretscope: {} carries {exempt_access} {}{why}",
            exempt_grant.object,
            exempt_grant.via(&f)
        );
        out.push(f);
    }

    if let Some(severity) = opts.route_severity() {
        // Routes once per set of rules judged, for the subjects and bindings it reaches.
        for g in [&exempt_grant, &full_grant] {
            let on: Vec<_> = granting
                .iter()
                .filter(|(_, _, gg, access)| std::ptr::eq(*gg, g) && !access.reads_everything())
                .collect();
            if on.is_empty() {
                continue;
            }
            let subjects: Vec<Subject> =
                dedup(on.iter().flat_map(|(_, s, _, _)| s.iter().cloned()));
            let bindings: Vec<String> = dedup(
                on.iter()
                    .map(|(p, _, _, _)| p.binding.metadata.name.clone()),
            );
            out.extend(g.routes(severity, &subjects, &bindings, true, ""));
        }
    }
    Ok(out)
}

fn cluster_role_binding(
    crb: &ClusterRoleBinding,
    state: &ClusterState,
    opts: &EvalOptions,
    budget: &Budget,
) -> Result<Vec<Finding>, OverBudget> {
    let object = ObjectRef {
        kind: RbacKind::ClusterRoleBinding,
        name: crb.metadata.name.clone(),
        namespace: None,
    };
    let role_name = crb.role_ref.name.as_str();
    let Some(role) = state
        .cluster_role(role_name)
        .filter(|_| crb.role_ref.kind == "ClusterRole")
    else {
        // Allowed: the ClusterRole is judged against this binding when it is created.
        return Ok(vec![Finding {
            object: object.clone(),
            severity: Severity::Warn,
            route: Route::Secrets,
            scope: Scope::Unknown,
            verbs: Vec::new(),
            names: Vec::new(),
            reach: Vec::new(),
            subjects: crb.subjects.clone(),
            bindings: vec![crb.metadata.name.clone()],
            via: Vec::new(),
            message: format!(
                "secretscope: {object} references {} {}, which is not known; it will be judged when that role is written",
                super::text::clip(&crb.role_ref.kind, super::text::SHOWN_CHARS),
                quoted([role_name].into_iter()),
            ),
        }]);
    };
    // A role that grants nothing to judge, whoever it is bound to: nothing to find.
    if state.memo().is_harmless(role_name) {
        return Ok(Vec::new());
    }
    let rules = EffectiveRules::of_cluster_role(role, state, budget)?;
    let g = Grant {
        details: opts.name_details,
        object,
        rules: &rules,
        role_kind: "ClusterRole",
        role_name,
    };
    let subjects = opts.granted_subjects(&crb.subjects);
    let mut out = Vec::new();
    let access = SecretsAccess::of(&rules);
    if access.is_empty() && indirect_routes(&rules).is_empty() {
        state.memo().remember_harmless(role_name);
    }
    if !access.is_empty() {
        let mut f = if subjects.is_empty() {
            let mut f = g.secrets(&access, Severity::Info, Scope::ClusterWide);
            let who = if crb.subjects.is_empty() {
                "has no subjects, so it grants nothing"
            } else {
                "grants it only to exempt subjects"
            };
            let note = if crb.subjects.is_empty() {
                String::new()
            } else {
                opts.exemption_note(&crb.subjects)
            };
            f.message = format!(
                "secretscope: {} {who}; its ClusterRole {} carries cluster-wide {access}{note}",
                g.object,
                quoted([role_name].into_iter()),
            );
            f
        } else {
            let mut f = g.secrets(&access, Severity::Deny, Scope::ClusterWide);
            f.message = format!(
                "secretscope: {} grants {} cluster-wide {access} {}",
                g.object,
                describe_subjects(&subjects),
                g.via(&f),
            );
            f
        };
        f.subjects = subjects.clone();
        f.bindings = vec![crb.metadata.name.clone()];
        out.push(f);
    }
    if let (Some(severity), false) = (opts.route_severity(), access.reads_everything()) {
        let bindings = std::slice::from_ref(&crb.metadata.name);
        if !subjects.is_empty() {
            out.extend(g.routes(severity, &subjects, bindings, false, ""));
        } else if !crb.subjects.is_empty() {
            // Shown, never acted on: an exemption should stay visible where it is used.
            let note = opts.exemption_note(&crb.subjects);
            out.extend(g.routes(Severity::Info, &crb.subjects, bindings, false, &note));
        }
    }
    Ok(out)
}

/// Roles and RoleBindings never grant beyond their namespace: reported for visibility only.
fn namespaced(
    object: ObjectRef,
    role_kind: &'static str,
    role_name: &str,
    rules: &EffectiveRules<'_>,
    subjects: &[Subject],
    details: bool,
) -> Vec<Finding> {
    let access = SecretsAccess::of(rules);
    if access.is_empty() {
        return Vec::new();
    }
    let g = Grant {
        details,
        object,
        rules,
        role_kind,
        role_name,
    };
    let mut f = g.secrets(&access, Severity::Info, Scope::Namespace);
    let ns = g.object.namespace.as_deref().unwrap_or("default");
    let to = if subjects.is_empty() {
        String::new()
    } else {
        format!(" {}", describe_subjects(subjects))
    };
    f.message = format!(
        "secretscope: {} grants{to} {access} in namespace \"{ns}\" only {}",
        g.object,
        g.via(&f)
    );
    f.subjects = subjects.to_vec();
    vec![f]
}

fn role(r: &Role, object: ObjectRef, details: bool) -> Vec<Finding> {
    let rules = EffectiveRules::own(&r.metadata.name, &r.rules);
    namespaced(object, "Role", &r.metadata.name, &rules, &[], details)
}

fn role_binding(
    rb: &RoleBinding,
    state: &ClusterState,
    object: ObjectRef,
    budget: &Budget,
    details: bool,
) -> Result<Vec<Finding>, OverBudget> {
    let ns = rb.metadata.namespace.as_deref().unwrap_or_default();
    let name = rb.role_ref.name.as_str();
    Ok(if rb.role_ref.kind == "ClusterRole" {
        // A RoleBinding grants an aggregated ClusterRole's effective rules, in one namespace.
        let Some(cr) = state.cluster_role(name) else {
            return Ok(Vec::new());
        };
        let rules = EffectiveRules::of_cluster_role(cr, state, budget)?;
        namespaced(object, "ClusterRole", name, &rules, &rb.subjects, details)
    } else {
        let Some(role) = state.role(ns, name) else {
            return Ok(Vec::new());
        };
        let rules = EffectiveRules::own(name, &role.rules);
        namespaced(object, "Role", name, &rules, &rb.subjects, details)
    })
}

/// ` (aggregated into ClusterRole "a", which is aggregated into "b")`, innermost first; a long
/// chain names its first links and its last.
fn aggregation_chain(through: &[&str]) -> String {
    const SHOWN: usize = 3;
    let Some((last, inner)) = through.split_last() else {
        return String::new();
    };
    let clip = |n: &str| super::text::clip(n, super::text::SHOWN_CHARS).into_owned();
    let mut out = String::from(" (aggregated into ClusterRole ");
    for (i, name) in inner.iter().take(SHOWN).enumerate() {
        let link = if i == 0 {
            ""
        } else {
            ", which is aggregated into "
        };
        out.push_str(&format!("{link}\"{}\"", clip(name)));
    }
    if inner.len() > SHOWN {
        out.push_str(&format!(", ... {} more ...", inner.len() - SHOWN));
    }
    let link = if inner.is_empty() {
        ""
    } else {
        ", which is aggregated into "
    };
    out.push_str(&format!("{link}\"{}\")", clip(last)));
    out
}

/// When the Secrets rules come from roles aggregated into `role` (the aggregation controller
/// writing them in is what is being judged), the fix is on those roles, not on this one.
fn aggregated_fix(f: &Finding, role: &str) -> String {
    let sources: Vec<&str> = dedup(
        f.via
            .iter()
            .filter(|r| r.role != role)
            .map(|r| r.role.as_str()),
    );
    if sources.is_empty() {
        return String::new();
    }
    format!(
        "; the rules come from {} through aggregation: remove the Secrets rule from {} or the label that aggregates {} into ClusterRole {}",
        quoted(sources.iter().copied()),
        if sources.len() == 1 { "it" } else { "them" },
        if sources.len() == 1 { "it" } else { "them" },
        quoted([role].into_iter()),
    )
}

fn only_named(open: &OpenRoute) -> String {
    match &open.only_named {
        Some(names) => format!(" (only those named {})", quoted(names.set().into_iter())),
        None => String::new(),
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    super::text::quoted_list(names)
}

fn dedup<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod name_globs_tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: every pattern through globset, as before literals were compared directly.
    fn globset_only(patterns: &[String], name: &str) -> bool {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let Ok(g) = GlobBuilder::new(p).literal_separator(false).build() else {
                return false;
            };
            b.add(g);
        }
        b.build().is_ok_and(|set| set.is_match(name))
    }

    #[test]
    fn literals_match_exactly_and_globs_as_globs() {
        let globs =
            NameGlobs::new(&["system:masters", "system:node:*", "ci-[ab]", r"x\*"]).unwrap();
        for (name, want) in [
            ("system:masters", true),
            ("system:master", false),
            ("system:masters2", false),
            ("SYSTEM:MASTERS", false),
            ("system:node:n1", true),
            ("ci-a", true),
            ("ci-c", false),
            ("x*", true),
            ("xy", false),
            ("", false),
        ] {
            assert_eq!(globs.is_match(name), want, "{name:?}");
        }
        assert!(!NameGlobs::default().is_match(""));
        assert!(NameGlobs::new(&[""]).unwrap().is_match(""));
    }

    proptest! {
        /// Over names and patterns drawn from glob metacharacters, separators and letters, the
        /// literal fast path answers exactly as globset does.
        #[test]
        fn same_answers_as_globset(
            patterns in proptest::collection::vec("[a:/.*?\\[\\]{},!\\\\-]{0,5}", 0..4),
            name in "[a:/.*?\\[\\]{},!\\\\-]{0,5}",
            name_as_pattern in any::<bool>(),
        ) {
            // A name among the patterns, so that literal hits are common, not luck.
            let mut patterns = patterns;
            if name_as_pattern {
                patterns.push(name.clone());
            }
            let Ok(globs) = NameGlobs::new(&patterns) else { return Ok(()) };
            prop_assert_eq!(globs.is_match(&name), globset_only(&patterns, &name));
        }
    }
}
