//! A per-tenant rate limit in a real axum server, called over loopback: a tenant over its
//! quota gets `429` with `Retry-After` and the IETF `RateLimit-Policy`/`RateLimit` headers and
//! a problem+json body, while another tenant goes on; every connection (axum builds the stack
//! anew for each) shares the one limit.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use axum::{Router, error_handling::HandleErrorLayer, routing::get};
use http::{Request, StatusCode, header::RETRY_AFTER};
use http_body_util::{BodyExt, Empty};
use rampart::{
    ServiceBuilderExt,
    core::key::ByHeader,
    rate_limit::{Quota, RateLimitLayer},
};
use rampart_tests::{http_client, serve};
use tower::ServiceBuilder;

#[tokio::test]
async fn a_tenant_over_its_quota_gets_429_with_the_ratelimit_headers_and_others_go_on() {
    let limit = RateLimitLayer::builder(Quota::per_minute(3))
        .name("api")
        .keyed(ByHeader::new(http::HeaderName::from_static("x-tenant")))
        .unwrap();
    let handle = limit.handle();
    let app = Router::new().route("/items", get(|| async { "[]" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(rampart::axum::handle_error))
            .rate_limits(limit),
    );
    let addr = serve(app).await;
    let client = http_client();
    let call = |tenant: &'static str| {
        let client = client.clone();
        async move {
            let req = Request::get(format!("http://{addr}/items"))
                .header("x-tenant", tenant)
                .body(Empty::new())
                .unwrap();
            client.request(req).await.unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(call("acme").await.status(), StatusCode::OK);
    }
    let refused = call("acme").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // One unit every 20 s: the next fits in 20 s.
    assert_eq!(refused.headers()[RETRY_AFTER], "20");
    assert_eq!(refused.headers()["ratelimit-policy"], r#""limit";q=3;w=60"#);
    assert_eq!(refused.headers()["ratelimit"], r#""limit";r=0;t=60"#);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body = refused.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:rampart:rate-limited");
    assert_eq!(problem["status"], 429);

    assert_eq!(
        call("globex").await.status(),
        StatusCode::OK,
        "another tenant goes on"
    );
    let stats = handle.stats();
    assert_eq!((stats.admitted, stats.rejected), (4, 1));
}
