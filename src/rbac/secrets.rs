//! `SecretsAccess`: which verbs on core `secrets` a set of rules grants, and for which names.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::effective::{EffectiveRules, SourcedRule};
use super::rule::{
    api_group_matches, name_coverage, resource_matches, NameCoverage, ResourceRequest,
};
use super::word::RuleWord;

/// The verbs that touch Secret contents. Reads exfiltrate; writes tamper, and every write
/// response carries the stored object back, so a write verb leaks contents too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretsVerb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    #[serde(rename = "deletecollection")]
    DeleteCollection,
}

impl SecretsVerb {
    pub const ALL: [SecretsVerb; 8] = [
        Self::Get,
        Self::List,
        Self::Watch,
        Self::Create,
        Self::Update,
        Self::Patch,
        Self::Delete,
        Self::DeleteCollection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }

    pub fn is_read(self) -> bool {
        matches!(self, Self::Get | Self::List | Self::Watch)
    }

    pub fn parse(verb: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == verb)
    }
}

impl fmt::Display for SecretsVerb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one verb reaches: every Secret, or only the named ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach<'a> {
    All,
    Named(Names<'a>),
}

/// The union of some rules' `resourceNames`, kept as the rules' own lists: a rule may name a
/// great many objects and every verb and route it grants shares them, so they are neither
/// copied nor collected until a reader asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names<'a>(Vec<&'a [RuleWord]>);

impl<'a> Names<'a> {
    pub fn add(&mut self, names: &'a [RuleWord]) {
        if !self.0.iter().any(|n| std::ptr::eq(*n, names)) {
            self.0.push(names);
        }
    }

    /// Every name, once, sorted. `""` is not a name an object can have (it stands for requests
    /// without one, which reach everything, see `name_coverage`), so it is left out.
    pub fn set(&self) -> BTreeSet<&'a str> {
        self.0
            .iter()
            .flat_map(|n| n.iter().map(|w| w.as_ref()))
            .filter(|n| !n.is_empty())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        !name.is_empty() && self.0.iter().any(|n| n.iter().any(|x| x == name))
    }

    pub fn is_subset(&self, other: &Names<'_>) -> bool {
        self.0
            .iter()
            .flat_map(|n| n.iter())
            .filter(|x| !x.is_empty())
            .all(|x| other.contains(x))
    }
}

impl<'a> FromIterator<&'a [RuleWord]> for Names<'a> {
    fn from_iter<I: IntoIterator<Item = &'a [RuleWord]>>(iter: I) -> Self {
        let mut names = Self::default();
        for n in iter {
            names.add(n);
        }
        names
    }
}

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.set())
    }
}

/// Secrets access granted by a rule set, with the rules that grant it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretsAccess<'a> {
    grants: Vec<(SecretsVerb, Reach<'a>)>,
    /// Indices into the evaluated `EffectiveRules` of the rules granting any of it.
    pub granting_rules: Vec<usize>,
}

impl<'a> SecretsAccess<'a> {
    pub fn of(rules: &EffectiveRules<'a>) -> Self {
        let mut access = Self::default();
        let mut granting = BTreeSet::new();
        // Only rules that reach core `secrets` can grant a verb on them: found once, not once
        // per verb (most roles have none, and then no verb is tried at all).
        let reaching: Vec<(usize, &SourcedRule)> = rules
            .iter()
            .enumerate()
            .filter(|(_, sr)| {
                api_group_matches(sr.rule, "") && resource_matches(sr.rule, "secrets", "")
            })
            .collect();
        if reaching.is_empty() {
            return access;
        }
        for verb in SecretsVerb::ALL {
            let req = ResourceRequest::new(verb.as_str(), "", "secrets");
            let mut reach: Option<Reach> = None;
            for &(i, SourcedRule { rule, .. }) in &reaching {
                match name_coverage(rule, &req) {
                    NameCoverage::None => continue,
                    NameCoverage::All => reach = Some(Reach::All),
                    NameCoverage::Named => match &mut reach {
                        Some(Reach::All) => {}
                        Some(Reach::Named(have)) => have.add(&rule.resource_names),
                        None => {
                            reach = Some(Reach::Named(Names::from_iter([&rule.resource_names[..]])))
                        }
                    },
                }
                granting.insert(i);
            }
            if let Some(reach) = reach {
                access.grants.push((verb, reach));
            }
        }
        access.granting_rules = granting.into_iter().collect();
        access
    }

    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    pub fn grants(&self) -> &[(SecretsVerb, Reach<'a>)] {
        &self.grants
    }

    pub fn verbs(&self) -> Vec<SecretsVerb> {
        self.grants.iter().map(|(v, _)| *v).collect()
    }

    pub fn reach(&self, verb: SecretsVerb) -> Option<&Reach<'a>> {
        self.grants.iter().find(|(v, _)| *v == verb).map(|(_, r)| r)
    }

    /// True when every granted verb is limited to named Secrets.
    pub fn named_only(&self) -> bool {
        !self.is_empty()
            && self
                .grants
                .iter()
                .all(|(_, r)| matches!(r, Reach::Named(_)))
    }

    /// Unrestricted list or watch: each returns every Secret with its data (a watch starts with
    /// an ADDED event per existing object), so indirect routes to Secrets add nothing to report.
    pub fn reads_everything(&self) -> bool {
        [SecretsVerb::List, SecretsVerb::Watch]
            .iter()
            .any(|v| self.reach(*v) == Some(&Reach::All))
    }

