//! secretscope: keeps Secrets access scoped to tenancy namespaces.
//!
//! Layout, inside out: [`rbac`] is the pure engine; [`policy`] turns configuration into engine
//! options; [`tenancy`] plans what a tenancy namespace holds (also pure); [`admission`]
//! translates AdmissionReviews to engine calls; [`cluster`] owns all API-server I/O; [`manifest`]
//! reads manifests for `check` and standalone state; [`server`] serves HTTPS; [`cli`] is the edge.
//! `cluster`, `server` and the commands that use them are the `serve` feature (on by default).

pub mod admission;
pub mod cli;
#[cfg(feature = "serve")]
pub mod cluster;
pub mod manifest;
pub mod policy;
pub mod rbac;
#[cfg(feature = "serve")]
pub mod server;
pub mod tenancy;
