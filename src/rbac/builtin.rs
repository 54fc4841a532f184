//! The bootstrap ClusterRoles of every cluster, embedded for offline judgement, and what each
//! of them grants by its bootstrap definition: the only thing a bootstrap role is exempt for.
//! A name alone earns nothing (anyone who may create ClusterRoles picks the name), so a rule an
//! UPDATE adds to `system:aggregate-to-view`, or a role merely *named* `system:...`, is judged
//! like any other.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use super::budget::Budget;
use super::effective::EffectiveRules;
use super::model::{ClusterRole, PolicyRule};
use super::rule::rule_covers;
use super::selector::selector_matches;
use super::state::ClusterState;

static BUILTIN_YAML: &str = include_str!("builtin.yaml");

static BUILTIN: LazyLock<Vec<ClusterRole>> = LazyLock::new(|| {
    // A compile-time constant, checked by the test below; never user input.
    serde_saphyr::from_multiple(BUILTIN_YAML).expect("embedded builtin.yaml is valid")
});

pub fn cluster_roles() -> Vec<ClusterRole> {
    BUILTIN.clone()
}

/// A bootstrap role as the API server's bootstrap policy defines it.
#[derive(Debug)]
pub struct Bootstrap {
    /// Its own rules plus, for an aggregated role (admin, edit, view), those of the bootstrap
    /// roles it aggregates.
    rules: Vec<PolicyRule>,
    labels: BTreeMap<String, String>,
}

static BOOTSTRAP: LazyLock<HashMap<String, Bootstrap>> = LazyLock::new(|| {
    let state = ClusterState::with_builtins();
    BUILTIN
        .iter()
        .map(|role| {
            // Bounded by the 64 embedded roles; the budget cannot run out.
            let rules = EffectiveRules::of_cluster_role(role, &state, &Budget::new(u64::MAX))
                .map(|e| e.iter().map(|r| r.rule.clone()).collect())
                .unwrap_or_default();
            let b = Bootstrap {
                rules,
                labels: role.metadata.labels.clone(),
            };
            (role.metadata.name.clone(), b)
        })
        .collect()
});

/// The bootstrap definition of the role named `name`, if it is one.
pub fn bootstrap(name: &str) -> Option<&'static Bootstrap> {
    BOOTSTRAP.get(name)
}

impl Bootstrap {
    /// Whether the bootstrap definition already grants everything `rule` grants.
    pub fn covers(&self, rule: &PolicyRule) -> bool {
        self.rules.iter().any(|own| rule_covers(own, rule))
    }

    /// Whether `aggregator` selects this role by its bootstrap labels (so aggregation into it
    /// is part of the bootstrap policy, not something a later edit added).
    pub fn aggregates_into(&self, aggregator: &ClusterRole) -> bool {
        aggregator.aggregation_rule.as_ref().is_some_and(|a| {
            a.cluster_role_selectors
                .iter()
                .any(|s| selector_matches(s, &self.labels))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_definitions_cover_their_own_rules_and_nothing_more() {
        let edit = bootstrap("edit").expect("edit is a bootstrap role");
        let secrets_write = PolicyRule::of(&["create", "delete"], &[""], &["secrets"], &[]);
        assert!(
            edit.covers(&secrets_write),
            "edit aggregates secrets writes"
        );
        let view = bootstrap("system:aggregate-to-view").expect("bootstrap");
        assert!(!view.covers(&PolicyRule::of(&["get"], &[""], &["secrets"], &[])));
        assert!(view.covers(&PolicyRule::of(&["list"], &[""], &["pods"], &[])));
        assert!(bootstrap("system:anything").is_none());
        let state = ClusterState::with_builtins();
        assert!(view.aggregates_into(state.cluster_role("view").unwrap()));
        assert!(!view.aggregates_into(state.cluster_role("admin").unwrap()));
    }

    #[test]
    fn embedded_roles_parse() {
        let names: Vec<String> = super::cluster_roles()
            .into_iter()
            .map(|r| r.metadata.name)
            .collect();
        assert_eq!(names.len(), 64, "{names:?}");
        for want in [
            "cluster-admin",
            "system:aggregate-to-edit",
            "system:auth-delegator",
            "system:controller:namespace-controller",
        ] {
            assert!(names.iter().any(|n| n == want), "{want}");
        }
    }
}
