//! Prometheus metrics, served as text on their own plain-HTTP listener (`--metrics-listen`).

use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
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

/// A labelled counter family whose series are also reached by a small index, for the hot path:
/// `Family::get_or_create` hashes the labels and takes a lock on every call, once per review and
/// per finding. Each slot is filled on its first use, so the family exports the same series
/// (those created at 0 by `Metrics::initialise` and those seen since) as without the index.
struct IndexedFamily<L, const N: usize> {
    family: Family<L, Counter>,
    slots: [OnceLock<Counter>; N],
}

impl<L: Clone + Hash + Eq, const N: usize> IndexedFamily<L, N> {
    fn new() -> Self {
        Self {
            family: Family::default(),
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Increments the series at `index`, whose labels are `labels()`.
    fn inc(&self, index: usize, labels: impl FnOnce() -> L) {
        match self.slots.get(index) {
            Some(slot) => slot
                .get_or_init(|| self.family.get_or_create(&labels()).clone())
                .inc(),
            None => self.family.get_or_create(&labels()).inc(),
        };
    }
}

const MODES: usize = 3;
const KINDS: usize = RbacKind::ALL.len() + 1; // and "unknown"
const OPERATIONS: usize = 4;
const VERDICTS: usize = 4;
const REVIEW_SERIES: usize = MODES * KINDS * OPERATIONS * VERDICTS;
const ROUTES: usize = IndirectRoute::ALL.len() + 1; // and secrets
const SEVERITIES: usize = 3;

pub struct Metrics {
    registry: Registry,
    /// By mode, kind, operation and verdict; see `review_index`.
    reviews: IndexedFamily<ReviewLabels, REVIEW_SERIES>,
    review_seconds: Histogram,
    /// By route and severity; see `finding_index`.
    findings: IndexedFamily<FindingLabels, { ROUTES * SEVERITIES }>,
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
        let reviews = IndexedFamily::new();
        registry.register(
            "reviews",
            "Admission reviews by kind, operation, verdict and mode",
            reviews.family.clone(),
        );
        // 25 µs .. ~0.4 s: a review is decided in microseconds; the tail is what matters.
        let review_seconds = Histogram::new(exponential_buckets(25e-6, 2.0, 15));
        registry.register(
            "review_duration_seconds",
            "Time to decode, judge and encode one review (excluding TLS and HTTP)",
            review_seconds.clone(),
        );
        let findings = IndexedFamily::new();
        registry.register(
            "findings",
            "Findings in admission reviews by route (secrets or an indirect route) and severity",
            findings.family.clone(),
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
            ReviewVerdict::Denied
        } else if judged && mode == Mode::Audit {
            ReviewVerdict::Audited
        } else if judged {
            ReviewVerdict::Warned
        } else {
            ReviewVerdict::Allowed
        };
        let index = review_index(mode, verdict.kind, verdict.operation, label);
        self.reviews.inc(index, || ReviewLabels {
            kind: verdict.kind.map_or("unknown", |k| k.as_str()),
            operation: verdict.operation.as_str(),
            verdict: label.as_str(),
            mode: mode.as_str(),
        });
        self.review_seconds.observe(elapsed.as_secs_f64());
        for f in &verdict.findings {
            self.findings
                .inc(finding_index(f.route, f.severity), || FindingLabels {
                    route: route_label(f.route),
                    severity: severity_label(f.severity),
                });
        }
    }

    pub fn observe_error(&self, mode: Mode) {
        self.reviews
            .family
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
            .family
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
                for verdict in ReviewVerdict::ALL {
                    let _ = self.reviews.family.get_or_create(&ReviewLabels {
                        kind: kind.as_str(),
                        operation: operation.as_str(),
                        verdict: verdict.as_str(),
                        mode: mode.as_str(),
                    });
                }
            }
        }
        let _ = self.reviews.family.get_or_create(&ReviewLabels {
            kind: "unknown",
            operation: "unknown",
            verdict: "error",
            mode: mode.as_str(),
        });
        let routes = std::iter::once(Route::Secrets).chain(IndirectRoute::ALL.map(Route::Indirect));
        for route in routes {
            for severity in [Severity::Info, Severity::Warn, Severity::Deny] {
                let _ = self.findings.family.get_or_create(&FindingLabels {
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

/// The `verdict` label of a judged review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReviewVerdict {
    /// Admitted with no finding above info.
    Allowed,
    Denied,
    /// Admitted with warnings.
    Warned,
    /// Admitted; would be denied in enforce mode.
    Audited,
}

impl ReviewVerdict {
    const ALL: [Self; VERDICTS] = [Self::Allowed, Self::Denied, Self::Warned, Self::Audited];

    fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Audited => "audited",
        }
    }
}

/// The slot of a judged review's series in `Metrics::reviews`.
fn review_index(
    mode: Mode,
    kind: Option<RbacKind>,
    operation: Operation,
    verdict: ReviewVerdict,
) -> usize {
    let mode = match mode {
        Mode::Enforce => 0,
        Mode::Warn => 1,
        Mode::Audit => 2,
    };
    let kind = kind.map_or(KINDS - 1, |k| k as usize);
    let operation = match operation {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
    };
    ((mode * KINDS + kind) * OPERATIONS + operation) * VERDICTS + verdict as usize
}

/// The slot of a finding's series in `Metrics::findings`.
fn finding_index(route: Route, severity: Severity) -> usize {
    let route = match route {
        Route::Secrets => 0,
        Route::Indirect(r) => 1 + r as usize,
    };
    let severity = match severity {
        Severity::Info => 0,
        Severity::Warn => 1,
        Severity::Deny => 2,
    };
    route * SEVERITIES + severity
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_judged_series_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        let kinds = RbacKind::ALL.map(Some).into_iter().chain([None]);
        for mode in [Mode::Enforce, Mode::Warn, Mode::Audit] {
            for kind in kinds.clone() {
                for op in [
                    Operation::Create,
                    Operation::Update,
                    Operation::Delete,
                    Operation::Connect,
                ] {
                    for verdict in ReviewVerdict::ALL {
                        let i = review_index(mode, kind, op, verdict);
                        assert!(i < REVIEW_SERIES && seen.insert(i), "{i}");
                    }
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let routes = std::iter::once(Route::Secrets).chain(IndirectRoute::ALL.map(Route::Indirect));
        for route in routes {
            for severity in [Severity::Info, Severity::Warn, Severity::Deny] {
                let i = finding_index(route, severity);
                assert!(i < ROUTES * SEVERITIES && seen.insert(i), "{i}");
            }
        }
    }

    #[test]
    fn an_indexed_series_counts_under_its_labels_and_only_there() {
        let m = Metrics::new();
        m.initialise(Mode::Warn);
        let labels = |verdict: &'static str| ReviewLabels {
            kind: "ClusterRole",
            operation: "UPDATE",
            verdict,
            mode: "warn",
        };
        let index = review_index(
            Mode::Warn,
            Some(RbacKind::ClusterRole),
            Operation::Update,
            ReviewVerdict::Warned,
        );
        m.reviews.inc(index, || labels("warned"));
        m.reviews.inc(index, || labels("warned"));
        let text = m.encode();
        let line = |verdict: &str| {
            format!("secretscope_reviews_total{{kind=\"ClusterRole\",operation=\"UPDATE\",verdict=\"{verdict}\",mode=\"warn\"}}")
        };
        assert!(text.contains(&format!("{} 2\n", line("warned"))), "{text}");
        assert!(text.contains(&format!("{} 0\n", line("denied"))), "{text}");
        // A slot past the index still counts, through the family.
        m.reviews.inc(usize::MAX, || labels("allowed"));
        assert!(m.encode().contains(&format!("{} 1\n", line("allowed"))));
        // No series of another mode appears.
        assert!(!text.contains("mode=\"enforce\""), "{text}");
    }
}
