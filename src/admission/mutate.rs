//! `POST /mutate`: labels new tenancy namespaces (`secretscope.io/tenant=<tenant>`) with a JSON
//! patch. Everything else is admitted untouched: this webhook enforces nothing, and the reconciler
//! recognises tenancy namespaces by name too, so a missed label is never a missed bootstrap.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Deserialize;
use serde_json::Value;

use crate::policy::{is_label_value, Policy};

use super::review::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation, ReviewError};

#[derive(Debug, Default, Deserialize)]
struct NamespaceMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct Namespace {
    #[serde(default)]
    metadata: NamespaceMeta,
}

/// What `/mutate` decided, for logs and metrics.
#[derive(Debug)]
pub struct Mutation {
    pub response: AdmissionResponse,
    pub namespace: String,
    /// The tenant the namespace was labelled for, when a patch was returned.
    pub tenant: Option<String>,
    /// A tenancy namespace, labelled now or already carrying the label: the reconciler's business.
    pub tenancy: bool,
    pub dry_run: bool,
}

pub struct Mutator {
    policy: Arc<Policy>,
}

impl Mutator {
    pub fn new(policy: Arc<Policy>) -> Self {
        Self { policy }
    }

    pub fn review(&self, body: &[u8]) -> Result<Mutation, ReviewError> {
        let req: AdmissionRequest<'_> = AdmissionReview::parse(body)?;
        let uid = req.uid.as_ref();
        let mut out = Mutation {
            response: AdmissionResponse::allow(uid),
            namespace: String::new(),
            tenant: None,
            tenancy: false,
            dry_run: req.dry_run.unwrap_or(false),
        };
        let is_namespace = req.kind.group.is_empty() && req.kind.kind == "Namespace";
        let (true, Operation::Create, Some(raw)) = (is_namespace, req.operation, req.object) else {
            return Ok(out);
        };
        let Ok(ns) = serde_json::from_str::<Namespace>(raw.get()) else {
            return Ok(out);
        };
        out.namespace = ns.metadata.name.clone();
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        let Some(tenant) = self.policy.tenant_of(&ns.metadata.name, &labels) else {
            return Ok(out);
        };
        out.tenancy = true;
        if !tenant.needs_label {
            return Ok(out);
        }
        if !is_label_value(&tenant.name) {
            out.response.warnings.push(format!(
                "secretscope: tenant {:?} of namespace {:?} is not a valid label value; the namespace is not labelled",
                crate::rbac::text::clip(&tenant.name, 253),
                crate::rbac::text::clip(&ns.metadata.name, 253)
            ));
            return Ok(out);
        }
        let patch = label_patch(
            ns.metadata.labels.is_some(),
            &self.policy.file.tenancy.label,
            &tenant.name,
        );
        // Serialising a patch of strings cannot fail.
        let json = serde_json::to_vec(&patch).unwrap_or_default();
        out.response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        out.response.patch_type = Some("JSONPatch");
        out.tenant = Some(tenant.name);
        Ok(out)
    }
}

/// `add /metadata/labels/<key>`, or `add /metadata/labels {key: value}` when there is no labels
/// map yet (adding a member under a missing parent is an error in RFC 6902).
fn label_patch(has_labels: bool, key: &str, value: &str) -> Patch {
    let op = if has_labels {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels", key]),
            value: Value::String(value.to_string()),
        }
    } else {
        AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels"]),
            value: serde_json::json!({ key: value }),
        }
    };
    Patch(vec![PatchOperation::Add(op)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(op: &str, ns: Value, dry_run: bool) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
                        "resource": {"group": "", "version": "v1", "resource": "namespaces"},
                        "name": ns["metadata"]["name"], "operation": op, "userInfo": {"username": "admin"},
                        "object": ns, "dryRun": dry_run}}))
        .unwrap()
    }

    /// Applies the returned patch to the namespace, as the API server would.
    fn patched(m: &Mutation, mut ns: Value) -> Value {
        let b64 = m.response.patch.as_ref().expect("a patch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let patch: Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut ns, &patch).unwrap();
        ns
    }

    fn mutator() -> Mutator {
        Mutator::new(Arc::new(Policy::default()))
    }

    #[test]
    fn a_tenancy_namespace_gets_the_label_and_keeps_its_own() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "az-acme", "labels": {"team": "a"}}});
        let m = mutator()
            .review(&request("CREATE", ns.clone(), false))
            .unwrap();
        assert!(m.response.allowed);
        assert_eq!(m.response.patch_type, Some("JSONPatch"));
        assert_eq!(m.tenant.as_deref(), Some("acme"));
        let after = patched(&m, ns);
        assert_eq!(
            after["metadata"]["labels"],
            json!({"team": "a", "secretscope.io/tenant": "acme"})
        );

        let bare =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "az-globex"}});
        let m = mutator()
            .review(&request("CREATE", bare.clone(), true))
            .unwrap();
        assert!(
            m.dry_run,
            "dry-run requests are patched too; nothing else happens on them"
        );
        assert_eq!(
            patched(&m, bare)["metadata"]["labels"],
            json!({"secretscope.io/tenant": "globex"})
        );
    }

    #[test]
    fn everything_else_is_admitted_untouched() {
        let cases = [
            ("CREATE", json!({"metadata": {"name": "payments"}})),
            (
                "CREATE",
                json!({"metadata": {"name": "tools", "labels": {"secretscope.io/tenant": "acme"}}}),
            ),
            ("UPDATE", json!({"metadata": {"name": "az-acme"}})),
            ("CREATE", json!({"metadata": {"name": "az-x_"}})),
        ];
        for (op, ns) in cases {
            let m = mutator().review(&request(op, ns.clone(), false)).unwrap();
            assert!(
                m.response.allowed && m.response.patch.is_none(),
                "{op} {ns}"
            );
        }
        let m = mutator()
            .review(&request(
                "CREATE",
                json!({"metadata": {"name": "az-x_"}}),
                false,
            ))
            .unwrap();
        assert!(m.response.warnings[0].contains("not a valid label value"));
    }
}
