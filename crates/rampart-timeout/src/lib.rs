//! Timeouts for tower HTTP and gRPC services, by operation class, with the deadline carried to
//! the layers inside and to the server.
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::error::{Elapsed, find};
//! use rampart_timeout::{OperationClass, TimeoutLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let timeouts = TimeoutLayer::builder()
//!     .class("request", Duration::from_secs(30))
//!     .class("upload", Duration::from_secs(120))
//!     .layer()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(timeouts)
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(60)).await; // a slow upstream
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     }));
//!
//! // An ordinary request gets the `request` class: 30 s.
//! let err = svc.clone().oneshot(http::Request::new(())).await.unwrap_err();
//! assert!(find::<Elapsed>(&err).is_some());
//! assert_eq!(err.to_string(), "request (class `request`) timed out after 30s");
//!
//! // An upload, so marked by an extension (or by a classifier function), gets 120 s.
//! let mut upload = http::Request::new(());
//! upload.extensions_mut().insert(OperationClass("upload"));
//! assert!(svc.oneshot(upload).await.is_ok());
//! # }
//! ```
//!
//! # Classes
//!
//! A request's class comes from the [classifier](TimeoutConfigBuilder::classify) (by default,
//! an [`OperationClass`] extension, else `request`). The builder starts with the usual classes:
//!
//! | class | timeout |
//! |---|---|
//! | `connect` | 5 s |
//! | `request` | 30 s (the default class) |
//! | `upload` | 120 s |
//! | `long_poll` | 300 s |
//!
//! # Deadlines
//!
//! The timeout becomes a [`Deadline`](rampart_core::deadline::Deadline) in the request's
//! extensions, tightened against any deadline already there: a layer inside with a longer
//! timeout keeps to the outer one, and rampart's retry layer does not wait for a retry past it.
//! So one layer serves as both:
//!
//! - a **total deadline**, outside the retries: every attempt and every wait fits in it;
//! - a **per-attempt timeout**, inside the retries: each attempt is cut off on its own.
//!
//! With [`grpc_timeout_header`](TimeoutConfigBuilder::grpc_timeout_header) the time left is
//! sent as `grpc-timeout`, so a gRPC server stops working on a call its client has given up
//! on; and a server-side layer honours a `grpc-timeout` it receives, if it is tighter.
//!
//! # Metrics
//!
//! `rampart_timeout_elapsed_total{name, class}`: calls timed out, by the layer's
//! [`name`](TimeoutConfigBuilder::name) and the operation class.
//!
//! # Errors
//!
//! Expiry is a [`DeadlineExceeded`] (as `PolicyError::Rejected`): it names the class and the
//! timeout, and its source is `rampart_core::error::Elapsed`, which every rampart timeout
//! has, so one `find::<Elapsed>` recognises them all. The `rampart` facade maps it to
//! `504 Gateway Timeout` and to `DEADLINE_EXCEEDED`.
//!
//! The inner future is dropped at expiry, which cancels it; a body already streaming when the
//! response head arrived is not timed (put a timeout on reading it if you need one).

mod class;
mod config;
mod error;
mod layer;
mod service;

pub use crate::{
    class::{ClassifyOperation, OperationClass, RequestHead, default_classify},
    config::{MAX_TIMEOUT, TimeoutConfig, TimeoutConfigBuilder},
    error::{DeadlineExceeded, TimeoutError},
    layer::TimeoutLayer,
    service::{ResponseFuture, Timeout},
};
