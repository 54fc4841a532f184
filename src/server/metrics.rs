//! Prometheus metrics, served as text on their own plain-HTTP listener (`--metrics-listen`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::admission::review::Operation;
use crate::admission::Verdict;
use crate::cluster::{ReconcileMetrics, RegistrationMetrics};
use crate::policy::Mode;
use crate::rbac::{IndirectRoute, RbacKind, Route, Severity};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    kind: &'static str,
    operation: &'static str,
    /// allowed, denied, warned (admitted with warnings), audited (admitted, would be denied in
    /// enforce), error (not a usable AdmissionReview).
    verdict: &'static str,
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    route: &'static str,
    severity: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    /// The commit the binary was built from (`SECRETSCOPE_GIT_REVISION` at build time).
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MutationLabels {
    /// labelled (a JSON patch added the tenancy label) or untouched.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    review_seconds: Histogram,
    findings: Family<FindingLabels, Counter>,
    pub state_synced: Gauge,
    pub state_objects: Gauge,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    cert_reloads: Family<ReloadLabels, Counter>,
    mutations: Family<MutationLabels, Counter>,
    /// The tenancy reconciler's outcomes (zero on replicas that never lead).
    pub reconcile: ReconcileMetrics,
    /// Self-registration of the webhook configurations (`--register-webhooks`).
    pub registration: RegistrationMetrics,
    /// Webhook (HTTPS) connections open now, TLS handshakes included.
    pub open_connections: Gauge,
    /// Request-body bytes held now (being read or judged), set at scrape time.
    pub body_bytes_held: Gauge,
    /// Bodies refused (503) because `--body-budget-mib` were held.
    pub bodies_refused: Counter,
    /// Connections closed right after accept because `--max-connections` were open.
    pub connections_rejected: Counter,
    /// Reviews answered at `--review-deadline` without a judgement (denied, fail closed).
    pub review_timeouts: Counter,
    /// Reviews denied because judging would pass the engine's work budget.
    pub reviews_over_budget: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut root = Registry::default();
        // client_golang's process_* names, unprefixed, so stock dashboards and alerts work.
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("secretscope");
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the labels say which build is running",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("SECRETSCOPE_GIT_REVISION").unwrap_or("unknown"),
            })
            .set(1);
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "Admission reviews by kind, operation, verdict and mode",
            reviews.clone(),
        );
        // 25 µs .. ~0.4 s: a review is decided in microseconds; the tail is what matters.
        let review_seconds = Histogram::new(exponential_buckets(25e-6, 2.0, 15));
        registry.register(
            "review_duration_seconds",
            "Time to decode, judge and encode one review (excluding TLS and HTTP)",
            review_seconds.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "findings",
            "Findings in admission reviews by route (secrets or an indirect route) and severity",
            findings.clone(),
        );
        let state_synced = Gauge::default();
        registry.register(
            "state_synced",
            "1 when the RBAC state is complete; 0 means verdicts fall back to strict scope",
            state_synced.clone(),
        );
        let state_objects = Gauge::default();
        registry.register(
            "state_objects",
            "RBAC objects in the state reviews are judged against",
            state_objects.clone(),
        );
        let cert_expiry = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "serving_cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix time",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "serving_cert_reloads",
            "Serving certificate changes seen on disk, by result (installed or rejected)",
            cert_reloads.clone(),
        );
        let mutations = Family::<MutationLabels, Counter>::default();
        registry.register(
            "namespace_mutations",
            "Namespace CREATE reviews on /mutate, by result",
            mutations.clone(),
        );
        let reconcile = ReconcileMetrics::default();
        reconcile.register(registry);
        let registration = RegistrationMetrics::default();
        registration.register(registry);
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Webhook connections open now (TLS handshakes included); capped by --max-connections",
            open_connections.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Webhook connections closed right after accept because --max-connections were open",
            connections_rejected.clone(),
        );
        let review_timeouts = Counter::default();
        registry.register(
            "review_timeouts",
            "Reviews not judged within --review-deadline: denied on /validate (fail closed), admitted unlabelled on /mutate",
            review_timeouts.clone(),
        );
        let body_bytes_held = Gauge::default();
        registry.register(
            "request_body_bytes_held",
            "Bytes of request bodies held now (being read or judged), at most --body-budget-mib",
            body_bytes_held.clone(),
        );
        let bodies_refused = Counter::default();
        registry.register(
            "request_bodies_refused",
            "Request bodies refused (503) because --body-budget-mib of them were being read or judged",
            bodies_refused.clone(),
        );
        let reviews_over_budget = Counter::default();
        registry.register(
            "reviews_over_budget",
            "Reviews whose judgement would pass the engine's work budget (aggregation steps): denied, fail closed",
            reviews_over_budget.clone(),
        );
        Self {
            open_connections,
            body_bytes_held,
            bodies_refused,
            connections_rejected,
            review_timeouts,
            reviews_over_budget,
            registry: root,
            registration,
            mutations,
            reconcile,
            reviews,
            review_seconds,
            findings,
            state_synced,
            state_objects,
            cert_expiry,
            cert_reloads,
        }
    }

    pub fn observe(&self, verdict: &Verdict, mode: Mode, elapsed: Duration) {
        if verdict.over_budget {
            self.reviews_over_budget.inc();
        }
        let judged = verdict.findings.iter().any(|f| f.severity > Severity::Info);
        let label = if !verdict.response.allowed {
            "denied"
        } else if judged && mode == Mode::Audit {
            "audited"
        } else if judged {
            "warned"
        } else {
            "allowed"
        };
        self.reviews
            .get_or_create(&ReviewLabels {
                kind: verdict.kind.map_or("unknown", |k| k.as_str()),
                operation: verdict.operation.as_str(),
                verdict: label,
                mode: mode.as_str(),
            })
            .inc();
        self.review_seconds.observe(elapsed.as_secs_f64());
        for f in &verdict.findings {
            self.findings
                .get_or_create(&FindingLabels {
                    route: route_label(f.route),
                    severity: severity_label(f.severity),
                })
                .inc();
        }
    }

    pub fn observe_error(&self, mode: Mode) {
        self.reviews
            .get_or_create(&ReviewLabels {
                kind: "unknown",
                operation: "unknown",
                verdict: "error",
                mode: mode.as_str(),
            })
            .inc();
    }

    /// A review denied at the deadline, without a judgement: counted as denied.
    pub fn observe_unjudged(&self, kind: &'static str, operation: &'static str, mode: Mode) {
        self.reviews
            .get_or_create(&ReviewLabels {
                kind,
                operation,
                verdict: "denied",
                mode: mode.as_str(),
            })
            .inc();
    }

    /// Creates every labelled series the webhook can emit in `mode` at 0, so a rate or an alert
    /// on one is defined before its first event (an absent series is not a zero in PromQL).
    pub fn initialise(&self, mode: Mode) {
        for kind in RbacKind::ALL {
            for operation in [Operation::Create, Operation::Update] {
                for verdict in ["allowed", "denied", "warned", "audited"] {
                    let _ = self.reviews.get_or_create(&ReviewLabels {
                        kind: kind.as_str(),
                        operation: operation.as_str(),
                        verdict,
                        mode: mode.as_str(),
                    });
                }
            }
        }
        let _ = self.reviews.get_or_create(&ReviewLabels {
            kind: "unknown",
            operation: "unknown",
            verdict: "error",
            mode: mode.as_str(),
        });
        let routes = std::iter::once(Route::Secrets).chain(IndirectRoute::ALL.map(Route::Indirect));
        for route in routes {
            for severity in [Severity::Info, Severity::Warn, Severity::Deny] {
                let _ = self.findings.get_or_create(&FindingLabels {
                    route: route_label(route),
                    severity: severity_label(severity),
                });
            }
        }
        for result in ["installed", "rejected"] {
            let _ = self.cert_reloads.get_or_create(&ReloadLabels { result });
        }
        for result in ["labelled", "untouched"] {
            let _ = self.mutations.get_or_create(&MutationLabels { result });
        }
        self.reconcile.initialise();
        self.registration.initialise();
    }

    pub fn observe_mutation(&self, labelled: bool) {
        let result = if labelled { "labelled" } else { "untouched" };
        self.mutations
            .get_or_create(&MutationLabels { result })
            .inc();
    }

    pub fn cert_reloaded(&self, installed: bool) {
        let result = if installed { "installed" } else { "rejected" };
        self.cert_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// notAfter of the first certificate of a PEM chain, as a Unix time.
pub fn cert_expiry(pem: &[u8]) -> Option<i64> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

pub type SharedMetrics = Arc<Metrics>;

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warn => "warn",
        Severity::Deny => "deny",
    }
}

fn route_label(route: Route) -> &'static str {
    match route {
        Route::Secrets => "secrets",
        Route::Indirect(r) => r.as_str(),
    }
}

/// `process_*` metrics as client_golang names them, read from /proc at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = metrics_process::collector::collect();
        let gauges = [
            (
                "process_open_fds",
                "Number of open file descriptors",
                m.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                m.max_fds.map(|v| v as f64),
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                m.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                m.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                m.start_time_seconds.map(|v| v as f64),
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                m.threads.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                let me = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(me)?;
            }
        }
        if let Some(v) = m.cpu_seconds_total {
            // Encoded with the `_total` suffix the text format adds to counters.
            let c = ConstCounter::new(v);
            let me = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?;
            c.encode(me)?;
        }
        Ok(())
    }
}
