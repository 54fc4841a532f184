//! `POST /validate`: judges CREATE and UPDATE of RBAC objects and applies the policy's mode.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::policy::{Mode, Policy};
use crate::rbac::{
    evaluate, AnyRbacObject, BindingScope, EvalOptions, Finding, RbacKind, RbacObject, Route,
    Scope, Severity, RBAC_GROUP,
};

use super::review::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, ReviewError, UserInfo,
    MAX_MESSAGE, MAX_WARNING, MAX_WARNINGS,
};
use super::StateSource;

/// The decision and what it was based on, for logs and metrics.
#[derive(Debug)]
pub struct Verdict {
    pub response: AdmissionResponse,
    pub kind: Option<RbacKind>,
    pub operation: Operation,
    pub findings: Vec<Finding>,
    /// A ClusterRoleBinding's ClusterRole that the state does not hold: worth a live lookup.
    pub missing_role: Option<String>,
    /// A ClusterRole with Secrets access that was admitted only because no binding of it is in
    /// the state: worth confirming against a live list of bindings.
    pub rests_on_no_bindings: bool,
    /// A Role/RoleBinding using the managed role's name in a namespace whose name does not make
    /// it a tenancy namespace: admitted only if the namespace carries the tenancy label.
    pub needs_tenancy_label: Option<crate::tenancy::ManagedNameUse>,
    /// Judging it would take more work than the engine allows one object: denied (enforce).
    pub over_budget: bool,
}

impl Verdict {
    /// Whether the cache alone could not settle it (see the fields above): the caller asks the
    /// API server before answering.
    pub fn needs_live_confirmation(&self) -> bool {
        self.missing_role.is_some()
            || self.rests_on_no_bindings
            || self.needs_tenancy_label.is_some()
    }
}

pub struct Validator {
    policy: Arc<Policy>,
    /// The policy's options as admission judges with them.
    synced: EvalOptions,
    /// The same with strict scope: used while the state is not synced (fail closed).
    unsynced: EvalOptions,
    /// Both with the small work budget of a quick review (`review_quick`).
    quick_synced: EvalOptions,
    quick_unsynced: EvalOptions,
    state: Arc<dyn StateSource>,
}

/// Aggregation steps a quick review may take: real reviews take a few dozen (a chain of 8,000
/// aggregating roles about 16,000, in 17 ms), and this many cost about 2 ms at most, so a quick
/// review can run where waiting is costly (an async worker) without holding it.
pub const QUICK_WORK_LIMIT: u64 = 2_000;

impl Validator {
    pub fn new(policy: Arc<Policy>, state: Arc<dyn StateSource>) -> Self {
        // Responses carry messages only; per-verb name lists would copy every name per verb.
        let synced = EvalOptions {
            name_details: false,
            ..policy.eval.clone()
        };
        let unsynced = EvalOptions {
            scope: BindingScope::Strict,
            ..synced.clone()
        };
        let quick = |o: &EvalOptions| EvalOptions {
            work_limit: QUICK_WORK_LIMIT.min(o.work_limit),
            ..o.clone()
        };
        Self {
            policy,
            quick_synced: quick(&synced),
            quick_unsynced: quick(&unsynced),
            synced,
            unsynced,
            state,
        }
    }

    pub fn mode(&self) -> Mode {
        self.policy.mode
    }

    /// Decodes a request body and decides it. `Err` only for bodies that are not a usable
    /// AdmissionReview (HTTP 400); everything else, bad objects included, gets a response.
    pub fn review(&self, body: &[u8]) -> Result<Verdict, ReviewError> {
        self.read_and_decide(body, Vec::new(), false)
    }

    /// `review` within `QUICK_WORK_LIMIT` steps: `None` when judging needs more (the caller then
    /// reviews it with the full budget, where a deadline can cut it short).
    pub fn review_quick(&self, body: &[u8]) -> Result<Option<Verdict>, ReviewError> {
        let verdict = self.read_and_decide(body, Vec::new(), true)?;
        Ok((!verdict.over_budget).then_some(verdict))
    }

