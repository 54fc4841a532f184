//! What to change so a finding goes away. Pure: from the finding and the rules it names.
//!
//! The fix for cluster-wide Secrets access is always the same shape (the seed of this project):
//! drop `secrets` from the ClusterRole's rule, keeping every other permission, and give the
//! subjects the same verbs in tenancy namespaces only (secretscope's `tenancy:` policy), or with
//! RoleBindings in named namespaces.

use serde::Serialize;

use super::azure::{
    namespace_scope_below, secrets_only, Block, BlockGrant, ListField, RoleDefinition,
    ADMIN_CREDENTIAL_ACTION, SECRETS_ACTIONS, SECRETS_WILDCARD,
};
use super::finding::{describe_subjects, Finding, Route, RuleRef, Scope};
use super::model::{PolicyRule, Subject};
use super::rule::{api_group_matches, resource_matches, verb_matches};
use super::secrets::SecretsVerb;
use super::word::RuleWord;

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
    let rest: Vec<RuleWord> = without(&rule.resources, SECRETS);
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

fn without(items: &[RuleWord], drop: &str) -> Vec<RuleWord> {
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
    /// Azure role definitions: the list edits that end the finding, applied together.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub definition_edits: Vec<DefinitionEdit>,
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
            definition_edits: Vec::new(),
        },
        (_, Scope::Namespace) => Remediation {
            text: "nothing to change: the grant holds in one namespace only".into(),
            edits: Vec::new(),
            tenancy: None,
            definition_edits: Vec::new(),
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
            definition_edits: Vec::new(),
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
                definition_edits: Vec::new(),
            }
        }
    }
}

/// Whether an Azure role definition edit adds a value to a list field or removes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EditOp {
    Add,
    Remove,
}

/// One change to an Azure role definition: add `value` to, or remove it from, the list at
/// `field` (a path inside the definition, as it spells its keys: `NotActions`,
/// `permissions[0].notDataActions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DefinitionEdit {
    pub op: EditOp,
    pub field: String,
    pub value: String,
}

impl DefinitionEdit {
    fn new(op: EditOp, role: &RoleDefinition, block: Block, field: ListField, value: &str) -> Self {
        Self {
            op,
            field: role.field_path(block, field),
            value: value.to_string(),
        }
    }

    fn describe(&self) -> String {
        match self.op {
            EditOp::Add => format!("add \"{}\" to {}", self.value, self.field),
            EditOp::Remove => format!("remove \"{}\" from {}", self.value, self.field),
        }
    }
}

/// Azure: per case, the edit of the definition that ends its Secrets access. The admin
/// credential goes from `Actions` (the action itself removed, a wildcard kept with the action in
/// `NotActions`); Secrets data actions go from every block that grants them (a Secrets-only
/// pattern removed, a wider one kept with the Secrets actions in `NotDataActions`), or stay with
/// the role assignable per namespace only. A namespace-only role needs no change.
pub fn remediate_azure(role: &RoleDefinition) -> Remediation {
    let name = super::text::clip(role.display_name(), super::text::SHOWN_CHARS);
    let mut edits = Vec::new();
    let mut parts = Vec::new();
    let admin = role.action_grants(&[ADMIN_CREDENTIAL_ACTION]);
    edits.extend(end_grants(
        role,
        &admin,
        |p| p.eq_ignore_ascii_case(ADMIN_CREDENTIAL_ACTION),
        (ListField::Actions, ListField::NotActions),
        ADMIN_CREDENTIAL_ACTION,
    ));
    if !admin.is_empty() {
        let wildcards: Vec<&str> = admin
            .iter()
            .flat_map(|g| g.patterns.iter().copied())
            .filter(|p| !p.eq_ignore_ascii_case(ADMIN_CREDENTIAL_ACTION))
            .collect();
        let includes = if wildcards.is_empty() {
            String::new()
        } else {
            format!(
                "Actions pattern {} includes it and ",
                super::text::quoted_list(wildcards)
            )
        };
        parts.push(format!(
            "{} ({includes}it hands out the cluster-admin kubeconfig, which bypasses Azure RBAC); \
             whoever needs a kubeconfig gets one through listClusterUserCredential/action, which \
             Azure RBAC authorizes",
            join_edits(&edits),
        ));
    }
    let wide = role.cluster_wide_scopes();
    let secrets: Vec<&str> = SECRETS_ACTIONS.iter().map(|(_, a)| *a).collect();
    // Namespace-only data grants are what the finding allows: left as they are.
    let data = if wide.is_empty() {
        Vec::new()
    } else {
        role.data_grants(&secrets)
    };
    let before = edits.len();
    edits.extend(end_grants(
        role,
        &data,
        secrets_only,
        (ListField::DataActions, ListField::NotDataActions),
        SECRETS_WILDCARD,
    ));
    if !data.is_empty() {
        let below: Vec<String> = wide.iter().map(|s| namespace_scope_below(s)).collect();
        parts.push(format!(
            "{}; or, to keep Secrets access where it is needed, replace AssignableScopes {} with \
             one namespace scope per namespace that needs it ({})",
            join_edits(&edits[before..]),
            super::text::quoted_list(wide.iter().copied()),
            super::text::quoted_list(below.iter().map(String::as_str))
        ));
    }
    let text = if parts.is_empty() {
        format!(
            "nothing to change: role \"{name}\" can be assigned only at namespace scope ({}), \
             where an assignment reaches that namespace's Secrets only",
            super::text::quoted_list(role.namespace_scopes().into_iter())
        )
    } else {
        format!("in role \"{name}\": {}", parts.join("; and "))
    };
    Remediation {
        text,
        edits: Vec::new(),
        tenancy: None,
        definition_edits: edits,
    }
}

