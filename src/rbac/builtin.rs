//! The bootstrap ClusterRoles of every cluster, embedded for offline judgement.

use std::sync::LazyLock;

use super::model::ClusterRole;

static BUILTIN_YAML: &str = include_str!("builtin.yaml");

static BUILTIN: LazyLock<Vec<ClusterRole>> = LazyLock::new(|| {
    // A compile-time constant, checked by the test below; never user input.
    serde_saphyr::from_multiple(BUILTIN_YAML).expect("embedded builtin.yaml is valid")
});

pub fn cluster_roles() -> Vec<ClusterRole> {
    BUILTIN.clone()
}

#[cfg(test)]
mod tests {
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