    /// Reviews `body` again with `live` objects (read from the API server after a cache miss)
    /// added to the state. Clones the state, which is fine for this rare path.
    pub fn review_with(&self, body: &[u8], live: Vec<RbacObject>) -> Result<Verdict, ReviewError> {
        self.read_and_decide(body, live, false)
    }

    /// Reads the body once, the object decoded in the envelope's own pass; a body that pass
    /// cannot take (a malformed object, a binding without roleRef, not an envelope at all) is
    /// read again with the object kept raw, so the answer says exactly what is wrong.
    fn read_and_decide(
        &self,
        body: &[u8],
        live: Vec<RbacObject>,
        quick: bool,
    ) -> Result<Verdict, ReviewError> {
        if let Ok(mut req) = AdmissionReview::<AnyRbacObject>::parse(body) {
            match (req.object.take(), RbacKind::from_kind(&req.kind.kind)) {
                (Some(object), Some(kind)) => {
                    if let Some(new) = object.into_kind(kind) {
                        return Ok(self.decide(req.with_object(Some(new)), live, quick));
                    }
                }
                // No object, or not an RBAC kind: judged (or refused) by the envelope alone.
                _ => return Ok(self.decide(req.with_object(None::<RbacObject>), live, quick)),
            }
        }
        let req: AdmissionRequest<'_> = AdmissionReview::parse(body)?;
        Ok(self.decide(req, live, quick))
    }

    /// Denies (in enforce mode) a review whose verdict could not be confirmed live: fail closed.
    pub fn deny_unconfirmed(&self, verdict: &mut Verdict, message: String) {
        if self.policy.mode != Mode::Enforce {
            let message = crate::rbac::text::clip(&message, MAX_WARNING).into_owned();
            verdict.response.warnings.push(message);
            return;
        }
        let uid = verdict.response.uid.clone();
        verdict.response = AdmissionResponse::deny(&uid, 403, message);
    }

    /// Settles a managed-name use once the namespace's labels are known (`None`: unknown).
    pub fn judge_managed_name_use(
        &self,
        verdict: &mut Verdict,
        labels: Result<Option<std::collections::BTreeMap<String, String>>, String>,
    ) {
        let Some(usage) = verdict.needs_tenancy_label.take() else {
            return;
        };
        let why = match labels {
            Ok(Some(labels)) if self.policy.tenant_of(&usage.namespace, &labels).is_some() => {
                return
            }
            Ok(Some(_)) => "this namespace is not one".to_string(),
            Ok(None) => "the namespace does not exist".to_string(),
            Err(e) => format!("whether this namespace is one could not be confirmed ({e})"),
        };
        self.deny_unconfirmed(verdict, usage.denial(&self.policy, &why));
    }

    /// Denies a binding whose ClusterRole does not exist or cannot be read (fail closed): a
    /// binding is judged by its role, and a role created later could not be judged against a
    /// binding the cache has not seen yet.
    pub fn deny_missing_role(&self, verdict: &mut Verdict, role: &str, why: &str) {
        self.deny_unconfirmed(
            verdict,
            format!(
                "secretscope: ClusterRole \"{role}\" {why}; create the ClusterRole before binding it, so the binding can be judged by what it grants"
            ),
        );
    }