impl DefinitionEdit {
    /// Applies the edit to a role definition document (inside `properties` when it has one);
    /// an error names a field that is not a list where the edit expects one.
    pub fn apply(&self, doc: &mut serde_json::Value) -> Result<(), String> {
        use serde_json::Value;
        let doc = match doc {
            Value::Object(o) if o.contains_key("properties") => &mut o["properties"],
            other => other,
        };
        let (block, key) = match self.field.split_once('.') {
            Some((block, key)) => (Some(block), key),
            None => (None, self.field.as_str()),
        };
        let target = match block {
            None => doc,
            Some(block) => {
                let (name, index) = block
                    .strip_suffix(']')
                    .and_then(|b| b.split_once('['))
                    .ok_or_else(|| format!("{}: not a field path", self.field))?;
                let index: usize = index
                    .parse()
                    .map_err(|_| format!("{}: not a field path", self.field))?;
                doc.get_mut(name)
                    .and_then(|b| b.get_mut(index))
                    .ok_or_else(|| format!("{}: no such permission block", self.field))?
            }
        };
        let Value::Object(fields) = target else {
            return Err(format!("{}: the block is not an object", self.field));
        };
        let Value::Array(list) = fields
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
        else {
            return Err(format!("{}: not a list", self.field));
        };
        match self.op {
            EditOp::Add => list.push(Value::from(self.value.as_str())),
            EditOp::Remove => list.retain(|v| v.as_str() != Some(self.value.as_str())),
        }
        Ok(())
    }
}

