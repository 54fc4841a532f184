//! Label selectors as `metav1.LabelSelectorAsSelector` reads them for ClusterRole aggregation.

use std::collections::BTreeMap;

use super::model::{LabelSelector, SelectorOperator};

/// matchLabels and matchExpressions are ANDed. An empty selector (`{}`) selects *everything*:
/// an `aggregationRule` with `clusterRoleSelectors: [{}]` pulls in every ClusterRole, cluster-admin
/// included, which is exactly why aggregation has to be resolved before judging a role.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator {
                SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::model::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: SelectorOperator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op,
                values: values.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn operators() {
        use SelectorOperator::*;
        let l = labels(&[("tier", "edit"), ("team", "a")]);
        let none = labels(&[]);
        let cases = [
            (expr("tier", In, &["edit", "view"]), &l, true),
            (expr("tier", In, &["view"]), &l, false),
            (expr("tier", In, &["edit"]), &none, false),
            (expr("tier", NotIn, &["view"]), &l, true),
            (expr("tier", NotIn, &["edit"]), &l, false),
            (expr("tier", NotIn, &["edit"]), &none, true),
            (expr("team", Exists, &[]), &l, true),
            (expr("team", Exists, &[]), &none, false),
            (expr("team", DoesNotExist, &[]), &l, false),
            (expr("team", DoesNotExist, &[]), &none, true),
        ];
        for (i, (sel, labels, want)) in cases.into_iter().enumerate() {
            assert_eq!(selector_matches(&sel, labels), want, "case {i}");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let mut sel = expr("team", SelectorOperator::Exists, &[]);
        sel.match_labels = labels(&[("tier", "edit")]);
        assert!(selector_matches(
            &sel,
            &labels(&[("tier", "edit"), ("team", "a")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("tier", "edit")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("tier", "view"), ("team", "a")])
        ));
    }

    #[test]
    fn empty_selector_selects_everything() {
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        assert!(selector_matches(
            &LabelSelector::default(),
            &labels(&[("a", "b")])
        ));
    }
}
