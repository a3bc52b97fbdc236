//! Graceful degradation for tower HTTP services: when the inner service fails (an error, a
//! `5xx`, a `429`, a rampart rejection), answer from
//!
//! 1. the **last good response** for the same request, cached per key (bounded, with a time
//!    to live), marked fresh, stale or very stale;
//! 2. else a **chain of alternatives**, tried in the order they were added, each when the one
//!    before had nothing: **static responses** (they always answer), **functions** and
//!    **services** (an `Err` passes on to the next; the last one's error reaches the caller),
//!    e.g. *cache → queue for later → local answer*;
//! 3. else the failure as it was.
//!
//! A function sees the request's method, URI, headers and, when a layer further out holds it
//! in memory (rampart-retry's `BufferBodyLayer`, the dead-letter layer: a
//! [`BufferedBody`](rampart_core::body::BufferedBody) in the extensions), its body; and the
//! failure (status or error).
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use rampart_fallback::{FALLBACK, FallbackAnswer, FallbackLayer, LastGood, Source, Staleness, StaticResponse};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = FallbackLayer::builder()
//!     .cache(LastGood::builder().fresh_for(Duration::from_secs(30)).build().unwrap())
//!     .static_response(StaticResponse::new(http::StatusCode::OK, "[]"))
//!     .build();
//! let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
//! let svc = layer.layer(service_fn({
//!     let up = up.clone();
//!     move |_req: http::Request<()>| {
//!         let ok = up.load(std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             let mut res = http::Response::new(Full::new(Bytes::from("[\"a\",\"b\"]")));
//!             if !ok { *res.status_mut() = http::StatusCode::BAD_GATEWAY; }
//!             Ok::<_, std::io::Error>(res)
//!         }
//!     }
//! }));
//! let get = || http::Request::get("http://catalog/items").body(()).unwrap();
//!
//! // A good answer passes through, and is remembered.
//! let res = svc.clone().oneshot(get()).await.unwrap();
//! assert!(res.headers().get(FALLBACK).is_none());
//! res.into_body().collect().await.unwrap();
//!
//! // The upstream fails: the last good answer stands in, marked as such.
//! up.store(false, std::sync::atomic::Ordering::SeqCst);
//! let res = svc.clone().oneshot(get()).await.unwrap();
//! assert_eq!(res.headers()[FALLBACK], "cache; staleness=fresh; age=0");
//! let info = *res.extensions().get::<FallbackAnswer>().unwrap();
//! assert!(matches!(info.source, Source::Cache { staleness: Staleness::Fresh, .. }));
//! assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "[\"a\",\"b\"]");
//!
//! // A request never answered well gets the static response.
//! let other = http::Request::get("http://catalog/other").body(()).unwrap();
//! let res = svc.oneshot(other).await.unwrap();
//! assert_eq!(res.headers()[FALLBACK], "static");
//! # }
//! ```
//!
//! # Telling a fallback answer apart
//!
//! Every fallback answer has the [`FALLBACK`] header (`cache; staleness=…; age=<seconds>`,
//! `static` or `function`) and a [`FallbackAnswer`] extension saying where it came from and
//! which failure status it replaced. A client never mistakes it for a live answer unless it
//! ignores both.
//!
//! # Trade-offs
//!
//! - The layer never holds back the request body itself: the inner service streams it, and a
//!   function only sees it when a buffering layer outside already held it, so that a layer
//!   with no function costs no copy. Keeping the head for functions costs a clone of the
//!   headers per request, only when a function is configured.
//! - Only `2xx` answers to `GET` and `HEAD` are cached by default: a cached answer to a `POST`
//!   would claim work was done that was not.
//! - A good response's body is copied as it streams (up to the cache's `max_body`) and stored
//!   when it ends; a body that fails, or one that is dropped before its end, is not stored.
//! - The cache is per process. Keys are the route by default, so by default nothing personal
//!   is cached: a request with `Authorization` or `Cookie` neither uses nor fills the cache, a
//!   response marked `Cache-Control: private` or `no-store` is not kept, and `Set-Cookie` is
//!   never stored. Key by tenant or user too ([`FallbackLayer::key`]) and say so
//!   ([`key_has_identity`](FallbackBuilder::key_has_identity)) to cache answers per caller.
//!
//! # Metrics
//!
//! `rampart_fallback_answers_total{name, source=fresh|stale|very-stale|static|function}` (`name` from `FallbackBuilder::name`).

mod answer;
mod body;
mod cache;
mod layer;
mod service;
mod shared;

pub use crate::{
    answer::{FALLBACK, Failed, FallbackAnswer, Source, StaticResponse},
    body::FallbackBody,
    cache::{LastGood, LastGoodBuilder, Staleness},
    layer::{FallbackBuilder, FallbackLayer, default_is_failure},
    service::{Fallback, ResponseFuture},
};
