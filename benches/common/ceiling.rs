//! The ceilings secretscope is measured against, on its own stack (hyper-util's auto builder over
//! tokio-rustls, the same serving `ServerConfig` and ALPN, `TCP_NODELAY` through the webhook's own
//! accept): "echo" reads the body and answers a fixed AdmissionReview response; "parse" also
//! parses the body into a `serde_json::Value` first, the least a JSON webhook can do; "kube-rs"
//! answers as kube-rs's `admission_controller` example does, what a Rust user starts from: the
//! body decoded as `AdmissionReview<DynamicObject>`, `AdmissionResponse::from(&request)`, and
//! `into_review()` encoded as the response (the example's warp server swapped for this stack).

#![allow(dead_code)] // each bench uses part of it

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

pub const RESPONSE: &[u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"705ab4f5-6393-11e8-b7cc-42010a800002","allowed":true}}"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    Echo,
    Parse,
    KubeRs,
}

impl Ceiling {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "echo" => Some(Self::Echo),
            "parse" => Some(Self::Parse),
            "kube-rs" => Some(Self::KubeRs),
            _ => None,
        }
    }
}

async fn answer(
    kind: Ceiling,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let out = match kind {
        Ceiling::Echo => Bytes::from_static(RESPONSE),
        Ceiling::Parse => {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&body).ok());
            Bytes::from_static(RESPONSE)
        }
        Ceiling::KubeRs => Bytes::from(kube_rs_example(&body)),
    };
    let mut resp = Response::new(Full::new(out));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// The kube-rs example's handler as a validating webhook: it denies an object labelled
/// `illegal` and admits the rest (the example's label patch left out: nothing here mutates).
fn kube_rs_example(body: &[u8]) -> Vec<u8> {
    use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
    use kube::core::DynamicObject;
    use kube::core::ResourceExt;
    let review = match serde_json::from_slice::<AdmissionReview<DynamicObject>>(body) {
        Ok(r) => r,
        Err(e) => {
            return serde_json::to_vec(&AdmissionResponse::invalid(e).into_review())
                .unwrap_or_default()
        }
    };
    let response = match TryInto::<AdmissionRequest<DynamicObject>>::try_into(review) {
        Ok(req) => {
            let res = AdmissionResponse::from(&req);
            match &req.object {
                Some(obj) if obj.labels().contains_key("illegal") => {
                    res.deny("Resource contains 'illegal' label")
                }
                _ => res,
            }
        }
        Err(e) => AdmissionResponse::invalid(e),
    };
    serde_json::to_vec(&response.into_review()).unwrap_or_default()
}

/// Serves `kind` on 127.0.0.1 (any port) until killed; announces `{"addr":"..."}` on stderr as
/// secretscope's JSON log does, so one reader finds both.
pub fn serve(kind: Ceiling, cert: &str, key: &str) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    eprintln!("{{\"addr\":\"{}\"}}", listener.local_addr()?);
    run(kind, cert, key, listener)
}

/// Serves `kind` from a thread of this process (as long as it lives); returns the address.
pub fn spawn(kind: Ceiling, cert: &str, key: &str) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (cert, key) = (cert.to_string(), key.to_string());
    std::thread::spawn(move || {
        if let Err(e) = run(kind, &cert, &key, listener) {
            eprintln!("{kind:?} server stopped: {e}");
        }
    });
    Ok(addr)
}

fn run(
    kind: Ceiling,
    cert: &str,
    key: &str,
    listener: std::net::TcpListener,
) -> anyhow::Result<()> {
    let files = secretscope::server::tls::TlsFiles {
        cert: cert.into(),
        key: key.into(),
        client_ca: None,
    };
    let acceptor = TlsAcceptor::from(Arc::new(files.load()?));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((tcp, _)) = secretscope::server::conn::accept(&listener).await else {
                continue;
            };
            let (acceptor, builder) = (acceptor.clone(), builder.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| answer(kind, req));
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            });
        }
    })
}
