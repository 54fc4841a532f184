//! All API-server I/O lives here: the watch-fed RBAC cache now; the tenancy reconciler, server-side
//! apply and leases come with the rest of issue 3.

pub mod rbac_cache;

pub use rbac_cache::LiveState;
