//! `EffectiveRules`: the rules a ClusterRole really grants once aggregation is resolved, each
//! traced back to the role and rule index it came from so findings can name them.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::model::{ClusterRole, ClusterRoleBinding, PolicyRule};
use super::selector::selector_matches;
use super::state::ClusterState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcedRule<'a> {
    /// Name of the (Cluster)Role that holds the rule.
    pub role: &'a str,
    /// 0-based position in that role's `.rules`.
    pub index: usize,
    pub rule: &'a PolicyRule,
}

#[derive(Debug, Clone, Default)]
pub struct EffectiveRules<'a> {
    rules: Vec<SourcedRule<'a>>,
}

impl<'a> EffectiveRules<'a> {
    /// The rules a role holds itself.
    pub fn own(role: &'a str, rules: &'a [PolicyRule]) -> Self {
        let mut out = Self::default();
        out.extend(role, rules);
        out
    }

    fn extend(&mut self, role: &'a str, rules: &'a [PolicyRule]) {
        self.rules
            .extend(rules.iter().enumerate().map(|(index, rule)| SourcedRule {
                role,
                index,
                rule,
            }));
    }

    /// A ClusterRole's rules plus, for an aggregated role, the rules of every ClusterRole its
    /// selectors pick from `state`, transitively (the aggregation controller writes an aggregated
    /// role's union into its own `.rules`, so aggregation of aggregated roles composes). The
    /// role's own `.rules` are kept too: on a live cluster they already hold the controller's
    /// last write, so the union is never smaller than what the authorizer sees.
    pub fn of_cluster_role(role: &'a ClusterRole, state: &'a ClusterState) -> Self {
        let mut out = Self::own(&role.metadata.name, &role.rules);
        let mut seen: HashSet<&str> = HashSet::from([role.metadata.name.as_str()]);
        let mut queue: VecDeque<&ClusterRole> = VecDeque::from([role]);
        while let Some(aggregator) = queue.pop_front() {
            let Some(agg) = &aggregator.aggregation_rule else {
                continue;
            };
            for member in state.cluster_roles() {
                if seen.contains(member.metadata.name.as_str()) {
                    continue;
                }
                let selected = agg
                    .cluster_role_selectors
                    .iter()
                    .any(|s| selector_matches(s, &member.metadata.labels));
                if selected {
                    seen.insert(&member.metadata.name);
                    out.extend(&member.metadata.name, &member.rules);
                    queue.push_back(member);
                }
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = &SourcedRule<'a>> {
        self.rules.iter()
    }

    pub fn get(&self, i: usize) -> Option<&SourcedRule<'a>> {
        self.rules.get(i)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// How a ClusterRole is bound cluster-wide: by `binding`, directly or through the chain of
/// aggregated ClusterRoles in `through` (innermost first).
#[derive(Debug, Clone)]
pub struct BindingPath<'a> {
    pub binding: &'a ClusterRoleBinding,
    pub through: Vec<&'a str>,
}

/// Every ClusterRoleBinding that grants a ClusterRole named `name` with `labels` cluster-wide:
/// bindings of the role itself, and bindings of any aggregated ClusterRole that selects it
/// (transitively). `labels` are passed in, not read from `state`, so a role under review is
/// judged with its new labels.
pub fn cluster_bindings<'a>(
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    state: &'a ClusterState,
) -> Vec<BindingPath<'a>> {
    let mut paths = Vec::new();
    let mut seen: HashSet<&str> = HashSet::from([name]);
    let mut queue: VecDeque<(&str, &BTreeMap<String, String>, Vec<&str>)> =
        VecDeque::from([(name, labels, Vec::new())]);
    while let Some((role, labels, through)) = queue.pop_front() {
        paths.extend(state.bindings_to(role).iter().map(|b| BindingPath {
            binding: b,
            through: through.clone(),
        }));
        for aggregator in state.aggregators() {
            let agg_name = aggregator.metadata.name.as_str();
            if seen.contains(agg_name) {
                continue;
            }
            let selects = aggregator.aggregation_rule.as_ref().is_some_and(|a| {
                a.cluster_role_selectors
                    .iter()
                    .any(|s| selector_matches(s, labels))
            });
            if selects {
                seen.insert(agg_name);
                let mut chain = through.clone();
                chain.push(agg_name);
                queue.push_back((agg_name, &aggregator.metadata.labels, chain));
            }
        }
    }
    paths
}