    fn decide<O: NewObject>(
        &self,
        req: AdmissionRequest<'_, O>,
        live: Vec<RbacObject>,
        quick: bool,
    ) -> Verdict {
        let uid = req.uid.as_ref();
        let mut verdict = Verdict {
            response: AdmissionResponse::allow(uid),
            kind: None,
            operation: req.operation,
            findings: Vec::new(),
            missing_role: None,
            rests_on_no_bindings: false,
            needs_tenancy_label: None,
            over_budget: false,
        };
        let kind = RbacKind::from_kind(&req.kind.kind).filter(|_| req.kind.group == RBAC_GROUP);
        let Some(kind) = kind else {
            // Fail closed: a webhook configuration that sends us other kinds is a mistake to see.
            verdict.response = AdmissionResponse::deny(
                uid,
                400,
                format!(
                    "secretscope: /validate judges rbac.authorization.k8s.io ClusterRole, ClusterRoleBinding, Role and RoleBinding, not {}",
                    crate::rbac::text::clip(
                        &format!("{}/{} {}", req.kind.group, req.kind.version, req.kind.kind),
                        256
                    )
                ),
            );
            return verdict;
        };
        verdict.kind = Some(kind);
        if matches!(req.operation, Operation::Delete | Operation::Connect) {
            return verdict;
        }
        let new = match O::rbac(req.object, kind) {
            Ok(o) => o,
            Err(message) => {
                verdict.response = AdmissionResponse::deny(uid, 400, message);
                return verdict;
            }
        };
        let mut state = self.state.snapshot();
        if !live.is_empty() {
            Arc::make_mut(&mut state).extend(live);
        }
        let opts = match (self.state.synced(), quick) {
            (true, false) => &self.synced,
            (false, false) => &self.unsynced,
            (true, true) => &self.quick_synced,
            (false, true) => &self.quick_unsynced,
        };
        let findings = match evaluate(&new, &state, opts) {
            Ok(findings) => findings,
            Err(e) => {
                verdict.over_budget = true;
                self.deny_unconfirmed(
                    &mut verdict,
                    format!(
                        "secretscope: {} was not judged and is denied (fail closed): {e}; the aggregation rules and labels around it select far more than any real cluster needs",
                        new.object_ref()
                    ),
                );
                return verdict;
            }
        };
        let denials: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity == Severity::Deny)
            .collect();
        let warnings: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.severity == Severity::Warn)
            .collect();

        // An UPDATE of an object that was already unsafe says so: the fix is to the object, not
        // to whatever this update changed.
        let mut before = String::new();
        if !denials.is_empty() && req.operation == Operation::Update {
            // What the stored object itself held: an aggregated role's own rules are the
            // controller's last write, so aggregation is not resolved again for it (a role that
            // gains a child's rules never granted them before).
            if let Ok(old) = decode(kind, req.old_object).map(stored_grant) {
                let old_findings = match evaluate(&old, &state, opts) {
                    Ok(f) => f,
                    // A quick review must not settle for less: the full review decides.
                    Err(_) if quick => {
                        verdict.over_budget = true;
                        return verdict;
                    }
                    Err(_) => Vec::new(),
                };
                let old_denials: Vec<Finding> = old_findings
                    .into_iter()
                    .filter(|f| f.severity == Severity::Deny)
                    .collect();
                if !old_denials.is_empty() {
                    let verbs: Vec<String> =
                        old_denials.iter().flat_map(|f| f.verbs.clone()).collect();
                    before = format!(
                        " (it already granted this before the update: verbs {}; remove the grant rather than retrying)",
                        dedup_join(verbs)
                    );
                }
            }
        }

        match self.policy.mode {
            Mode::Enforce if !denials.is_empty() => {
                let message = summarize(denials.iter().map(|f| f.message.as_str()));
                verdict.response = AdmissionResponse::deny(uid, 403, message + &before);
                verdict
                    .response
                    .set_warnings(warnings.iter().map(|f| f.message.as_str()));
            }
            Mode::Enforce | Mode::Warn => {
                let all: Vec<&str> = denials
                    .iter()
                    .chain(warnings.iter())
                    .map(|f| f.message.as_str())
                    .collect();
                verdict.response.set_warnings(all.into_iter());
            }
            Mode::Audit => {}
        }
        if let RbacObject::ClusterRoleBinding(crb) = &new {
            if findings.iter().any(|f| f.scope == Scope::Unknown) {
                verdict.missing_role = Some(crb.role_ref.name.clone());
            }
        }
        // A tenancy namespace by name needs no lookup; by label, the server reads its labels.
        verdict.needs_tenancy_label =
            crate::tenancy::managed_name_use(&self.policy, &new).filter(|u| {
                self.policy
                    .tenant_of(&u.namespace, &Default::default())
                    .is_none()
            });
        verdict.rests_on_no_bindings = matches!(new, RbacObject::ClusterRole(_))
            && findings
                .iter()
                .any(|f| f.route == Route::Secrets && f.scope == Scope::Unbound);
        verdict.findings = findings;
        verdict
    }
}

