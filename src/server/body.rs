//! Request bodies: at most [`MAX_BODY`] each, and at most `--body-budget` bytes of them held at
//! once across every connection and stream.
//!
//! The per-body cap alone does not bound memory: one HTTP/2 connection carries up to
//! `H2_MAX_STREAMS` (250) bodies at once, 750 MiB at 3 MiB each, and `--max-connections` of
//! them a thousand times that, against a pod limit of 256 MiB. The budget is taken as bytes
//! arrive (a declared length reserves nothing, so holding it costs a client the bytes it sends)
//! and returned when the answer is ready; a body that must wait for it waits within
//! `--request-timeout`, then gets 408.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The API server never sends more than this; Kubernetes itself caps request bodies at 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// `--body-budget` by default: ten bodies of the largest size, or some twenty thousand reviews
/// of a typical 1.5 KB, held at once.
pub const DEFAULT_BODY_BUDGET: usize = 32 * 1024 * 1024;

/// Body bytes held at once, across all connections.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// A whole body, holding its share of the budget until dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// `total` is raised to [`MAX_BODY`] if below it, so that a body of the largest allowed size
    /// can always be read once the others are done.
    pub fn new(total: usize) -> Self {
        let total = total.clamp(MAX_BODY, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes held by bodies being read or judged now.
    pub fn held(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// The whole body, or the response refusing it: 413 past [`MAX_BODY`] (at once when the
    /// declared length says so, else as soon as the bytes read pass it), 400 when it breaks off.
    pub async fn read(&self, mut body: Incoming) -> Result<HeldBody, Response> {
        if body.size_hint().lower() > MAX_BODY as u64 {
            return Err(too_large());
        }
        let mut share: Option<OwnedSemaphorePermit> = None;
        // One frame (the usual small review) is kept as it came; more are joined.
        let mut first = Bytes::new();
        let mut joined: Vec<u8> = Vec::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("secretscope: could not read the request body: {e}\n"),
                )
                    .into_response()
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if data.is_empty() {
                continue;
            }
            len += data.len();
            if len > MAX_BODY {
                return Err(too_large());
            }
            // `len` <= MAX_BODY, which fits the semaphore's u32 count. Without waiting when
            // there is room (the usual case: no waiter's future to build), else in turn.
            let n = data.len() as u32;
            let more = match self.bytes.clone().try_acquire_many_owned(n) {
                Ok(more) => more,
                Err(_) => self
                    .bytes
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| StatusCode::SERVICE_UNAVAILABLE.into_response())?,
            };
            match share.as_mut() {
                Some(s) => s.merge(more),
                None => share = Some(more),
            }
            if first.is_empty() && joined.is_empty() {
                first = data;
            } else {
                if joined.is_empty() {
                    joined.reserve(len);
                    joined.extend_from_slice(&first);
                    first = Bytes::new();
                }
                joined.extend_from_slice(&data);
            }
        }
        let bytes = if joined.is_empty() {
            first
        } else {
            Bytes::from(joined)
        };
        Ok(HeldBody {
            bytes,
            _share: share,
        })
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "secretscope: the request body is larger than {} MiB\n",
            MAX_BODY >> 20
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_at_least_one_body_of_the_largest_size() {
        assert_eq!(BodyBudget::new(0).total, MAX_BODY);
        assert_eq!(BodyBudget::new(DEFAULT_BODY_BUDGET).held(), 0);
    }
}
