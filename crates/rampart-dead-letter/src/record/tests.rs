use super::*;

fn sample() -> DeadLetter {
    let mut r = DeadLetter::new(
        "billing",
        Target {
            method: "POST".into(),
            uri: "http://127.0.0.1:1/charge".into(),
            headers: vec![
                Header {
                    name: "content-type".into(),
                    value: Payload(Bytes::from_static(b"application/json")),
                    redacted: false,
                },
                Header {
                    name: "x-bin".into(),
                    value: Payload(Bytes::from_static(&[0xff, 0x00, 0x80])),
                    redacted: false,
                },
            ],
            body: RecordedBody::whole(Bytes::from_static(b"{\"amount\":5}")),
            query_redacted: false,
        },
        Failure::from_status(ParkReason::Transient, http::StatusCode::BAD_GATEWAY),
    );
    r.idempotency_key = Some("k-1".into());
    r
}

#[test]
fn round_trips_through_json_with_binary_values() {
    let r = sample();
    let json = r.to_json();
    let back = DeadLetter::from_json(json.as_bytes()).unwrap();
    // Times are kept to the millisecond.
    assert_eq!(
        unix_millis(back.first_failed_at),
        unix_millis(r.first_failed_at)
    );
    assert_eq!(back.target, r.target);
    assert_eq!(back.target.headers[1].value.0.as_ref(), &[0xff, 0x00, 0x80]);
    assert!(json.contains(r#""base64":"/wCA""#), "{json}");
    assert!(json.contains(r#""utf8":"application/json""#), "{json}");
    assert!(json.contains(r#""v":1"#));
    assert!(json.contains(r#""kind":"transient""#));
    assert!(json.contains(r#""state":"pending""#));
}

#[test]
fn body_hash_is_sha256_of_the_whole_body() {
    let b = RecordedBody::whole(Bytes::from_static(b"abc"));
    assert_eq!(
        b.sha256.as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(b.len, Some(3));
}

#[test]
fn a_newer_format_or_garbage_is_a_clear_error() {
    let mut json: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
    json["v"] = 2.into();
    let err = DeadLetter::from_json(json.to_string().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("version 2 is newer"), "{err}");
    let err = DeadLetter::from_json(b"{\"v\":1}").unwrap_err();
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn names_parse_back_and_unknown_ones_say_what_is_allowed() {
    for s in State::ALL {
        assert_eq!(s.as_str().parse::<State>().unwrap(), s);
    }
    for k in ParkReason::ALL {
        assert_eq!(k.as_str().parse::<ParkReason>().unwrap(), k);
    }
    let err = "done".parse::<State>().unwrap_err().to_string();
    assert!(err.contains("pending, redriving"), "{err}");
    let id = DeadLetterId::new();
    assert_eq!(id.to_string().parse::<DeadLetterId>().unwrap(), id);
    assert!("nope".parse::<DeadLetterId>().is_err());
}

#[test]
fn ids_sort_by_creation() {
    let a = DeadLetterId::new();
    let b = DeadLetterId::new();
    assert!(a < b);
}
