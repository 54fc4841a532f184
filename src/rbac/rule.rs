//! `RuleAllows` exactly as the Kubernetes RBAC authorizer evaluates it
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go` and `pkg/apis/rbac/v1/evaluation_helpers.go`).
//! All comparisons are case-sensitive string equality; `*` is the only wildcard, except the
//! `*/subresource` form in resources and a trailing `*` in nonResourceURLs.

use super::model::PolicyRule;
use super::word::RuleWord;

const ALL: &str = "*";

/// The attributes of one resource request, as the authorizer sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRequest<'a> {
    pub verb: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    /// Empty for the resource itself.
    pub subresource: &'a str,
    /// Empty when the request names no object (create, list, watch and deletecollection
    /// without a `metadata.name` field selector).
    pub name: &'a str,
}

impl<'a> ResourceRequest<'a> {
    pub const fn new(verb: &'a str, api_group: &'a str, resource: &'a str) -> Self {
        Self {
            verb,
            api_group,
            resource,
            subresource: "",
            name: "",
        }
    }

    pub const fn subresource(mut self, subresource: &'a str) -> Self {
        self.subresource = subresource;
        self
    }

    pub const fn named(mut self, name: &'a str) -> Self {
        self.name = name;
        self
    }
}

/// `a == b`, for the short strings rules and requests hold. `str`'s own `==` calls the C
/// library's `memcmp` for every pair of equal length, and judging one ClusterRole compares
/// many such pairs: glibc's AVX-512 `memcmp` took 7% of the webhook's CPU time for the
/// 1.5 KB ClusterRole over HTTP/1.1 (`perf record`), though under 2% of its instructions
/// (callgrind). A loop the compiler keeps inline is cheaper at these lengths.
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || same(v, verb))
}

pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == ALL || same(g, group))
}

/// `resource` alone, `resource/subresource` exactly, or `*/subresource` for any resource's
/// subresource. `secrets/*` is not special: it only matches a subresource literally named `*`.
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return same(r, resource);
        }
        let exact = r.len() == resource.len() + 1 + subresource.len()
            && r.split_at_checked(resource.len())
                .is_some_and(|(res, rest)| {
                    same(res, resource)
                        && rest.strip_prefix('/').is_some_and(|s| same(s, subresource))
                });
        exact || r.strip_prefix("*/").is_some_and(|s| same(s, subresource))
    })
}

/// An empty `resourceNames` allows every name; otherwise the request must name one of them,
/// so a named rule never allows requests without a name (create, plain list/watch, deletecollection).
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| same(n, name))
}

