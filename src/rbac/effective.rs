//! `EffectiveRules`: the rules a ClusterRole really grants once aggregation is resolved, each
//! traced back to the role and rule index it came from so findings can name them.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::budget::{Budget, OverBudget};
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
    /// last write, so the union is never smaller than what the authorizer sees. Each role looked
    /// at costs one step of `budget`; the label index keeps that to the roles a selector can pick.
    pub fn of_cluster_role(
        role: &'a ClusterRole,
        state: &'a ClusterState,
        budget: &Budget,
    ) -> Result<Self, OverBudget> {
        let mut out = Self::own(&role.metadata.name, &role.rules);
        let mut seen: HashSet<&str> = HashSet::from([role.metadata.name.as_str()]);
        let mut queue: VecDeque<&ClusterRole> = VecDeque::from([role]);
        while let Some(aggregator) = queue.pop_front() {
            let Some(agg) = &aggregator.aggregation_rule else {
                continue;
            };
            for selector in &agg.cluster_role_selectors {
                for member in state.selection_candidates(selector) {
                    budget.spend(1)?;
                    if seen.contains(member.metadata.name.as_str())
                        || !selector_matches(selector, &member.metadata.labels)
                    {
                        continue;
                    }
                    seen.insert(&member.metadata.name);
                    out.extend(&member.metadata.name, &member.rules);
                    queue.push_back(member);
                }
            }
        }
        Ok(out)
    }

    /// The same rules less those `keep` returns false for (indices into the role stay as
    /// they were, so findings still name the right rule).
    pub fn filtered(&self, keep: impl Fn(&SourcedRule<'a>) -> bool) -> Self {
        Self {
            rules: self.rules.iter().filter(|r| keep(r)).copied().collect(),
        }
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
/// judged with its new labels. Each aggregator and binding looked at costs one step of `budget`.
pub fn cluster_bindings<'a>(
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
    state: &'a ClusterState,
    budget: &Budget,
) -> Result<Vec<BindingPath<'a>>, OverBudget> {
    // Breadth-first over aggregators; each node remembers its parent, so a long chain costs
    // its length once rather than a copy of the chain per node.
    struct Node<'a> {
        role: &'a str,
        labels: &'a BTreeMap<String, String>,
        parent: Option<usize>,
    }
    let mut nodes = vec![Node {
        role: name,
        labels,
        parent: None,
    }];
    let mut paths = Vec::new();
    let mut seen: HashSet<&str> = HashSet::from([name]);
    let mut next = 0;
    while next < nodes.len() {
        let (role, labels) = (nodes[next].role, nodes[next].labels);
        let bindings = state.bindings_to(role);
        if !bindings.is_empty() {
            // innermost first: the aggregator that selects `name` comes first.
            let mut through = Vec::new();
            let mut at = next;
            while let Some(parent) = nodes[at].parent {
                through.push(nodes[at].role);
                at = parent;
            }
            through.reverse();
            budget.spend((bindings.len() + through.len()) as u64)?;
            paths.extend(bindings.iter().map(|b| BindingPath {
                binding: b,
                through: through.clone(),
            }));
        }
        for aggregator in state.aggregator_candidates(labels) {
            budget.spend(1)?;
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
                nodes.push(Node {
                    role: agg_name,
                    labels: &aggregator.metadata.labels,
                    parent: Some(next),
                });
            }
        }
        next += 1;
    }
    Ok(paths)
}
