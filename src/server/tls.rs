//! Serving certificates: PEM files in, a rustls `ServerConfig` out (TLS 1.2 and 1.3 only, ALPN
//! h2 + http/1.1, optional client-certificate check), reloaded when the files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::metrics::{cert_expiry, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {expected}: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        detail: String,
    },
    #[error("certificate and key do not form a usable pair: {0}")]
    Config(#[from] rustls::Error),
    #[error("client CA {path}: {detail}")]
    ClientCa { path: PathBuf, detail: String },
}

/// The files a serving config is built from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The raw bytes last loaded, to tell whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl TlsFiles {
    fn read(&self) -> Result<Contents, TlsError> {
        Ok(Contents {
            cert: read("certificate", &self.cert)?,
            key: read("private key", &self.key)?,
            client_ca: match &self.client_ca {
                Some(p) => Some(read("client CA", p)?),
                None => None,
            },
        })
    }

    fn build(&self, c: &Contents) -> Result<ServerConfig, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&c.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem {
                what: "certificate",
                path: self.cert.clone(),
                expected: "CERTIFICATE",
                detail: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate",
                path: self.cert.clone(),
                expected: "CERTIFICATE",
                detail: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| TlsError::Pem {
            what: "private key",
            path: self.key.clone(),
            expected: "PRIVATE KEY",
            detail: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match (&self.client_ca, &c.client_ca) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                    roots.add(cert).map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: path.clone(),
                            detail: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Loads the files once, for start-up: any error is fatal there.
    pub fn load(&self) -> Result<ServerConfig, TlsError> {
        self.build(&self.read()?)
    }
}

/// Serving TLS config that follows its files.
pub struct ReloadingTls {
    files: TlsFiles,
    config: RustlsConfig,
    loaded: Contents,
    metrics: Arc<Metrics>,
}

impl ReloadingTls {
    pub fn new(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let loaded = files.read()?;
        let config = RustlsConfig::from_config(Arc::new(files.build(&loaded)?));
        let this = Self {
            files,
            config,
            loaded,
            metrics,
        };
        this.record_expiry();
        Ok(this)
    }

    fn record_expiry(&self) {
        if let Some(t) = cert_expiry(&self.loaded.cert) {
            self.metrics.cert_expiry.set(t as f64);
        }
    }

    pub fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Re-reads the files; installs a new config if they changed and form a valid pair, keeps the
    /// old one otherwise. Reading through the paths every time follows Kubernetes' Secret-volume
    /// update (an atomic swap of the `..data` symlink), which inotify on the file itself misses.
    /// Returns whether a new config was installed.
    pub fn reload_if_changed(&mut self) -> Result<bool, TlsError> {
        let now = self.files.read()?;
        if now == self.loaded {
            return Ok(false);
        }
        let config = self.files.build(&now)?;
        // New handshakes use the new pair; established connections keep theirs.
        self.config.reload_from_config(Arc::new(config));
        self.loaded = now;
        self.record_expiry();
        Ok(true)
    }

    /// Polls every `interval` until the task is dropped.
    pub async fn watch(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.reload_if_changed() {
                Ok(true) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded serving certificate")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "new serving certificate rejected; keeping the previous one")
                }
            }
        }
    }
}
