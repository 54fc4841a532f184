//! `Finding`: one judged fact about one object, with everything a reviewer needs to act on it.

use std::fmt;

use serde::Serialize;

use super::effective::{EffectiveRules, SourcedRule};
use super::indirect::IndirectRoute;
use super::model::{ObjectRef, Subject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, never acted on (namespace-scoped grants, exempt or unbound roles).
    Info,
    /// Shown as an admission warning; never denies.
    Warn,
    /// Denied in enforce mode.
    Deny,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Deny => "deny",
        })
    }
}

/// What the finding is about: Secrets access itself or an indirect route to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "name")]
pub enum Route {
    Secrets,
    Indirect(IndirectRoute),
}

/// How far the grant reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Granted in every namespace by a ClusterRoleBinding.
    ClusterWide,
    /// Held by a ClusterRole; denied by `scope: strict` whether bound or not.
    Strict,
    /// Held by a ClusterRole that no ClusterRoleBinding grants to anyone (yet).
    Unbound,
    /// Granted in one namespace only (Role, or RoleBinding of a ClusterRole).
    Namespace,
    /// The binding's role is not known, so the grant cannot be judged here.
    Unknown,
}

/// A rule, named by role and 1-based position in that role's `.rules` ("rule 2" is `.rules[1]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub role_kind: &'static str,
    pub role: String,
    pub rule: usize,
    pub text: String,
}

impl RuleRef {
    pub fn new(role_kind: &'static str, sr: &SourcedRule<'_>) -> Self {
        Self {
            role_kind,
            role: sr.role.to_string(),
            rule: sr.index + 1,
            text: sr.rule.to_string(),
        }
    }

    pub fn collect(
        role_kind: &'static str,
        rules: &EffectiveRules<'_>,
        idx: &[usize],
    ) -> Vec<Self> {
        idx.iter()
            .filter_map(|&i| rules.get(i))
            .map(|sr| Self::new(role_kind, sr))
            .collect()
    }
}

/// What one verb reaches: `{"verb": "watch", "secrets": "all"}` or
/// `{"verb": "patch", "secrets": "named", "names": ["a"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerbReach {
    pub verb: &'static str,
    /// `all` or `named`.
    pub secrets: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub object: ObjectRef,
    pub severity: Severity,
    pub route: Route,
    pub scope: Scope,
    /// Verbs granted on the route's target (for Secrets: among get..deletecollection).
    pub verbs: Vec<String>,
    /// Every name some verb is limited to (see `reach` for which verb reaches what).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// For Secrets findings, per verb: every Secret, or only the named ones.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<VerbReach>,
    /// Who receives the grant (empty when no binding grants it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<Subject>,
    /// The ClusterRoleBinding(s) through which the grant is cluster-wide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<String>,
    pub via: Vec<RuleRef>,
    pub message: String,
}

/// `via ClusterRole "y" rule 2 (...)`, `..., rule 4 (...)`; rules from aggregated roles name their
/// own role. Long lists are cut after a few rules so messages stay readable.
pub fn describe_via(via: &[RuleRef], bound_role_kind: &str, bound_role: &str) -> String {
    const SHOWN: usize = 3;
    let mut parts: Vec<String> = Vec::new();
    let mut last_role: Option<&str> = None;
    let clip = |n: &str| super::text::clip(n, super::text::SHOWN_CHARS).into_owned();
    for r in via.iter().take(SHOWN) {
        if last_role == Some(r.role.as_str()) {
            parts.push(format!("rule {} {}", r.rule, r.text));
        } else {
            parts.push(format!(
                "{} \"{}\" rule {} {}",
                r.role_kind,
                clip(&r.role),
                r.rule,
                r.text
            ));
        }
        last_role = Some(&r.role);
    }
    if via.len() > SHOWN {
        parts.push(format!("{} more rules", via.len() - SHOWN));
    }
    let aggregated = via.iter().any(|r| r.role != bound_role);
    if aggregated {
        format!(
            "via {bound_role_kind} \"{}\", which aggregates {}",
            clip(bound_role),
            parts.join(", ")
        )
    } else {
        format!("via {}", parts.join(", "))
    }
}

/// `User "bob", Group "devs" and 3 more`.
pub fn describe_subjects(subjects: &[Subject]) -> String {
    const SHOWN: usize = 3;
    let mut s: Vec<String> = subjects.iter().take(SHOWN).map(|s| s.to_string()).collect();
    if subjects.len() > SHOWN {
        s.push(format!("{} more", subjects.len() - SHOWN));
    }
    match s.len() {
        0 => "no one".to_string(),
        1 => s.remove(0),
        _ => {
            let last = s.pop().unwrap_or_default();
            format!("{} and {last}", s.join(", "))
        }
    }
}
