#![allow(clippy::unwrap_used)]
//! Secrets planted in a request that fails (user info, query values, credential headers, a
//! URL quoted in the error) appear nowhere: not in the stored record, not in the layer's log
//! lines (at every level), not in `rampart dlq list` or `show`, as text or JSON.

use std::{sync::Arc, time::Duration};

use assert_cmd::Command;
use bytes::Bytes;
use http_body_util::Full;
use rampart_core::{body::ReplayBody, testing::LogBuffer};
use rampart_dead_letter::{DeadLetterLayer, DeadLetterStore, Filter, Query, SqliteStore};
use tower::{Layer, ServiceExt, service_fn};

const SECRETS: [&str; 8] = [
    "hunter2",
    "TOKQUERY",
    "SIGQUERY",
    "KEYHEADER",
    "TOKHEADER",
    "AMZTOKEN",
    "BEARERTOK",
    "COOKIEVAL",
];

#[test]
fn planted_secrets_are_not_stored_logged_or_shown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let id = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let store = Arc::new(SqliteStore::open(&path).unwrap());
                let layer = DeadLetterLayer::builder("hooks", store.clone())
                    .keep_query("page")
                    .build()
                    .unwrap();
                // A transport error that quotes the URL, as reqwest's do.
                let svc = layer.layer(service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| {
                    let uri = req.uri().to_string();
                    async move {
                        Err::<http::Response<Full<Bytes>>, _>(std::io::Error::other(format!(
                            "error sending request for url ({uri}): connection reset"
                        )))
                    }
                }));
                let req = http::Request::post(
                    "http://ops:hunter2@127.0.0.1:9/hooks?token=TOKQUERY&X-Amz-Signature=SIGQUERY&page=2",
                )
                .header("x-api-key", "KEYHEADER")
                .header("x-auth-token", "TOKHEADER")
                .header("x-amz-security-token", "AMZTOKEN")
                .header("authorization", "Bearer BEARERTOK")
                .header("cookie", "sid=COOKIEVAL")
                .header("idempotency-key", "order-1")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
                let err = svc.oneshot(req).await.unwrap_err();
                assert!(err.to_string().contains("dead-lettered"), "{err}");
                let records = store.list(&Query::new(Filter::all(), 10)).await.unwrap();
                assert_eq!(records.len(), 1);
                let json = records[0].to_json();
                for s in SECRETS {
                    assert!(!json.contains(s), "{s} stored: {json}");
                }
                // What is not secret is kept: the path, the allow-listed value, the key.
                assert!(
                    json.contains("/hooks?token=[redacted]&X-Amz-Signature=[redacted]&page=2"),
                    "{json}"
                );
                assert!(json.contains("order-1"), "{json}");
                assert!(records[0].target.query_redacted);
                records[0].id
            })
    });
    let logged = logs.contents();
    assert!(logged.contains("dead-lettered"), "{logged}");
    for s in SECRETS {
        assert!(!logged.contains(s), "{s} logged: {logged}");
    }

    let store = format!("sqlite:{}", path.display());
    for args in [
        vec!["dlq", "list"],
        vec!["dlq", "list", "--json"],
        vec!["dlq", "show", &id.to_string()],
        vec!["dlq", "show", &id.to_string(), "--json"],
    ] {
        let out = Command::cargo_bin("rampart")
            .unwrap()
            .env_remove("RAMPART_STORE")
            .arg("--store")
            .arg(&store)
            .args(&args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("/hooks"), "{args:?}: {shown}");
        for s in SECRETS {
            assert!(!shown.contains(s), "{s} shown by {args:?}: {shown}");
        }
    }
}