    /// Every name a named grant is limited to.
    pub fn names(&self) -> BTreeSet<&'a str> {
        self.grants
            .iter()
            .filter_map(|(_, r)| match r {
                Reach::Named(n) => Some(n.set()),
                Reach::All => None,
            })
            .flatten()
            .collect()
    }
}

impl fmt::Display for SecretsAccess<'_> {
    /// `read of Secrets (get, list)`, `read and write of Secrets (get, update; ...)`, with named
    /// grants spelled out: `write of Secrets named "a" (update)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (all, named): (Vec<_>, Vec<_>) = self
            .grants
            .iter()
            .partition(|(_, r)| matches!(r, Reach::All));
        let mut parts = Vec::new();
        if !all.is_empty() {
            parts.push(describe(all.iter().map(|(v, _)| *v), None));
        }
        if !named.is_empty() {
            let names = self.names();
            parts.push(describe(named.iter().map(|(v, _)| *v), Some(&names)));
        }
        f.write_str(&parts.join(" and "))
    }
}

fn describe(verbs: impl Iterator<Item = SecretsVerb>, names: Option<&BTreeSet<&str>>) -> String {
    let verbs: Vec<SecretsVerb> = verbs.collect();
    let reads = verbs.iter().any(|v| v.is_read());
    let writes = verbs.iter().any(|v| !v.is_read());
    let what = match (reads, writes) {
        (true, true) => "read and write",
        (true, false) => "read",
        _ => "write",
    };
    let target = match names {
        None => "Secrets".to_string(),
        Some(names) => format!(
            "Secrets named {}",
            super::text::quoted_list(names.iter().copied())
        ),
    };
    let list: Vec<&str> = verbs.iter().map(|v| v.as_str()).collect();
    let note = if writes {
        "; write responses return Secret data too"
    } else {
        ""
    };
    format!("{what} of {target} ({}{note})", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::model::PolicyRule;

    type Spec<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);

    /// The rules are leaked so the access may borrow them: a few bytes per test.
    fn access(specs: &[Spec<'_>]) -> SecretsAccess<'static> {
        let r: Vec<PolicyRule> = specs
            .iter()
            .map(|(v, g, r, n)| PolicyRule::of(v, g, r, n))
            .collect();
        let r: &'static [PolicyRule] = Box::leak(r.into_boxed_slice());
        SecretsAccess::of(&EffectiveRules::own("r", r))
    }

    #[test]
    fn reads_writes_and_wildcards() {
        let a = access(&[(&["get", "list"], &[""], &["*"], &[])]);
        assert_eq!(a.verbs(), vec![SecretsVerb::Get, SecretsVerb::List]);
        assert_eq!(a.to_string(), "read of Secrets (get, list)");

        let a = access(&[(&["*"], &["*"], &["*"], &[])]);
        assert_eq!(a.verbs().len(), 8);
        assert!(a
            .to_string()
            .starts_with("read and write of Secrets (get, list, watch, create"));

        let a = access(&[(&["update"], &[""], &["secrets"], &[])]);
        assert_eq!(
            a.to_string(),
            "write of Secrets (update; write responses return Secret data too)"
        );
    }

    #[test]
    fn not_secrets() {
        assert!(access(&[(&["*"], &[""], &["secrets/status", "configmaps"], &[])]).is_empty());
        assert!(access(&[(&["*"], &["apps"], &["secrets"], &[])]).is_empty());
        assert!(access(&[(&["*"], &[""], &["secrets/*", "*/*"], &[])]).is_empty());
        assert!(access(&[(&["use", "bind"], &["*"], &["*"], &[])]).is_empty());
    }

    #[test]
    fn named_secrets() {
        let a = access(&[(
            &["get", "create", "list"],
            &[""],
            &["secrets"],
            &["tls", "ca"],
        )]);
        assert!(a.named_only());
        assert_eq!(
            a.verbs(),
            vec![SecretsVerb::Get, SecretsVerb::List, SecretsVerb::Create],
            "a PUT or apply that creates Secret \"tls\" is a named create"
        );
        assert_eq!(
            a.to_string(),
            r#"read and write of Secrets named "ca", "tls" (get, list, create; write responses return Secret data too)"#
        );

        let a = access(&[
            (&["get"], &[""], &["secrets"], &[]),
            (&["update"], &[""], &["secrets"], &["tls"]),
        ]);
        assert!(!a.named_only());
        assert_eq!(a.reach(SecretsVerb::Get), Some(&Reach::All));
        assert_eq!(a.granting_rules, vec![0, 1]);
        assert!(a
            .to_string()
            .contains(r#"write of Secrets named "tls" (update"#));

        // Issue 10: `resourceNames: [""]` matches every request without a name: a plain list or
        // watch (all Secrets), a create by POST (any new Secret), any deletecollection.
        let a = access(&[(
            &["get", "list", "watch", "create", "deletecollection"],
            &[""],
            &["secrets"],
            &[""],
        )]);
        for v in [
            SecretsVerb::List,
            SecretsVerb::Watch,
            SecretsVerb::Create,
            SecretsVerb::DeleteCollection,
        ] {
            assert_eq!(a.reach(v), Some(&Reach::All), "{v}");
        }
        assert_eq!(a.reach(SecretsVerb::Get), None, "no Secret is named \"\"");
        assert!(a.reads_everything());
        assert!(!a.to_string().contains("named"), "{a}");

        // An unrestricted rule subsumes a named one for the same verb.
        let a = access(&[
            (&["get"], &[""], &["secrets"], &["x"]),
            (&["get"], &[""], &["secrets"], &[]),
        ]);
        assert_eq!(a.reach(SecretsVerb::Get), Some(&Reach::All));
    }
}
