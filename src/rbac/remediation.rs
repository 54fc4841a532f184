//! What to change so a finding goes away. Pure: from the finding and the rules it names.
//!
//! The fix for cluster-wide Secrets access is always the same shape (the seed of this project):
//! drop `secrets` from the ClusterRole's rule, keeping every other permission, and give the
//! subjects the same verbs in tenancy namespaces only (secretscope's `tenancy:` policy), or with
//! RoleBindings in named namespaces.

use serde::Serialize;

use super::azure::AzureFinding;
use super::finding::{describe_subjects, Finding, Route, RuleRef, Scope};
use super::model::{PolicyRule, Subject};
use super::rule::{api_group_matches, resource_matches, verb_matches};
use super::secrets::SecretsVerb;

const SECRETS: &str = "secrets";
const CORE: &str = "";
const ALL: &str = "*";

/// How one rule is rewritten so that it grants nothing on core `secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum RuleFix {
    /// Replace the rule by `rules` (none: remove it): `secrets` dropped, everything else kept.
    DropSecrets {
        rules: Vec<PolicyRule>,
        /// What the rewrite gives up beyond core Secrets, when anything.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// No RBAC rule set expresses "the same minus Secrets"; a person has to choose.
    NeedsHuman { reason: String },
}

/// The rewrite of `rule` that removes its core Secrets access, or `None` when it has none.
pub fn strip_secrets(rule: &PolicyRule) -> Option<RuleFix> {
    let grants = api_group_matches(rule, CORE)
        && resource_matches(rule, SECRETS, "")
        && SecretsVerb::ALL
            .iter()
            .any(|v| verb_matches(rule, v.as_str()));
    if !grants {
        return None;
    }
    if rule.resources.iter().any(|r| r == ALL) {
        return Some(RuleFix::NeedsHuman {
            reason: "resources [\"*\"] covers secrets and every other resource (subresources and \
                     custom resources included), and RBAC has no \"all but\": list the resources \
                     this rule needs instead"
                .into(),
        });
    }
    let rest: Vec<String> = without(&rule.resources, SECRETS);
    let mut rules = Vec::new();
    let mut note = None;
    if rule.api_groups.iter().any(|g| g == ALL) {
        // `*` includes the core group and RBAC cannot name "every group but core".
        if !rest.is_empty() {
            rules.push(PolicyRule {
                resources: rest,
                ..rule.clone()
            });
        }
        note = Some(
            "apiGroups [\"*\"] also matched a resource named secrets in every other API group; \
             that goes too (name those groups explicitly if a custom resource needs it)"
                .into(),
        );
    } else {
        let other_groups = without(&rule.api_groups, CORE);
        if !other_groups.is_empty() {
            // Other groups keep the rule as written: their `secrets` is not core Secrets.
            rules.push(PolicyRule {
                api_groups: other_groups,
                ..rule.clone()
            });
        }
        if !rest.is_empty() {
            rules.push(PolicyRule {
                api_groups: vec![CORE.into()],
                resources: rest,
                ..rule.clone()
            });
        }
    }
    Some(RuleFix::DropSecrets { rules, note })
}

fn without(items: &[String], drop: &str) -> Vec<String> {
    items.iter().filter(|i| *i != drop).cloned().collect()
}

/// One rule edit: the rule (role and 1-based position) and how to change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleEdit {
    #[serde(flatten)]
    pub rule: RuleRef,
    #[serde(flatten)]
    pub fix: RuleFix,
}

/// Who should get the same Secrets verbs in tenancy namespaces only: a `tenancy:` snippet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenancyGrant {
    pub subjects: Vec<Subject>,
    pub verbs: Vec<String>,
}

/// The change that removes a finding: a sentence, the rule edits, the tenancy grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remediation {
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<RuleEdit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<TenancyGrant>,
}

/// The remediation of an RBAC finding. `rule_of` returns a rule of the given inputs (built-in
/// roles are not inputs: they are not the user's to edit).
pub fn remediate<'a>(
    f: &Finding,
    rule_of: impl Fn(&RuleRef) -> Option<&'a PolicyRule>,
) -> Remediation {
    let rules = describe_rules(&f.via);
    match (f.route, f.scope) {
        (_, Scope::Unknown) => Remediation {
            text: format!(
                "give {} together with the role it references (or write that role first): a \
                 binding to an unknown role cannot be judged",
                f.object
            ),
            edits: Vec::new(),
            tenancy: None,
        },
        (_, Scope::Namespace) => Remediation {
            text: "nothing to change: the grant holds in one namespace only".into(),
            edits: Vec::new(),
            tenancy: None,
        },
        (Route::Indirect(route), _) => Remediation {
            text: format!(
                "remove the permission to {} from {rules}, or grant it with RoleBindings in the \
                 namespaces that need it ({}); `secretscope fix` leaves indirect routes to you",
                route.describe().0,
                route.describe().1
            ),
            edits: Vec::new(),
            tenancy: None,
        },
        (Route::Secrets, scope) => {
            let edits: Vec<RuleEdit> = f
                .via
                .iter()
                .filter_map(|r| {
                    let fix = match rule_of(r) {
                        Some(rule) => strip_secrets(rule)?,
                        None => RuleFix::NeedsHuman {
                            reason: format!(
                                "{} \"{}\" is not among the inputs (a built-in role?): bind a role \
                                 without Secrets access instead",
                                r.role_kind, r.role
                            ),
                        },
                    };
                    Some(RuleEdit {
                        rule: r.clone(),
                        fix,
                    })
                })
                .collect();
            let tenancy = (!f.subjects.is_empty()).then(|| TenancyGrant {
                subjects: f.subjects.clone(),
                verbs: f.verbs.clone(),
            });
            let mut text = edits
                .iter()
                .map(describe_edit)
                .collect::<Vec<_>>()
                .join("; ");
            if text.is_empty() {
                text = format!("drop \"secrets\" from {rules}");
            }
            match scope {
                Scope::Strict => text.push_str(
                    "; scope: strict denies Secrets rules in any ClusterRole: use a Role per \
                     namespace, or exempt the role (exemptions.clusterRoles)",
                ),
                Scope::Unbound => text.push_str(
                    "; no ClusterRoleBinding grants it yet, but one would make it cluster-wide",
                ),
                _ => {}
            }
            if let Some(t) = &tenancy {
                let named = if f.names.is_empty() {
                    ""
                } else {
                    " (the tenancy Role is not limited to names)"
                };
                text.push_str(&format!(
                    "; then grant {} {} on Secrets in tenancy namespaces only: add them to \
                     tenancy.subjects and the verbs to tenancy.verbs in secretscope.yaml{named}, \
                     or bind a Role with RoleBindings in the namespaces that need it",
                    describe_subjects(&t.subjects),
                    t.verbs.join(", ")
                ));
            }
            Remediation {
                text,
                edits,
                tenancy,
            }
        }
    }
}