/// A request's new object as the engine takes it: read from raw JSON, or already decoded.
trait NewObject: Sized {
    fn rbac(object: Option<Self>, kind: RbacKind) -> Result<RbacObject, String>;
}

impl NewObject for &RawValue {
    fn rbac(object: Option<Self>, kind: RbacKind) -> Result<RbacObject, String> {
        decode(kind, object)
    }
}

impl NewObject for RbacObject {
    fn rbac(object: Option<Self>, kind: RbacKind) -> Result<RbacObject, String> {
        object.ok_or_else(|| no_object(kind))
    }
}

fn no_object(kind: RbacKind) -> String {
    format!("secretscope: the request carries no {kind} object")
}

fn decode(kind: RbacKind, raw: Option<&RawValue>) -> Result<RbacObject, String> {
    let raw = raw.ok_or_else(|| no_object(kind))?;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    RbacObject::decode(kind, &mut de).map_err(|e| format!("secretscope: cannot decode {kind}: {e}"))
}

/// The denial: whole messages joined while they fit in half the response's message budget
/// (the rest is left for what follows), then a count of the others.
fn summarize<'m>(messages: impl ExactSizeIterator<Item = &'m str>) -> String {
    let total = messages.len();
    let mut out = String::new();
    let mut shown = 0;
    for m in messages {
        let m = crate::rbac::text::clip(m, MAX_WARNING * 2);
        if shown > 0 && out.len() + m.len() > MAX_MESSAGE / 2 {
            break;
        }
        if shown > 0 {
            out.push_str("; ");
        }
        out.push_str(&m);
        shown += 1;
    }
    if shown < total {
        out.push_str(&format!("; and {} more findings", total - shown));
    }
    out
}

fn stored_grant(object: RbacObject) -> RbacObject {
    match object {
        RbacObject::ClusterRole(mut cr) => {
            cr.aggregation_rule = None;
            RbacObject::ClusterRole(cr)
        }
        other => other,
    }
}

fn dedup_join(mut v: Vec<String>) -> String {
    v.sort();
    v.dedup();
    v.join(", ")
}

/// Who asked for what, for a decision's log line. Read again from the body only when a line is
/// written: the allowed-without-findings path (debug) pays nothing at the default level.
#[derive(Debug, Default, Deserialize)]
struct Asked<'a> {
    #[serde(borrow, default)]
    request: Option<AskedRequest<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AskedRequest<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_info: UserInfo<'a>,
}

impl<'a> AskedRequest<'a> {
    fn peek(body: &'a [u8]) -> Self {
        serde_json::from_slice::<Asked<'a>>(body)
            .ok()
            .and_then(|a| a.request)
            .unwrap_or_default()
    }
}

/// Names and user names are bounded by the API server, but a log line is bounded here too.
const MAX_LOGGED_NAME: usize = 256;

fn logged<'a>(s: Option<&'a Cow<'_, str>>) -> Cow<'a, str> {
    crate::rbac::text::clip(s.map_or("", |s| s.as_ref()), MAX_LOGGED_NAME)
}

