//! Judgements of a ClusterRole that depend only on the state, kept with the state: a binding of
//! a role such as `view` (aggregated from a dozen others) would otherwise resolve the role's
//! aggregation and probe its rules again on every review. Only existing roles are remembered, so
//! the memo is bounded by the state; any change to the state forgets it all (a copy starts empty).

use std::collections::HashSet;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct RoleMemo {
    /// ClusterRoles whose effective rules grant no Secrets access and open no indirect route:
    /// a binding of one grants nothing to judge.
    harmless: RwLock<HashSet<String>>,
}

impl Clone for RoleMemo {
    /// A copy is made to be changed (a live lookup's objects added): it judges afresh.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl RoleMemo {
    pub fn is_harmless(&self, role: &str) -> bool {
        self.harmless.read().is_ok_and(|memo| memo.contains(role))
    }

    pub fn remember_harmless(&self, role: &str) {
        if let Ok(mut memo) = self.harmless.write() {
            memo.insert(role.to_string());
        }
    }

    pub fn forget(&mut self) {
        match self.harmless.get_mut() {
            Ok(memo) => memo.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
    }
}
