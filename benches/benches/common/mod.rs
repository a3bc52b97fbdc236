//! The dead-letter record every store bench writes copies of: a typical `POST` with three
//! headers and a 512-byte JSON body (about 1.2 KB of JSON).

use rampart_dead_letter::{
    DeadLetter, DeadLetterId, Failure, Header, ParkReason, Payload, RecordedBody, Target,
};

/// A JSON body of about 512 bytes.
pub(crate) fn body() -> String {
    let mut body = String::from("{\"order\":4711,\"items\":[");
    while body.len() < 500 {
        body.push_str("{\"sku\":\"A-1\",\"qty\":1},");
    }
    body.truncate(body.len() - 1);
    body.push_str("]}");
    body
}

/// The record every member stores copies of.
pub(crate) fn template() -> DeadLetter {
    let header = |name: &str, value: &str| Header {
        name: name.into(),
        value: Payload(value.to_owned().into()),
        redacted: false,
    };
    let mut r = DeadLetter::new(
        "billing",
        Target {
            method: "POST".into(),
            uri: "http://billing.internal:8080/v1/charges".into(),
            headers: vec![
                header("content-type", "application/json"),
                header("x-request-id", "0b6a1d1e-8f1c-4c31-9a57-2f1f7c9a6d3e"),
                Header {
                    name: "authorization".into(),
                    value: Payload("[redacted]".into()),
                    redacted: true,
                },
            ],
            body: RecordedBody::whole(body().into()),
            query_redacted: false,
        },
        Failure::from_status(ParkReason::Transient, http::StatusCode::SERVICE_UNAVAILABLE),
    );
    r.idempotency_key = Some("9c2e4a8e-2a3b-4f7a-b1d5-5c6e7f8091a2".into());
    r.attempts = 3;
    r
}

/// A copy of `template` with an id of its own.
pub(crate) fn fresh(template: &DeadLetter) -> DeadLetter {
    let mut r = template.clone();
    r.id = DeadLetterId::new();
    r
}
