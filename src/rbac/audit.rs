//! `audit`: who holds cluster-wide Secrets access in a cluster state, by subject.

use std::collections::BTreeMap;

use serde::Serialize;

use super::evaluate::{evaluate, EvalOptions};
use super::finding::{Route, RuleRef, Severity, VerbReach};
use super::model::{PolicyRule, RbacObject, Subject};
use super::remediation::{remediate, Remediation};
use super::state::ClusterState;

/// One way a subject holds cluster-wide access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub binding: String,
    pub role: String,
    /// `secrets` or an indirect route.
    pub route: Route,
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Per verb: every Secret or only the named ones (Secrets grants).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<VerbReach>,
    pub via: Vec<RuleRef>,
    /// The change that removes this grant, as `check` proposes it for the same finding.
    pub remediation: Remediation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectAccess {
    pub subject: Subject,
    /// Exempt by the policy: reported, never counted as a violation.
    pub exempt: bool,
    /// For a subject that is not exempt: the `exemptions.subjects` entry that would exempt it, if
    /// holding this access is intended (the reason is for the operator to write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemption: Option<String>,
    pub grants: Vec<Grant>,
}

/// The `exemptions.subjects` line (secretscope.yaml) that exempts `s`, as the policy reads it.
pub fn exemption_entry(s: &Subject) -> String {
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let namespace = s
        .namespace
        .as_deref()
        .map(|n| format!(", namespace: {}", q(n)))
        .unwrap_or_default();
    format!(
        "- {{kind: {}{namespace}, name: {}, reason: \"<why it needs every Secret>\"}}",
        s.kind,
        q(&s.name)
    )
}

/// A rule of the live state the fix may propose to edit: bootstrap roles are not (the API server
/// reconciles them back), so their bindings get "bind a role without Secrets access" instead.
fn editable_rule<'a>(state: &'a ClusterState, r: &RuleRef) -> Option<&'a PolicyRule> {
    if super::builtin::bootstrap(&r.role).is_some() {
        return None;
    }
    state
        .cluster_role(&r.role)
        .and_then(|role| role.rules.get(r.rule.checked_sub(1)?))
}

impl SubjectAccess {
    pub fn has_secrets(&self) -> bool {
        self.grants.iter().any(|g| g.route == Route::Secrets)
    }
}

/// Every subject that some ClusterRoleBinding in `state` gives cluster-wide Secrets access or an
/// indirect route to it (aggregation resolved), exempt subjects included and marked.
pub fn audit(state: &ClusterState, policy: &EvalOptions) -> Vec<SubjectAccess> {
    // Judge without subject exemptions so that every holder shows up; mark exemptions after.
    let everyone = EvalOptions {
        exempt_subjects: Vec::new(),
        ..policy.clone()
    };
    let mut by_subject: BTreeMap<Subject, Vec<Grant>> = BTreeMap::new();
    for crb in state.cluster_role_bindings() {
        let object = RbacObject::ClusterRoleBinding(crb.clone());
        // A binding too costly to judge is reported as a grant of everything it may reach:
        // an audit must not pass over what it could not read.
        let findings = match evaluate(&object, state, &everyone) {
            Ok(findings) => findings,
            Err(e) => {
                for s in &crb.subjects {
                    by_subject.entry(s.clone()).or_default().push(Grant {
                        binding: crb.metadata.name.clone(),
                        role: crb.role_ref.name.clone(),
                        route: Route::Secrets,
                        verbs: vec![format!("unknown: {e}")],
                        names: Vec::new(),
                        reach: Vec::new(),
                        via: Vec::new(),
                        remediation: Remediation {
                            text: format!(
                                "judge ClusterRoleBinding \"{}\" by hand: secretscope could not \
                                 ({e}), so it is reported as reaching every Secret",
                                crb.metadata.name
                            ),
                            edits: Vec::new(),
                            tenancy: None,
                            definition_edits: Vec::new(),
                        },
                    });
                }
                continue;
            }
        };
        for f in findings {
            if f.severity == Severity::Info || f.via.is_empty() {
                continue;
            }
            let remediation = remediate(&f, |r| editable_rule(state, r));
            for s in &f.subjects {
                by_subject.entry(s.clone()).or_default().push(Grant {
                    binding: crb.metadata.name.clone(),
                    role: crb.role_ref.name.clone(),
                    route: f.route,
                    verbs: f.verbs.clone(),
                    names: f.names.clone(),
                    reach: f.reach.clone(),
                    via: f.via.clone(),
                    remediation: remediation.clone(),
                });
            }
        }
    }
    by_subject
        .into_iter()
        .map(|(subject, mut grants)| {
            grants.sort_by(|a, b| (a.route, &a.binding).cmp(&(b.route, &b.binding)));
            let exempt = policy.subject_exempt(&subject);
            SubjectAccess {
                exempt,
                exemption: (!exempt).then(|| exemption_entry(&subject)),
                subject,
                grants,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{NameGlobs, SubjectPattern};

    #[test]
    fn subjects_with_their_grants_exempt_ones_marked() {
        let yaml = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: User, name: bob}, {kind: Group, name: "system:masters"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: admins}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: installer, namespace: tools}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: nobody}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
"#;
        let loaded = crate::manifest::parse_stream(yaml, "t.yaml", false);
        let mut state = ClusterState::with_builtins();
        state.extend(loaded.objects.into_iter().map(|o| o.object));
        let opts = EvalOptions {
            exempt_subjects: vec![SubjectPattern {
                kind: "Group".into(),
                name: NameGlobs::new(&["system:masters"]).unwrap(),
                namespace: None,
                reason: None,
            }],
            ..Default::default()
        };
        let report = audit(&state, &opts);
        let names: Vec<String> = report.iter().map(|s| s.subject.to_string()).collect();
        assert_eq!(
            names,
            vec![
                r#"Group "system:masters""#,
                r#"ServiceAccount "tools/installer""#,
                r#"User "bob""#
            ]
        );
        assert!(report[0].exempt && !report[1].exempt && !report[2].exempt);
        let bob = &report[2];
        // get alone: Secrets, plus the routes `get` on secrets does not open: none.
        assert_eq!(bob.grants.len(), 1);
        assert_eq!(bob.grants[0].binding, "readers");
        assert_eq!(bob.grants[0].verbs, vec!["get"]);
        let installer = &report[1];
        assert!(installer.has_secrets());
        assert_eq!(installer.grants[0].verbs.len(), 8);

        // The fix: a user's role is edited, a bootstrap role is replaced, never edited.
        let fix = &bob.grants[0].remediation;
        assert_eq!(fix.edits.len(), 1, "{fix:?}");
        assert_eq!(fix.edits[0].rule.role, "reader");
        assert!(fix.text.contains("tenancy.subjects"), "{}", fix.text);
        let fix = &installer.grants[0].remediation;
        assert!(
            fix.edits
                .iter()
                .all(|e| matches!(e.fix, crate::rbac::remediation::RuleFix::NeedsHuman { .. })),
            "{fix:?}"
        );
        assert!(
            fix.text.contains("bind a role without Secrets access"),
            "{}",
            fix.text
        );
        assert_eq!(report[0].exemption, None);
        assert_eq!(
            installer.exemption.as_deref(),
            Some(
                r#"- {kind: ServiceAccount, namespace: "tools", name: "installer", reason: "<why it needs every Secret>"}"#
            )
        );
    }
}