/// Exact match, `*`, or a prefix match for a rule URL ending in `*` (every trailing `*` is
/// trimmed, as Go's `strings.TrimRight` does).
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().any(|u| {
        u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

pub fn rule_allows(rule: &PolicyRule, req: &ResourceRequest<'_>) -> bool {
    verb_matches(rule, req.verb)
        && api_group_matches(rule, req.api_group)
        && resource_matches(rule, req.resource, req.subresource)
        && resource_name_matches(rule, req.name)
}

pub fn rule_allows_non_resource(rule: &PolicyRule, verb: &str, path: &str) -> bool {
    verb_matches(rule, verb) && non_resource_url_matches(rule, path)
}

/// Whether `owner` alone grants everything `servant` grants, dimension by dimension (verbs,
/// groups, resources, names, URLs), with `*` and `*/subresource` as the authorizer reads them.
/// Stricter than the authorizer's `Covers` over a rule *set* (which splits a rule into single
/// requests and lets several owner rules share them): a `false` here is only ever a false
/// "not covered", which makes secretscope judge a rule it might have let pass, never the reverse.
pub fn rule_covers(owner: &PolicyRule, servant: &PolicyRule) -> bool {
    let has_all = |v: &[RuleWord]| v.iter().any(|x| x == ALL);
    let each = |mine: &[RuleWord], theirs: &[RuleWord]| {
        has_all(mine) || theirs.iter().all(|t| mine.contains(t))
    };
    let resources = has_all(&owner.resources)
        || servant.resources.iter().all(|r| {
            owner.resources.contains(r)
                || r.split_once('/').is_some_and(|(res, sub)| {
                    res != ALL
                        && owner
                            .resources
                            .iter()
                            .any(|o| o.strip_prefix("*/") == Some(sub))
                })
        });
    let names = owner.resource_names.is_empty()
        || (!servant.resource_names.is_empty()
            && servant
                .resource_names
                .iter()
                .all(|n| owner.resource_names.contains(n)));
    let urls = servant.non_resource_urls.iter().all(|u| {
        owner.non_resource_urls.iter().any(|o| {
            o == ALL || o == u || (o.ends_with('*') && u.starts_with(o.trim_end_matches('*')))
        })
    });
    each(&owner.verbs, &servant.verbs)
        && (servant.resources.is_empty() || each(&owner.api_groups, &servant.api_groups))
        && resources
        && (servant.resources.is_empty() || names)
        && urls
}

/// How a rule covers a request whose name is left open: for every name, for the names it lists,
/// or not at all. This is `rule_allows` quantified over names, used to ask "does this rule grant
/// `get secrets`" without picking a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameCoverage {
    None,
    Named,
    All,
}

pub fn name_coverage(rule: &PolicyRule, req: &ResourceRequest<'_>) -> NameCoverage {
    if !(verb_matches(rule, req.verb)
        && api_group_matches(rule, req.api_group)
        && resource_matches(rule, req.resource, req.subresource))
    {
        return NameCoverage::None;
    }
    if rule.resource_names.is_empty() {
        return NameCoverage::All;
    }
    // `ResourceNameMatches` compares the rule's names with the request's name, and a request
    // without one (a plain list or watch, a create by POST, any deletecollection) has the name
    // "": `resourceNames: [""]` therefore allows exactly those, which reach every object.
    if verb_can_go_unnamed(req.verb) && rule.resource_names.iter().any(|n| n.is_empty()) {
        return NameCoverage::All;
    }
    if verb_can_name(req.verb) && rule.resource_names.iter().any(|n| !n.is_empty()) {
        NameCoverage::Named
    } else {
        NameCoverage::None
    }
}

/// Verbs a request may carry an object name for. `create` can: a PUT or server-side apply that
/// creates object `x` is authorized as `create` of `x`; list and watch can, through a
/// `metadata.name` field selector. Only `deletecollection` never does.
pub fn verb_can_name(verb: &str) -> bool {
    verb != "deletecollection"
}

/// Verbs whose requests may carry no name (and so match `resourceNames: [""]`): the collection
/// verbs, and `create` by POST.
pub fn verb_can_go_unnamed(verb: &str) -> bool {
    matches!(verb, "list" | "watch" | "create" | "deletecollection")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn covers_dimension_by_dimension() {
        let r = |v: &[&str], g: &[&str], res: &[&str], n: &[&str]| PolicyRule::of(v, g, res, n);
        let owner = r(&["get", "list"], &[""], &["pods", "*/scale"], &[]);
        assert!(rule_covers(&owner, &r(&["get"], &[""], &["pods"], &[])));
        assert!(rule_covers(
            &owner,
            &r(&["list"], &[""], &["deployments/scale"], &["x"])
        ));
        assert!(!rule_covers(&owner, &r(&["get"], &[""], &["secrets"], &[])));
        assert!(!rule_covers(&owner, &r(&["watch"], &[""], &["pods"], &[])));
        assert!(!rule_covers(
            &owner,
            &r(&["get"], &["apps"], &["pods"], &[])
        ));
        assert!(!rule_covers(&owner, &r(&["get"], &[""], &["*"], &[])));
        assert!(rule_covers(&owner, &r(&["get"], &[""], &["*/scale"], &[])));
        assert!(!rule_covers(
            &owner,
            &r(&["get"], &[""], &["*/status"], &[])
        ));
        let named = r(&["get"], &[""], &["secrets"], &["a"]);
        assert!(rule_covers(
            &named,
            &r(&["get"], &[""], &["secrets"], &["a"])
        ));
        assert!(!rule_covers(&named, &r(&["get"], &[""], &["secrets"], &[])));
        assert!(!rule_covers(
            &named,
            &r(&["get"], &[""], &["secrets"], &["a", "b"])
        ));
        let all = r(&["*"], &["*"], &["*"], &[]);
        assert!(rule_covers(&all, &r(&["*"], &["*"], &["*"], &[])));
        let mut urls = PolicyRule::of(&["get"], &[], &[], &[]);
        urls.non_resource_urls = vec!["/healthz/*".into()];
        let mut asked = urls.clone();
        asked.non_resource_urls = vec!["/healthz/etcd".into()];
        assert!(rule_covers(&urls, &asked));
        asked.non_resource_urls = vec!["/metrics".into()];
        assert!(!rule_covers(&urls, &asked));
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule::of(verbs, groups, resources, names)
    }

    fn secrets(verb: &str) -> ResourceRequest<'_> {
        ResourceRequest::new(verb, "", "secrets")
    }

    #[test]
    fn table() {
        // (rule, request, allowed, why)
        let cases: Vec<(PolicyRule, ResourceRequest, bool, &str)> = vec![
            (
                rule(&["get"], &[""], &["secrets"], &[]),
                secrets("get"),
                true,
                "exact",
            ),
            (
                rule(&["*"], &[""], &["secrets"], &[]),
                secrets("delete"),
                true,
                "verb wildcard",
            ),
            (
                rule(&["get"], &["*"], &["secrets"], &[]),
                secrets("get"),
                true,
                "group wildcard",
            ),
            (
                rule(&["get"], &[""], &["*"], &[]),
                secrets("get"),
                true,
                "resource wildcard",
            ),
            (
                rule(&["get"], &["apps"], &["secrets"], &[]),
                secrets("get"),
                false,
                "wrong group",
            ),
            (
                rule(&["get"], &[], &["secrets"], &[]),
                secrets("get"),
                false,
                "no group",
            ),
            (
                rule(&["get"], &[""], &["Secrets"], &[]),
                secrets("get"),
                false,
                "case",
            ),
            (
                rule(&["GET"], &[""], &["secrets"], &[]),
                secrets("get"),
                false,
                "verb case",
            ),
            (
                rule(&["get"], &[""], &["secret"], &[]),
                secrets("get"),
                false,
                "singular",
            ),
            (
                rule(&["get"], &[""], &["secrets/*"], &[]),
                secrets("get"),
                false,
                "secrets/* literal",
            ),
            (
                rule(&["get"], &[""], &["*/*"], &[]),
                secrets("get"),
                false,
                "*/* needs subresource",
            ),
            (
                rule(&["get"], &[""], &["secrets/status"], &[]),
                secrets("get"),
                false,
                "subresource",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &[]),
                secrets("get").subresource("status"),
                false,
                "resource is not its subresource",
            ),
            (
                rule(&["get"], &[""], &["secrets/status"], &[]),
                secrets("get").subresource("status"),
                true,
                "exact subresource",
            ),
            (
                rule(&["get"], &[""], &["*/status"], &[]),
                secrets("get").subresource("status"),
                true,
                "*/subresource",
            ),
            (
                rule(&["get"], &[""], &["*/status"], &[]),
                secrets("get").subresource("statusx"),
                false,
                "*/sub exact length",
            ),
            (
                rule(&["get"], &[""], &["*/tatus"], &[]),
                secrets("get").subresource("status"),
                false,
                "*/sub not suffix",
            ),
            (
                rule(&["get"], &[""], &["*"], &[]),
                secrets("get").subresource("status"),
                true,
                "* covers subresources",
            ),
            (
                rule(&["create"], &[""], &["pods/exec"], &[]),
                ResourceRequest::new("create", "", "pods").subresource("exec"),
                true,
                "pods/exec",
            ),
            (
                rule(&["get"], &[""], &["podsx/exec"], &[]),
                ResourceRequest::new("get", "", "pods").subresource("exec"),
                false,
                "prefix only",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &["a"]),
                secrets("get").named("a"),
                true,
                "named",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &["a"]),
                secrets("get").named("b"),
                false,
                "other name",
            ),
            (
                rule(&["list"], &[""], &["secrets"], &["a"]),
                secrets("list"),
                false,
                "named list without name",
            ),
            (
                rule(&["get"], &[""], &["secrets"], &[]),
                secrets("get").named("z"),
                true,
                "no names = all",
            ),
        ];
        for (r, req, want, why) in cases {
            assert_eq!(rule_allows(&r, &req), want, "{why}: {r} vs {req:?}");
        }
    }

    #[test]
    fn non_resource_urls() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/api/*".into(), "/logs**".into()],
            ..Default::default()
        };
        assert!(rule_allows_non_resource(&r, "get", "/healthz"));
        assert!(!rule_allows_non_resource(&r, "get", "/healthz/etcd"));
        assert!(rule_allows_non_resource(&r, "get", "/api/v1"));
        assert!(rule_allows_non_resource(&r, "get", "/api/"));
        assert!(!rule_allows_non_resource(&r, "get", "/api"));
        assert!(
            rule_allows_non_resource(&r, "get", "/logs/x"),
            "all trailing * trimmed"
        );
        assert!(!rule_allows_non_resource(&r, "post", "/healthz"));
        // A resource rule never allows a non-resource request and vice versa.
        let res = rule(&["get"], &["*"], &["*"], &[]);
        assert!(!rule_allows_non_resource(&res, "get", "/healthz"));
    }

    #[test]
    fn name_coverage_of_collection_verbs() {
        let named = rule(&["*"], &[""], &["secrets"], &["a"]);
        assert_eq!(name_coverage(&named, &secrets("get")), NameCoverage::Named);
        assert_eq!(name_coverage(&named, &secrets("list")), NameCoverage::Named);
        // A PUT or apply that creates "a" is a create named "a".
        assert_eq!(
            name_coverage(&named, &secrets("create")),
            NameCoverage::Named
        );
        assert_eq!(
            name_coverage(&named, &secrets("deletecollection")),
            NameCoverage::None
        );
        // `[""]` is the name of every request without one.
        let empty = rule(&["*"], &[""], &["secrets"], &[""]);
        for verb in ["list", "watch", "create", "deletecollection"] {
            assert_eq!(
                name_coverage(&empty, &secrets(verb)),
                NameCoverage::All,
                "{verb}"
            );
        }
        for verb in ["get", "update", "patch", "delete"] {
            assert_eq!(
                name_coverage(&empty, &secrets(verb)),
                NameCoverage::None,
                "{verb}"
            );
        }
        let both = rule(&["*"], &[""], &["secrets"], &["", "a"]);
        assert_eq!(name_coverage(&both, &secrets("get")), NameCoverage::Named);
        assert_eq!(name_coverage(&both, &secrets("list")), NameCoverage::All);
        let all = rule(&["*"], &[""], &["secrets"], &[]);
        assert_eq!(name_coverage(&all, &secrets("create")), NameCoverage::All);
    }

    /// Short strings over the wildcard, a slash, both cases, and 2-, 3- and 4-byte characters.
    const ALPHABET: &str = "[*/sSé€𝄞]{0,4}";

    /// `s`, or `s` with one character replaced, inserted or removed: the near misses a byte
    /// comparison must still tell apart.
    fn near(s: String) -> impl Strategy<Value = String> {
        let n = s.chars().count();
        let c = proptest::sample::select(vec!['s', 'S', '/', '*', 'é', '€', '𝄞']);
        (0..=n, 0..4u8, c).prop_map(move |(i, op, c)| {
            let mut v: Vec<char> = s.chars().collect();
            match op {
                1 if i < v.len() => v[i] = c,
                2 => v.insert(i, c),
                3 if i < v.len() => {
                    v.remove(i);
                }
                _ => {}
            }
            v.into_iter().collect()
        })
    }

    /// A request's resource and subresource, and a rule resource built to (nearly) match them.
    fn resource_case() -> impl Strategy<Value = (String, String, String)> {
        (ALPHABET, ALPHABET).prop_flat_map(|(a, b)| {
            let shapes = vec![
                "*".to_string(),
                a.clone(),
                format!("{a}/{b}"),
                format!("*/{b}"),
                format!("{a}{b}"),
                format!("{a}/"),
            ];
            let r = proptest::sample::select(shapes).prop_flat_map(near);
            (Just(a), Just(b), r)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// `same` is `==`, and `resource_matches` is the authorizer's reading spelled in plain
        /// string equality, on rule resources built to match the request or to miss it by one
        /// character.
        #[test]
        fn resources_match_by_plain_string_equality((a, b, r) in resource_case()) {
            prop_assert_eq!(same(&a, &r), a == r);
            let rule = PolicyRule::of(&["get"], &[""], &[r.as_str()], &[]);
            let reference = r == "*"
                || (b.is_empty() && r == a)
                || (!b.is_empty() && (r == format!("{a}/{b}") || r == format!("*/{b}")));
            prop_assert_eq!(resource_matches(&rule, &a, &b), reference);
        }

        /// Verbs, groups and names: a request value equal to, or one character off, a rule's.
        #[test]
        fn verbs_groups_and_names_match_by_plain_string_equality(
            (x, y, q) in (ALPHABET, ALPHABET)
                .prop_flat_map(|(x, y)| (Just(x.clone()), Just(y), near(x)))
        ) {
            let listed = [x.as_str(), y.as_str()];
            let rule = PolicyRule::of(&listed, &listed, &["pods"], &listed);
            let granted = listed.iter().any(|v| *v == "*" || *v == q);
            prop_assert_eq!(verb_matches(&rule, &q), granted);
            prop_assert_eq!(api_group_matches(&rule, &q), granted);
            prop_assert_eq!(resource_name_matches(&rule, &q), listed.contains(&q.as_str()));
        }
    }
}
