//! The verdict: findings for one RBAC object judged against a `ClusterState`.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;

use super::effective::{cluster_bindings, BindingPath, EffectiveRules};
use super::finding::{describe_subjects, describe_via, Finding, Route, RuleRef, Scope, Severity};
use super::indirect::{indirect_routes, OpenRoute};
use super::model::{
    ClusterRole, ClusterRoleBinding, ObjectRef, RbacKind, RbacObject, Role, RoleBinding, Subject,
};
use super::secrets::SecretsAccess;
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
    set: GlobSet,
    patterns: Vec<String>,
}

impl NameGlobs {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, GlobError> {
        let mut b = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
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
            set,
            patterns: patterns.iter().map(|p| p.as_ref().to_string()).collect(),
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        !self.patterns.is_empty() && self.set.is_match(name)
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

#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub scope: BindingScope,
    pub indirect: RouteAction,
    /// ClusterRoles whose own definition is not judged (the bootstrap roles the API server
    /// reconciles). Bindings *to* them still are: binding cluster-admin is the grant.
    pub exempt_roles: NameGlobs,
    pub exempt_subjects: Vec<SubjectPattern>,
    pub honour_exempt_annotation: bool,
}

impl EvalOptions {
    pub fn subject_exempt(&self, s: &Subject) -> bool {
        self.exempt_subjects.iter().any(|p| p.matches(s))
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
/// object in `state` is superseded by this one).
pub fn evaluate(object: &RbacObject, state: &ClusterState, opts: &EvalOptions) -> Vec<Finding> {
    let mut findings = match object {
        RbacObject::ClusterRole(cr) => cluster_role(cr, state, opts),
        RbacObject::ClusterRoleBinding(crb) => cluster_role_binding(crb, state, opts),
        RbacObject::Role(r) => role(r, object.object_ref()),
        RbacObject::RoleBinding(rb) => role_binding(rb, state, object.object_ref()),
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
    findings
}

struct Grant<'a> {
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
            names: if access.named_only() {
                access.names().into_iter().map(String::from).collect()
            } else {
                Vec::new()
            },
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
    /// `through` names the bindings in the message when the object is not itself the binding.
    fn routes(
        &self,
        severity: Severity,
        subjects: &[Subject],
        bindings: &[String],
        through: bool,
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
                    "secretscope: {} lets {} {action}{} cluster-wide{through}, {why}: an indirect route to Secrets {}",
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

fn cluster_role(cr: &ClusterRole, state: &ClusterState, opts: &EvalOptions) -> Vec<Finding> {
    let name = cr.metadata.name.as_str();
    if opts.exempt_roles.is_match(name) {
        return Vec::new();
    }
    let rules = EffectiveRules::of_cluster_role(cr, state);
    let g = Grant {
        object: ObjectRef {
            kind: RbacKind::ClusterRole,
            name: name.to_string(),
            namespace: None,
        },
        rules: &rules,
        role_kind: "ClusterRole",
        role_name: name,
    };
    let paths = cluster_bindings(name, &cr.metadata.labels, state);
    let granting: Vec<(&BindingPath, Vec<Subject>)> = paths
        .iter()
        .map(|p| (p, opts.granted_subjects(&p.binding.subjects)))
        .filter(|(_, s)| !s.is_empty())
        .collect();

    let mut out = Vec::new();
    let access = SecretsAccess::of(&rules);
    if !access.is_empty() {
        for (path, subjects) in &granting {
            let mut f = g.secrets(&access, Severity::Deny, Scope::ClusterWide);
            let through = if path.through.is_empty() {
                String::new()
            } else {
                format!(
                    " (aggregated into ClusterRole \"{}\")",
                    path.through.join("\", which is aggregated into \"")
                )
            };
            f.message = format!(
                "secretscope: {} grants {} cluster-wide {access}{through} through ClusterRoleBinding \"{}\" {}",
                g.object,
                describe_subjects(subjects),
                path.binding.metadata.name,
                g.via(&f),
            );
            f.subjects = subjects.clone();
            f.bindings = vec![path.binding.metadata.name.clone()];
            out.push(f);
        }
        if granting.is_empty() {
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
            let mut f = g.secrets(&access, severity, scope);
            f.message = format!(
                "secretscope: {} carries {access} {}{why}",
                g.object,
                g.via(&f)
            );
            out.push(f);
        }
    }

    if let Some(severity) = opts.route_severity() {
        if !granting.is_empty() && !access.reads_everything() {
            let subjects: Vec<Subject> =
                dedup(granting.iter().flat_map(|(_, s)| s.iter().cloned()));
            let bindings: Vec<String> = dedup(
                granting
                    .iter()
                    .map(|(p, _)| p.binding.metadata.name.clone()),
            );
            out.extend(g.routes(severity, &subjects, &bindings, true));
        }
    }
    out
}

fn cluster_role_binding(
    crb: &ClusterRoleBinding,
    state: &ClusterState,
    opts: &EvalOptions,
) -> Vec<Finding> {
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
        return vec![Finding {
            object: object.clone(),
            severity: Severity::Warn,
            route: Route::Secrets,
            scope: Scope::Unknown,
            verbs: Vec::new(),
            names: Vec::new(),
            subjects: crb.subjects.clone(),
            bindings: vec![crb.metadata.name.clone()],
            via: Vec::new(),
            message: format!(
                "secretscope: {object} references {} \"{role_name}\", which is not known; it will be judged when that role is written",
                crb.role_ref.kind
            ),
        }];
    };
    let rules = EffectiveRules::of_cluster_role(role, state);
    let g = Grant {
        object,
        rules: &rules,
        role_kind: "ClusterRole",
        role_name,
    };
    let subjects = opts.granted_subjects(&crb.subjects);
    let mut out = Vec::new();
    let access = SecretsAccess::of(&rules);
    if !access.is_empty() {
        let mut f = if subjects.is_empty() {
            let mut f = g.secrets(&access, Severity::Info, Scope::ClusterWide);
            let who = if crb.subjects.is_empty() {
                "has no subjects, so it grants nothing"
            } else {
                "grants it only to exempt subjects"
            };
            f.message = format!(
                "secretscope: {} {who}; its ClusterRole \"{role_name}\" carries cluster-wide {access}",
                g.object
            );
            f
        } else {
            let mut f = g.secrets(&access, Severity::Deny, Scope::ClusterWide);
            f.message = format!(
                "secretscope: {} grants {} cluster-wide {access} {}",
                g.object,
                describe_subjects(&subjects),
                g.via(&f)
            );
            f
        };
        f.subjects = subjects.clone();
        f.bindings = vec![crb.metadata.name.clone()];
        out.push(f);
    }
    if let (Some(severity), false) = (
        opts.route_severity(),
        subjects.is_empty() || access.reads_everything(),
    ) {
        out.extend(g.routes(
            severity,
            &subjects,
            std::slice::from_ref(&crb.metadata.name),
            false,
        ));
    }
    out
}

/// Roles and RoleBindings never grant beyond their namespace: reported for visibility only.
fn namespaced(
    object: ObjectRef,
    role_kind: &'static str,
    role_name: &str,
    rules: &EffectiveRules<'_>,
    subjects: &[Subject],
) -> Vec<Finding> {
    let access = SecretsAccess::of(rules);
    if access.is_empty() {
        return Vec::new();
    }
    let g = Grant {
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

fn role(r: &Role, object: ObjectRef) -> Vec<Finding> {
    let rules = EffectiveRules::own(&r.metadata.name, &r.rules);
    namespaced(object, "Role", &r.metadata.name, &rules, &[])
}

fn role_binding(rb: &RoleBinding, state: &ClusterState, object: ObjectRef) -> Vec<Finding> {
    let ns = rb.metadata.namespace.as_deref().unwrap_or_default();
    let name = rb.role_ref.name.as_str();
    if rb.role_ref.kind == "ClusterRole" {
        // A RoleBinding grants an aggregated ClusterRole's effective rules, in one namespace.
        let Some(cr) = state.cluster_role(name) else {
            return Vec::new();
        };
        let rules = EffectiveRules::of_cluster_role(cr, state);
        namespaced(object, "ClusterRole", name, &rules, &rb.subjects)
    } else {
        let Some(role) = state.role(ns, name) else {
            return Vec::new();
        };
        let rules = EffectiveRules::own(name, &role.rules);
        namespaced(object, "Role", name, &rules, &rb.subjects)
    }
}

fn only_named(open: &OpenRoute) -> String {
    match &open.only_named {
        Some(names) => format!(
            " (only those named {})",
            quoted(names.iter().map(String::as_str))
        ),
        None => String::new(),
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dedup<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort();
    v.dedup();
    v
}