/// The edits that end `grants`: in a block whose granting patterns are all `narrow` (they grant
/// nothing else) they are removed from the allow list; a block with a wider pattern keeps it and
/// gets `exclude` in its deny list, so everything else the wildcard grants stays.
fn end_grants(
    role: &RoleDefinition,
    grants: &[BlockGrant<'_>],
    narrow: impl Fn(&str) -> bool,
    (allow, deny): (ListField, ListField),
    exclude: &str,
) -> Vec<DefinitionEdit> {
    let mut edits = Vec::new();
    for g in grants {
        if g.patterns.iter().all(|p| narrow(p)) {
            edits.extend(
                g.patterns
                    .iter()
                    .map(|p| DefinitionEdit::new(EditOp::Remove, role, g.block, allow, p)),
            );
        } else {
            edits.push(DefinitionEdit::new(
                EditOp::Add,
                role,
                g.block,
                deny,
                exclude,
            ));
        }
    }
    edits
}

fn join_edits(edits: &[DefinitionEdit]) -> String {
    edits
        .iter()
        .map(DefinitionEdit::describe)
        .collect::<Vec<_>>()
        .join(", ")
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
        let s = |v: &[&str]| v.iter().map(|x| RuleWord::from(x.to_string())).collect();
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

    /// Each Azure case gets its own edit, and the edits, applied, end the finding.
    #[test]
    fn azure_edits_per_case_end_the_finding() {
        use crate::rbac::azure::evaluate_azure;
        const C: &str = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks";
        const MC: &str = "Microsoft.ContainerService/managedClusters";
        let fixed = |doc: &serde_json::Value| {
            let role = RoleDefinition::from_value(doc).unwrap().unwrap();
            let r = remediate_azure(&role);
            let mut after = doc.clone();
            for e in &r.definition_edits {
                e.apply(&mut after).unwrap();
            }
            let role = RoleDefinition::from_value(&after).unwrap().unwrap();
            (r, evaluate_azure(&role).map(|f| f.severity))
        };
        let edit = |op, field: &str, value: &str| DefinitionEdit {
            op,
            field: field.into(),
            value: value.into(),
        };
        // Two blocks grant Secrets read: both must change, each in its own way.
        let rest = serde_json::json!({"properties": {"roleName": "two blocks", "assignableScopes": [C],
            "permissions": [{"dataActions": [format!("{MC}/*")]},
                            {"dataActions": [format!("{MC}/secrets/read"), format!("{MC}/pods/read")]}]}});
        let (r, after) = fixed(&rest);
        assert_eq!(
            r.definition_edits,
            vec![
                edit(
                    EditOp::Add,
                    "permissions[0].notDataActions",
                    SECRETS_WILDCARD
                ),
                edit(
                    EditOp::Remove,
                    "permissions[1].dataActions",
                    &format!("{MC}/secrets/read")
                ),
            ]
        );
        assert_eq!(after, None, "{}", r.text);
        // A Secrets-only pattern beside a wider one: only the exclusion removes both.
        let mixed = serde_json::json!({"Name": "m", "AssignableScopes": [C],
            "DataActions": [format!("{MC}/secrets/*"), "*"]});
        let (r, after) = fixed(&mixed);
        assert_eq!(
            r.definition_edits,
            vec![edit(EditOp::Add, "NotDataActions", SECRETS_WILDCARD)]
        );
        assert_eq!(after, None);
        // The admin credential and Secrets data actions: both fixed, the credential first.
        let both = serde_json::json!({"Name": "both", "AssignableScopes": ["/"],
            "Actions": [ADMIN_CREDENTIAL_ACTION.to_lowercase()], "DataActions": [format!("{MC}/*/read")]});
        let (r, after) = fixed(&both);
        assert_eq!(
            r.definition_edits,
            vec![
                edit(
                    EditOp::Remove,
                    "Actions",
                    &ADMIN_CREDENTIAL_ACTION.to_lowercase()
                ),
                edit(EditOp::Add, "NotDataActions", SECRETS_WILDCARD),
            ]
        );
        assert_eq!(after, None);
        assert!(
            r.text.contains("; and add \"Microsoft.ContainerService/managedClusters/secrets/*\" to NotDataActions")
                && r.text.contains("/subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.ContainerService/managedClusters/<cluster>/namespaces/<namespace>"),
            "{}",
            r.text
        );
        // Namespace scope: the credential goes, the namespace's Secrets stay (info).
        let ns = serde_json::json!({"Name": "ns", "AssignableScopes": [format!("{C}/namespaces/az-a")],
            "Actions": [format!("{MC}/list*")], "DataActions": [format!("{MC}/secrets/read")]});
        let (r, after) = fixed(&ns);
        assert_eq!(
            r.definition_edits,
            vec![edit(EditOp::Add, "NotActions", ADMIN_CREDENTIAL_ACTION)]
        );
        assert_eq!(after, Some(crate::rbac::Severity::Info));
        assert!(!r.text.contains("NotDataActions"), "{}", r.text);
        let (r, _) = fixed(
            &serde_json::json!({"Name": "ns", "AssignableScopes": [format!("{C}/namespaces/az-a")],
            "DataActions": [format!("{MC}/secrets/read")]}),
        );
        assert!(r.definition_edits.is_empty());
        assert!(r.text.starts_with("nothing to change: role \"ns\" can be assigned only at namespace scope (\"/subscriptions/0/"), "{}", r.text);
        // A bad path or a field that is not a list is an error, not a panic.
        let mut doc = serde_json::json!({"Actions": "x"});
        assert!(edit(EditOp::Add, "Actions", "y").apply(&mut doc).is_err());
        assert!(edit(EditOp::Add, "permissions[x].actions", "y")
            .apply(&mut doc)
            .is_err());
        assert!(edit(EditOp::Add, "permissions[3].actions", "y")
            .apply(&mut doc)
            .is_err());
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
