//! `secretscope manifests`: the plain install (deploy/base plus the serving Secret, whose `ca.crt`
//! secretscope registers as its webhooks' caBundle) for clusters installed without kustomize. It follows deploy/base/kustomization.yaml (its
//! resources and labels), so `kubectl kustomize deploy/overlays/plain` and this print the same
//! objects; a test holds them to that.

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::manifest::yaml_options;

/// deploy/base, embedded: (file name as kustomization.yaml lists it, contents).
const BASE: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../deploy/base/namespace.yaml"),
    ),
    (
        "serviceaccount.yaml",
        include_str!("../../deploy/base/serviceaccount.yaml"),
    ),
    ("rbac.yaml", include_str!("../../deploy/base/rbac.yaml")),
    (
        "configmap.yaml",
        include_str!("../../deploy/base/configmap.yaml"),
    ),
    (
        "deployment.yaml",
        include_str!("../../deploy/base/deployment.yaml"),
    ),
    ("pdb.yaml", include_str!("../../deploy/base/pdb.yaml")),
    (
        "service.yaml",
        include_str!("../../deploy/base/service.yaml"),
    ),
    (
        "webhook-guard.yaml",
        include_str!("../../deploy/base/webhook-guard.yaml"),
    ),
];
const KUSTOMIZATION: &str = include_str!("../../deploy/base/kustomization.yaml");

#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {
    /// The CA of the serving certificate, base64 of its PEM as `secretscope certs` prints it: the
    /// Secret's `ca.crt`, which secretscope registers as its webhooks' caBundle.
    #[arg(long, conflicts_with = "ca_file", required_unless_present = "ca_file")]
    pub ca_bundle: Option<String>,
    /// The CA's PEM file instead of --ca-bundle (certs/ca.crt).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Add the serving pair as the secretscope-tls Secret.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Kustomization {
    resources: Vec<String>,
    #[serde(default)]
    labels: Vec<LabelSet>,
}

#[derive(Deserialize)]
struct LabelSet {
    pairs: serde_json::Map<String, Value>,
}

/// The base's objects, in kustomization order, with its labels on every object's metadata.
pub fn base_objects() -> anyhow::Result<Vec<Value>> {
    let k = kustomization()?;
    let mut out = Vec::new();
    for resource in &k.resources {
        let Some((_, text)) = BASE.iter().find(|(name, _)| name == resource) else {
            bail!("deploy/base/{resource} is listed in kustomization.yaml but not embedded");
        };
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
            .with_context(|| format!("deploy/base/{resource}"))?;
        for mut doc in docs {
            label(&mut doc, &k);
            out.push(doc);
        }
    }
    Ok(out)
}

fn kustomization() -> anyhow::Result<Kustomization> {
    serde_saphyr::from_str(KUSTOMIZATION).context("base kustomization")
}

/// The base's labels on `doc` (the plain overlay puts them on its Secret too).
fn label(doc: &mut Value, k: &Kustomization) {
    for set in &k.labels {
        let labels = doc
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
            .map(|m| m.entry("labels").or_insert_with(|| json!({})));
        if let Some(Value::Object(labels)) = labels {
            labels.extend(set.pairs.clone());
        }
    }
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The CA, as base64 checked to be of at least one PEM certificate.
fn ca_bundle(args: &ManifestsArgs) -> anyhow::Result<String> {
    let bundle = match (&args.ca_bundle, &args.ca_file) {
        (Some(b), _) => b.split_whitespace().collect::<String>(),
        (None, Some(path)) => b64(&read(path)?),
        (None, None) => bail!("give --ca-bundle or --ca-file"),
    };
    let pem = base64::engine::general_purpose::STANDARD
        .decode(&bundle)
        .context("--ca-bundle is not base64")?;
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("the caBundle holds no valid PEM certificate: {e}"))?;
    if certs.is_empty() {
        bail!("the caBundle holds no PEM certificate");
    }
    Ok(bundle)
}

pub fn render(args: &ManifestsArgs) -> anyhow::Result<Vec<Value>> {
    let bundle = ca_bundle(args)?;
    let mut objects = base_objects()?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let mut secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "secretscope-tls", "namespace": "secretscope"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": b64(&read(cert)?),
                "tls.key": b64(&read(key)?),
                "ca.crt": bundle,
            }
        });
        label(&mut secret, &kustomization()?);
        objects.push(secret);
    }
    Ok(objects)
}

pub fn run(args: &ManifestsArgs) -> anyhow::Result<()> {
    let objects = render(args)?;
    let yaml = serde_saphyr::to_string_multiple(&objects).context("render YAML")?;
    print!("{yaml}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_resource_is_embedded_and_labelled() {
        let objects = base_objects().unwrap();
        // No webhook configuration: secretscope registers its own once ready.
        assert_eq!(objects.len(), 14);
        for o in &objects {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/part-of"], "secretscope",
                "{o}"
            );
        }
    }

    #[test]
    fn a_bad_ca_bundle_is_refused() {
        for bad in ["not base64!", "aGVsbG8="] {
            let args = ManifestsArgs {
                ca_bundle: Some(bad.into()),
                ca_file: None,
                tls_cert: None,
                tls_key: None,
            };
            assert!(render(&args).is_err(), "{bad}");
        }
    }
}