/// Azure: exclude the Secrets actions from the role, or assign it per namespace.
pub fn remediate_azure(f: &AzureFinding) -> Remediation {
    Remediation {
        text: format!(
            "add \"Microsoft.ContainerService/managedClusters/secrets/*\" to the NotDataActions of \
             role \"{}\" (and take listClusterAdminCredential out of its Actions if it is there), \
             or make its AssignableScopes namespaces (.../managedClusters/<c>/namespaces/<ns>)",
            super::text::clip(&f.role, super::text::SHOWN_CHARS)
        ),
        edits: Vec::new(),
        tenancy: None,
    }
}

fn describe_rules(via: &[RuleRef]) -> String {
    let parts: Vec<String> = via
        .iter()
        .take(3)
        .map(|r| format!("{} \"{}\" rule {}", r.role_kind, r.role, r.rule))
        .collect();
    match via.len() {
        0 => "the role".into(),
        n if n > 3 => format!("{} and {} more rules", parts.join(", "), n - 3),
        _ => parts.join(", "),
    }
}

fn describe_edit(e: &RuleEdit) -> String {
    let at = format!(
        "{} \"{}\" rule {}",
        e.rule.role_kind, e.rule.role, e.rule.rule
    );
    match &e.fix {
        RuleFix::DropSecrets { rules, note } => {
            let what = match rules.as_slice() {
                [] => format!("remove {at} (it grants nothing but Secrets)"),
                [one] => format!("in {at} drop \"secrets\" from resources: {one}"),
                many => format!(
                    "split {at} into {}",
                    many.iter()
                        .map(|r| r.to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            };
            match note {
                Some(n) => format!("{what} ({n})"),
                None => what,
            }
        }
        RuleFix::NeedsHuman { reason } => format!("{at} needs a person: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::rule::{rule_allows, ResourceRequest};

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: s(verbs),
            api_groups: s(groups),
            resources: s(resources),
            ..Default::default()
        }
    }

    fn allows(rules: &[PolicyRule], verb: &str, group: &str, resource: &str) -> bool {
        let req = ResourceRequest::new(verb, group, resource);
        rules.iter().any(|r| rule_allows(r, &req))
    }

    /// Every request the original allows is still allowed, except core Secrets; none is added.
    #[test]
    fn drop_keeps_every_other_permission() {
        for original in [
            rule(&[""], &["secrets"], &["get"]),
            rule(&[""], &["secrets", "configmaps"], &["get", "list"]),
            rule(&["", "apps"], &["secrets", "deployments"], &["*"]),
            rule(&["*"], &["secrets", "pods"], &["watch"]),
        ] {
            let Some(RuleFix::DropSecrets { rules, .. }) = strip_secrets(&original) else {
                panic!("{original}");
            };
            for verb in ["get", "list", "watch", "create", "escalate"] {
                for group in ["", "apps", "x.io"] {
                    for resource in ["secrets", "configmaps", "deployments", "pods"] {
                        let before = allows(std::slice::from_ref(&original), verb, group, resource);
                        let after = allows(&rules, verb, group, resource);
                        let core_secrets = resource == "secrets"
                            && (group.is_empty() || original.api_groups.contains(&ALL.into()));
                        assert_eq!(
                            after,
                            before && !core_secrets,
                            "{original} -> {rules:?}: {verb} {group}/{resource}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wildcards_and_unrelated_rules() {
        assert!(matches!(
            strip_secrets(&rule(&[""], &["*"], &["get"])),
            Some(RuleFix::NeedsHuman { .. })
        ));
        assert_eq!(
            strip_secrets(&rule(&["apps"], &["secrets"], &["get"])),
            None
        );
        assert_eq!(strip_secrets(&rule(&[""], &["secrets"], &["use"])), None);
        assert_eq!(
            strip_secrets(&rule(&[""], &["secrets"], &["get"])),
            Some(RuleFix::DropSecrets {
                rules: vec![],
                note: None
            })
        );
    }
}
