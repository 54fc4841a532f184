//! A deterministic work budget for one judgement. Aggregation makes the work of judging one
//! object depend on the rest of the cluster, and whoever can write ClusterRoles chooses that
//! rest: counting steps (not reading a clock) keeps the engine pure and makes "too much work" a
//! verdict of its own, which callers turn into a denial (fail closed) or an input error.

use std::cell::Cell;

/// Steps a judgement may take by default: far above any real cluster (a review of a role in a
/// chain of 8,000 aggregating roles takes about 16,000), far below a second of work.
pub const DEFAULT_WORK_LIMIT: u64 = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("judging it takes more than {limit} aggregation steps (roles and bindings visited), the limit secretscope allows one object")]
pub struct OverBudget {
    pub limit: u64,
}

#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: Cell<u64>,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: Cell::new(0),
        }
    }

    /// Counts `steps`; `Err` once the total passes the limit.
    pub fn spend(&self, steps: u64) -> Result<(), OverBudget> {
        let used = self.used.get().saturating_add(steps);
        self.used.set(used);
        if used > self.limit {
            Err(OverBudget { limit: self.limit })
        } else {
            Ok(())
        }
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_past_the_limit_fails_and_keeps_failing() {
        let b = Budget::new(3);
        assert!(b.spend(2).is_ok());
        assert!(b.spend(1).is_ok());
        assert_eq!(b.spend(1), Err(OverBudget { limit: 3 }));
        assert!(b.spend(0).is_err());
        assert_eq!(b.used(), 4);
    }
}
