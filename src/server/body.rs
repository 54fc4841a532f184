//! Request bodies: at most [`MAX_BODY`] each, and at most `--body-budget-mib` of them held at
//! once across every connection and stream.
//!
//! The per-body cap alone does not bound memory: one HTTP/2 connection carries up to
//! `H2_MAX_STREAMS` (250) bodies at once, 750 MiB at 3 MiB each, and `--max-connections` of
//! them a thousand times that, against a pod limit of 256 MiB (measured: 100 slow 3 MB uploads
//! on one connection took the process to 445 MiB). A body with a declared length (the API
//! server always sends one) takes its whole share before any of it is read; a chunked body
//! takes its share as its bytes arrive. The share is returned when the answer is ready.
//!
//! A body that finds no room is refused at once (503), not kept waiting: over HTTP/2 the bytes
//! of a stream nobody reads fill the connection's flow-control window, which stalls every
//! other stream on it, the very bodies whose answers would free the room (measured: 100 slow
//! 3 MB uploads on one connection, all of them timed out when the others waited).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The API server never sends more than this; Kubernetes itself caps request bodies at 3 MiB.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// `--body-budget-mib` by default: ten bodies of the largest size, or some twenty thousand
/// reviews of a typical 1.5 KB, held at once.
pub const DEFAULT_BODY_BUDGET_MIB: u32 = 32;
pub const DEFAULT_BODY_BUDGET: usize = DEFAULT_BODY_BUDGET_MIB as usize * 1024 * 1024;

/// Body bytes held at once, across all connections.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
    /// Bodies refused for want of room.
    refused: Counter,
}

/// A whole body, holding its share of the budget until dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// `total` is raised to [`MAX_BODY`] if below it, so that a body of the largest allowed size
    /// can always be read once the others are done.
    pub fn new(total: usize, refused: Counter) -> Self {
        let total = total.clamp(MAX_BODY, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            refused,
        }
    }

    /// Bytes held by bodies being read or judged now.
    pub fn held(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// The whole body, or the response refusing it: 413 past [`MAX_BODY`] (at once when the
    /// declared length says so, else as soon as the bytes read pass it), 400 when it breaks off.
    pub async fn read(&self, mut body: Incoming) -> Result<HeldBody, Refused> {
        let hint = body.size_hint();
        if hint.lower() > MAX_BODY as u64 {
            return Err(Refused::TooLarge);
        }
        // hyper holds a body to its declared length (HTTP/1.1 reads no further, HTTP/2 fails a
        // stream that sends more), so a declared body needs nothing beyond its reservation.
        let declared = hint.exact().map_or(0, |n| n as usize);
        let mut share = match declared {
            0 => None,
            n => Some(self.take(n)?),
        };
        let mut held = declared;
        // One frame (the usual small review) is kept as it came; more are joined.
        let mut first = Bytes::new();
        let mut joined: Vec<u8> = Vec::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Refused::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if data.is_empty() {
                continue;
            }
            len += data.len();
            if len > MAX_BODY {
                return Err(Refused::TooLarge);
            }
            if len > held {
                let more = self.take(len - held)?;
                held = len;
                match share.as_mut() {
                    Some(s) => s.merge(more),
                    None => share = Some(more),
                }
            }
            if first.is_empty() && joined.is_empty() {
                first = data;
            } else {
                if joined.is_empty() {
                    joined.reserve(declared.max(len));
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

    /// `n` bytes of the budget (at most [`MAX_BODY`], which fits the semaphore's u32 count).
    fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, Refused> {
        self.bytes
            .clone()
            .try_acquire_many_owned(n as u32)
            .map_err(|_| {
                self.refused.inc();
                Refused::NoRoom {
                    budget_mib: self.total >> 20,
                }
            })
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("the request body is larger than {} MiB", MAX_BODY >> 20)]
    TooLarge,
    #[error("could not read the request body: {0}")]
    Broken(String),
    #[error(
        "{budget_mib} MiB of request bodies are being read or judged (--body-budget-mib); retry"
    )]
    NoRoom { budget_mib: usize },
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let text = format!("secretscope: {self}\n");
        match self {
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, text).into_response(),
            Self::Broken(_) => (StatusCode::BAD_REQUEST, text).into_response(),
            Self::NoRoom { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                text,
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_at_least_one_body_of_the_largest_size() {
        assert_eq!(BodyBudget::new(0, Counter::default()).total, MAX_BODY);
        let budget = BodyBudget::new(DEFAULT_BODY_BUDGET, Counter::default());
        assert_eq!(budget.held(), 0);
        let share = budget.take(MAX_BODY).expect("room");
        assert_eq!(budget.held(), MAX_BODY);
        drop(share);
        assert_eq!(budget.held(), 0);
    }
}
