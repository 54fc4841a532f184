//! What every AdmissionReview target checks of a response.

/// The stated bound on a serialized response (issue 8: "the response to any accepted body stays
/// small, ≤ 64 KiB"), with room for the envelope.
pub const MAX_RESPONSE: usize = 64 * 1024 + 256;

/// `request.uid` as the body carries it, read independently of secretscope's own decoder.
/// `None` when the body is not JSON that serde_json's `Value` reads (then there is nothing to
/// compare against).
pub fn request_uid(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("request")?.get("uid")?.as_str().map(String::from)
}

/// The response is bounded and echoes the request's uid.
pub fn check_response(body: &[u8], response: &secretscope::admission::AdmissionResponse) {
    let json = response.to_review_json();
    assert!(
        json.len() <= MAX_RESPONSE,
        "response of {} bytes for a body of {} bytes (bound {MAX_RESPONSE}); message {} bytes, {} warnings of {:?} bytes, patch {:?} bytes",
        json.len(),
        body.len(),
        response.status.as_ref().map_or(0, |s| s.message.len()),
        response.warnings.len(),
        response.warnings.iter().map(String::len).collect::<Vec<_>>(),
        response.patch.as_ref().map(String::len),
    );
    let parsed: serde_json::Value =
        serde_json::from_slice(&json).expect("the response is valid JSON");
    assert_eq!(parsed["kind"], "AdmissionReview");
    assert_eq!(parsed["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        parsed["response"]["uid"].as_str(),
        Some(response.uid.as_str())
    );
    if let Some(uid) = request_uid(body) {
        assert_eq!(response.uid, uid, "the response echoes request.uid");
    }
}