impl Verdict {
    /// One line per decision that matters; allowed reviews without findings stay at debug. Each
    /// line carries the decision fields (uid, user, namespace, name, kind, operation, verdict,
    /// mode); `body` is the review the verdict answers, read for the user and object only when a
    /// line is written. RBAC objects hold no Secret data, but only names and verdicts are logged.
    pub fn log(&self, mode: Mode, body: &[u8]) {
        let denied = !self.response.allowed;
        let relevant = self.findings.iter().filter(|f| f.severity > Severity::Info);
        let level_enabled = if denied || relevant.clone().next().is_some() {
            tracing::enabled!(tracing::Level::INFO)
        } else {
            tracing::enabled!(tracing::Level::DEBUG)
        };
        if !level_enabled {
            return;
        }
        let asked = AskedRequest::peek(body);
        let user = crate::rbac::text::clip(&asked.user_info.username, MAX_LOGGED_NAME);
        let user = user.as_ref();
        let namespace = logged(asked.namespace.as_ref());
        let namespace = namespace.as_ref();
        let name = logged(asked.name.as_ref());
        let name = name.as_ref();
        let kind = self.kind.map(|k| k.as_str()).unwrap_or("unknown");
        let operation = self.operation.as_str();
        let uid = self.response.uid.as_str();
        let audit = mode == Mode::Audit;
        let mode = mode.as_str();
        if denied {
            let message = self
                .response
                .status
                .as_ref()
                .map(|s| s.message.as_str())
                .unwrap_or("");
            tracing::info!(
                uid,
                user,
                namespace,
                name,
                kind,
                operation,
                mode,
                verdict = "denied",
                message
            );
            return;
        }
        let verdict = if audit { "audited" } else { "warned" };
        let count = relevant.clone().count();
        for f in relevant.take(MAX_WARNINGS) {
            let message = crate::rbac::text::clip(&f.message, MAX_WARNING);
            tracing::info!(
                uid,
                user,
                namespace,
                name,
                kind,
                operation,
                mode,
                verdict,
                severity = %f.severity,
                message = message.as_ref()
            );
        }
        if count == 0 {
            tracing::debug!(
                uid,
                user,
                namespace,
                name,
                kind,
                operation,
                mode,
                verdict = "allowed"
            );
        } else if count > MAX_WARNINGS {
            tracing::info!(
                uid,
                user,
                namespace,
                name,
                kind,
                operation,
                verdict,
                more = count - MAX_WARNINGS,
                "more findings not logged"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::StaticState;
    use crate::rbac::ClusterState;
    use proptest::prelude::*;

    fn validator() -> Validator {
        let state = Arc::new(StaticState(Arc::new(ClusterState::with_builtins())));
        Validator::new(Arc::new(Policy::default()), state)
    }

    /// The review as it was judged before the object was decoded in the envelope's pass: the
    /// envelope read with the object raw, the object decoded again.
    fn two_pass(v: &Validator, body: &[u8]) -> Result<AdmissionResponse, String> {
        AdmissionReview::<&RawValue>::parse(body)
            .map(|req| v.decide(req, Vec::new(), false).response)
            .map_err(|e| e.to_string())
    }

    fn one_pass(v: &Validator, body: &[u8]) -> Result<AdmissionResponse, String> {
        v.review(body)
            .map(|v| v.response)
            .map_err(|e| e.to_string())
    }

    const REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"ClusterRoleBinding"},"operation":"CREATE","object":{"metadata":{"name":"x","labels":{"a":"b"}},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"bob"}]}}}"#;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes: an error or a response, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = validator().review(&body);
        }

        /// A real review with one byte changed, cut short, or a field replaced by another JSON
        /// type: still an error or a response, and a response always echoes the uid.
        #[test]
        fn mutated_reviews_never_panic(at in 0..REVIEW.len(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut body = REVIEW.as_bytes().to_vec();
            if cut { body.truncate(at) } else { body[at] = byte }
            let v = validator();
            if let Ok(v) = v.review(&body) {
                prop_assert!(!v.response.uid.is_empty() || body.windows(8).any(|w| w == b"\"uid\":\"\""));
            }
            // Read once or twice, the same answer, errors included.
            prop_assert_eq!(one_pass(&v, &body), two_pass(&v, &body));
        }

        #[test]
        fn wrong_json_types_are_denied_not_panicked(
            field in proptest::sample::select(&["roleRef", "subjects", "metadata", "labels", "name", "kind"][..]),
            replacement in proptest::sample::select(&["null", "1", "true", "[]", "{}", "\"s\"", "[[[]]]"][..]),
        ) {
            let body = REVIEW.replacen(&format!("\"{field}\":"), &format!("\"{field}\":{replacement},\"_{field}\":"), 1);
            let v = validator();
            if let Ok(v) = v.review(body.as_bytes()) {
                prop_assert_eq!(v.response.uid.as_str(), "u");
            }
            prop_assert_eq!(one_pass(&v, body.as_bytes()), two_pass(&v, body.as_bytes()));
        }

        /// Any RBAC kind's fields on any kind, null or of a wrong type: the one-pass read (all
        /// four kinds' fields at once) answers as reading the kind itself does.
        #[test]
        fn one_pass_decodes_as_the_kind_itself(
            kind in proptest::sample::select(&["ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"][..]),
            field in proptest::sample::select(&["rules", "aggregationRule", "roleRef", "subjects", "metadata"][..]),
            value in proptest::sample::select(&[
                "null", "1", "[]", "{}", "\"s\"",
                r#"[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}]"#,
                r#"{"clusterRoleSelectors":[{"matchLabels":{"a":"b"}}]}"#,
                r#"{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}"#,
                r#"[{"kind":"User","name":"bob"}]"#,
            ][..]),
        ) {
            let body = format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"rbac.authorization.k8s.io","version":"v1","kind":"{kind}"}},"namespace":"ns","operation":"CREATE","object":{{"metadata":{{"name":"x","namespace":"ns"}},"{field}":{value}}}}}}}"#
            );
            let v = validator();
            prop_assert_eq!(one_pass(&v, body.as_bytes()), two_pass(&v, body.as_bytes()));
        }
    }

    /// Every RBAC object of the corpus, created and updated: the same answer read once or twice.
    #[test]
    fn one_pass_answers_the_corpus_as_two_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/rbac");
        // The documents as written (every field, managedFields and all), and as the engine reads them.
        let mut objects: Vec<(serde_json::Value, RbacObject)> = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("../shared/corpus/rbac") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).expect("read");
                for (_, chunk) in crate::manifest::yaml_documents(&text) {
                    let docs = serde_saphyr::from_multiple_with_options::<serde_json::Value>(
                        chunk,
                        crate::manifest::yaml_options(),
                    )
                    .unwrap_or_default();
                    for doc in docs {
                        if let Ok(Some(object)) = RbacObject::from_value(&doc) {
                            objects.push((doc, object));
                        }
                    }
                }
            }
        }
        assert!(objects.len() > 400, "{} objects", objects.len());
        let mut state = ClusterState::with_builtins();
        state.extend(objects.iter().map(|(_, o)| o.clone()));
        let v = Validator::new(
            Arc::new(Policy::default()),
            Arc::new(StaticState(Arc::new(state))),
        );
        let mut denied = 0;
        for (json, object) in &objects {
            for (operation, old) in [
                ("CREATE", serde_json::Value::Null),
                ("UPDATE", json.clone()),
            ] {
                let body = serde_json::json!({
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": {"uid": "u", "operation": operation, "name": object.metadata().name,
                        "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": object.kind().as_str()},
                        "object": json, "oldObject": old}
                })
                .to_string();
                let once = one_pass(&v, body.as_bytes());
                denied += usize::from(once.as_ref().is_ok_and(|r| !r.allowed));
                assert_eq!(
                    once,
                    two_pass(&v, body.as_bytes()),
                    "{}",
                    object.object_ref()
                );
            }
        }
        assert!(denied > 0);
    }

    /// A quick review decides exactly as a full one, and one that needs more than its budget
    /// (a role joining a chain of 8,000 aggregating roles) is handed back, not denied: the full
    /// review judges it.
    #[test]
    fn quick_reviews_decide_as_full_ones_or_hand_back() {
        let mut yaml = String::from(
            "kind: ClusterRoleBinding\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {name: top}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: c0}\nsubjects: [{kind: User, name: bob}]\n",
        );
        for i in 0..8_000 {
            yaml.push_str(&format!(
                "---\nkind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata: {{name: c{i}, labels: {{chain: \"{i}\"}}}}\naggregationRule: {{clusterRoleSelectors: [{{matchLabels: {{chain: \"{}\"}}}}]}}\n",
                i + 1
            ));
        }
        let mut state = ClusterState::with_builtins();
        state.extend(
            crate::manifest::parse_stream(&yaml, "chain.yaml", false)
                .objects
                .into_iter()
                .map(|o| o.object),
        );
        let v = Validator::new(
            Arc::new(Policy::default()),
            Arc::new(StaticState(Arc::new(state))),
        );
        let role = |labels: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u", "operation": "CREATE",
                    "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "ClusterRole"},
                    "object": {"metadata": {"name": "leaf", "labels": labels},
                        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}}
            })
            .to_string()
        };
        // Unconnected: decided quickly, as the full review decides it.
        let alone = role(serde_json::json!({"app": "x"}));
        let quick = v.review_quick(alone.as_bytes()).unwrap().expect("quick");
        let full = v.review(alone.as_bytes()).unwrap();
        assert_eq!(quick.response, full.response);
        // At the end of the chain: over the quick budget, handed back; the full review denies it
        // for what it grants bob through the chain, not for the work.
        let deep = role(serde_json::json!({"chain": "8000"}));
        assert!(v.review_quick(deep.as_bytes()).unwrap().is_none());
        let full = v.review(deep.as_bytes()).unwrap();
        assert!(!full.over_budget);
        let message = &full.response.status.as_ref().expect("denied").message;
        assert!(message.contains("User \"bob\""), "{message}");
        // Cluster-admin binding: decided quickly and denied.
        let quick = v.review_quick(REVIEW.as_bytes()).unwrap().expect("quick");
        assert!(!quick.response.allowed);
    }

    /// Issue 9 bug 5: kube-controller-manager's aggregation controller writes a child's Secrets
    /// rule into a bound aggregated role. The stored role never held it, so the denial must not
    /// say it did, and it names the fix: the child.
    #[test]
    fn an_aggregation_update_names_the_child_not_a_previous_grant() {
        let yaml = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: extra, labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: everyone-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: User, name: bob}]
"#;
        let mut state = ClusterState::with_builtins();
        state.extend(
            crate::manifest::parse_stream(yaml, "s.yaml", false)
                .objects
                .into_iter()
                .map(|o| o.object),
        );
        let view = state.cluster_role("view").cloned().expect("view");
        let mut new = view.clone();
        new.rules.push(crate::rbac::PolicyRule::of(
            &["get"],
            &[""],
            &["secrets"],
            &[],
        ));
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "operation": "UPDATE",
                "kind": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "ClusterRole"},
                "object": new, "oldObject": view}
        });
        let v = Validator::new(
            Arc::new(Policy::default()),
            Arc::new(StaticState(Arc::new(state))),
        );
        let verdict = v
            .review(serde_json::to_string(&review).unwrap().as_bytes())
            .unwrap();
        let message = &verdict.response.status.as_ref().expect("denied").message;
        assert!(!message.contains("already granted"), "{message}");
        assert!(
            message.contains(r#"the rules come from "extra" through aggregation"#),
            "{message}"
        );
    }

    #[test]
    fn the_unmutated_review_is_denied() {
        let v = validator().review(REVIEW.as_bytes()).unwrap();
        assert!(!v.response.allowed);
    }
}
