//! `admission.k8s.io/v1` AdmissionReview, decoded into borrowed structs: only what the decision
//! needs, with the object left as raw JSON until its kind is known. No generic JSON tree is
//! built on this path (see DESIGN.md, quality bars).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const API_VERSION: &str = "admission.k8s.io/v1";

/// `O` is how the request's object is read: raw JSON by default, or already decoded into a type
/// of the caller's (see `Validator`, which reads an RBAC object in the envelope's own pass).
#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "'de: 'a, O: Deserialize<'de>")
)]
pub struct AdmissionReview<'a, O = &'a RawValue> {
    #[serde(borrow, default)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub request: Option<AdmissionRequest<'a, O>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "'de: 'a, O: Deserialize<'de>")
)]
pub struct AdmissionRequest<'a, O = &'a RawValue> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(borrow, default)]
    pub user_info: UserInfo<'a>,
    #[serde(default)]
    pub object: Option<O>,
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not an AdmissionReview: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("body is not an AdmissionReview: JSON must be UTF-8 and is not at byte offset {}", .0.valid_up_to())]
    Utf8(#[from] std::str::Utf8Error),
    #[error("apiVersion {0:?} is not supported; send admission.k8s.io/v1 (admissionReviewVersions: [v1])")]
    ApiVersion(String),
    #[error("kind {0:?} is not AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("request.uid is {0} bytes; the API server sends a UID of 36")]
    Uid(usize),
}

/// Bounds on what a response carries, whatever the review held: the status message, each
/// warning, and how many warnings (the API server itself keeps only 4 KiB of warnings).
pub const MAX_MESSAGE: usize = 16 * 1024;
pub const MAX_WARNING: usize = 2 * 1024;
pub const MAX_WARNINGS: usize = 8;
/// Longer than any UID an API server makes; a response echoes it, so it is bounded too.
pub const MAX_UID: usize = 128;

impl<'a, O: Deserialize<'a>> AdmissionReview<'a, O> {
    /// Decodes and checks the envelope; the error says what is wrong with the body.
    pub fn parse(body: &'a [u8]) -> Result<AdmissionRequest<'a, O>, ReviewError> {
        // The whole body is checked for UTF-8 once (RFC 8259 requires it; the API server's
        // encoder makes it so): reading from `&str` spares serde_json a check per string, about a
        // tenth of what decoding a review costs (benches/profile.sh).
        let body = std::str::from_utf8(body)?;
        let review: AdmissionReview<'a, O> = serde_json::from_str(body)?;
        let clipped = |s: &str| crate::rbac::text::clip(s, 64).into_owned();
        if review.api_version != API_VERSION {
            return Err(ReviewError::ApiVersion(clipped(&review.api_version)));
        }
        if review.kind != "AdmissionReview" {
            return Err(ReviewError::Kind(clipped(&review.kind)));
        }
        let request = review.request.ok_or(ReviewError::NoRequest)?;
        if request.uid.len() > MAX_UID {
            return Err(ReviewError::Uid(request.uid.len()));
        }
        Ok(request)
    }
}

impl<'a, O> AdmissionRequest<'a, O> {
    /// The same request with its object replaced (read another way).
    pub fn with_object<P>(self, object: Option<P>) -> AdmissionRequest<'a, P> {
        AdmissionRequest {
            uid: self.uid,
            kind: self.kind,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object,
            old_object: self.old_object,
            dry_run: self.dry_run,
        }
    }
}

/// `metav1.Status` as an AdmissionResponse carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub status: &'static str,
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Base64 of a JSON Patch (RFC 6902).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
}

impl AdmissionResponse {
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_string(),
            allowed: true,
            ..Default::default()
        }
    }

    pub fn deny(uid: &str, code: u16, message: String) -> Self {
        let reason = match code {
            400 => "BadRequest",
            403 => "Forbidden",
            _ => "InternalError",
        };
        Self {
            uid: uid.to_string(),
            allowed: false,
            status: Some(Status {
                status: "Failure",
                code,
                reason,
                message: crate::rbac::text::clip(&message, MAX_MESSAGE).into_owned(),
            }),
            ..Default::default()
        }
    }

    /// Sets the warnings: at most [`MAX_WARNINGS`], each at most [`MAX_WARNING`] bytes, and a
    /// last one that counts the rest.
    pub fn set_warnings<'m>(&mut self, messages: impl ExactSizeIterator<Item = &'m str>) {
        let total = messages.len();
        self.warnings = messages
            .take(MAX_WARNINGS)
            .map(|m| crate::rbac::text::clip(m, MAX_WARNING).into_owned())
            .collect();
        if total > MAX_WARNINGS {
            self.warnings.push(format!(
                "secretscope: {} more warnings not shown; `secretscope check` on the object lists them all",
                total - MAX_WARNINGS
            ));
        }
    }

    /// The full AdmissionReview response body.
    pub fn to_review_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'r> {
            api_version: &'static str,
            kind: &'static str,
            response: &'r AdmissionResponse,
        }
        serde_json::to_vec(&Out {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: self,
        })
        // Serialising plain strings, bools and integers cannot fail.
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_envelope_and_keeps_the_object_raw() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind":{"group":"rbac.authorization.k8s.io","version":"v1","kind":"ClusterRole"},
            "resource":{"group":"rbac.authorization.k8s.io","version":"v1","resource":"clusterroles"},
            "name":"x","operation":"CREATE","userInfo":{"username":"kubernetes-admin","groups":["system:masters"]},
            "object":{"kind":"ClusterRole","metadata":{"name":"x\u0041"}},"oldObject":null,"dryRun":false,
            "options":{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}"#;
        let req: AdmissionRequest<'_> = AdmissionReview::parse(body).unwrap();
        assert_eq!(req.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(req.kind.kind, "ClusterRole");
        assert_eq!(req.operation, Operation::Create);
        assert!(req.object.unwrap().get().contains(r#""x\u0041""#));
        assert!(req.old_object.is_none());
    }

    #[test]
    fn envelope_errors_say_what_is_wrong() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "body is not an AdmissionReview"),
            // Invalid UTF-8 where serde_json alone would not look (a skipped field's string).
            (b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"skipped\":\"\xff\"}", "not at byte offset 72"),
            (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Role"},"operation":"CREATE"}}"#, "admissionReviewVersions"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#, "is not AdmissionReview"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"X"},"operation":"MERGE"}}"#, "unknown variant `MERGE`"),
        ];
        for (body, want) in cases {
            let err = AdmissionReview::<&RawValue>::parse(body)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn response_shape() {
        let json = AdmissionResponse::deny("u1", 403, "no".into()).to_review_json();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["response"]["uid"], "u1");
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["status"]["reason"], "Forbidden");
        assert!(v["response"].get("warnings").is_none());
    }
}
