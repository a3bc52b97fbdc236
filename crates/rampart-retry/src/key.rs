//! [`IdempotencyKeyLayer`]: one idempotency key per logical request, so that a retried `POST`
//! does its work once.
//!
//! In the spirit of tower-http's `SetRequestId`: the layer sets a header (`Idempotency-Key` by
//! default) on requests of the configured methods (`POST` and `PATCH` by default), unless the
//! caller already set one, which is never overwritten. Either way the key is also put in the
//! request's extensions as an [`IdempotencyKey`], for the layers inside (retries replay the
//! header with the request; dead letters record the key).
//!
//! Put it *outside* the retry layer: it then runs once per logical request, and every attempt
//! carries the same key.
//!
//! ```
//! use rampart_core::key::IdempotencyKey;
//! use rampart_retry::key::IdempotencyKeyLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = IdempotencyKeyLayer::new().layer(service_fn(|req: http::Request<()>| async move {
//!     let header = req.headers().get("idempotency-key").cloned();
//!     Ok::<_, std::convert::Infallible>((header, IdempotencyKey::of(&req).cloned()))
//! }));
//! let req = http::Request::post("/charges").body(()).unwrap();
//! let (header, key) = svc.oneshot(req).await.unwrap();
//! let header = header.expect("a key was set");
//! assert_eq!(header.len(), 36, "a UUID");
//! assert_eq!(key, Some(IdempotencyKey(header)));
//! # }
//! ```

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Method, Request};
use rampart_core::key::IdempotencyKey;
use tower_layer::Layer;
use tower_service::Service;

/// How a new key is made.
#[derive(Clone, Default)]
pub enum KeyKind {
    /// A random UUID v4.
    V4,
    /// A UUID v7: random, and sortable by time (the default: keys of one client sort by when
    /// the request was made, which helps the server's storage).
    #[default]
    V7,
    /// A function of the request head, e.g. a hash of the operation and its parameters for
    /// deterministic keys. It must return a valid header value.
    Custom(Arc<dyn Fn(&http::request::Parts) -> HeaderValue + Send + Sync>),
}

impl fmt::Debug for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::V4 => f.write_str("V4"),
            KeyKind::V7 => f.write_str("V7"),
            KeyKind::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Sets one idempotency key per request; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct IdempotencyKeyLayer {
    header: HeaderName,
    methods: Arc<[Method]>,
    kind: KeyKind,
}

impl Default for IdempotencyKeyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl IdempotencyKeyLayer {
    /// `Idempotency-Key`, a UUID v7, on `POST` and `PATCH`.
    pub fn new() -> Self {
        Self {
            header: HeaderName::from_static("idempotency-key"),
            methods: Arc::from([Method::POST, Method::PATCH]),
            kind: KeyKind::V7,
        }
    }

    /// Uses the header `name` instead.
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Sets keys on requests of these methods instead.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Makes keys this way instead.
    pub fn kind(mut self, kind: KeyKind) -> Self {
        self.kind = kind;
        self
    }
}

impl<S> Layer<S> for IdempotencyKeyLayer {
    type Service = SetIdempotencyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetIdempotencyKey {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`IdempotencyKeyLayer`].
#[derive(Debug, Clone)]
pub struct SetIdempotencyKey<S> {
    inner: S,
    layer: IdempotencyKeyLayer,
}

impl<S> SetIdempotencyKey<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes this, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn new_key(kind: &KeyKind, parts: &http::request::Parts) -> HeaderValue {
    let uuid = match kind {
        KeyKind::V4 => uuid::Uuid::new_v4(),
        KeyKind::V7 => uuid::Uuid::now_v7(),
        KeyKind::Custom(f) => return f(parts),
    };
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut buf);
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid-uuid"))
}

impl<S, B> Service<Request<B>> for SetIdempotencyKey<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let layer = &self.layer;
        let existing = req.headers().get(&layer.header).cloned();
        let req = match existing {
            Some(value) => {
                // The caller's key is never overwritten; it is only made visible inside.
                let mut req = req;
                req.extensions_mut().insert(IdempotencyKey(value));
                req
            }
            None if layer.methods.contains(req.method()) => {
                let (mut parts, body) = req.into_parts();
                let value = new_key(&layer.kind, &parts);
                parts.headers.insert(layer.header.clone(), value.clone());
                parts.extensions.insert(IdempotencyKey(value));
                Request::from_parts(parts, body)
            }
            None => req,
        };
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    type Seen = (Option<HeaderValue>, Option<IdempotencyKey>);

    async fn send(layer: IdempotencyKeyLayer, req: Request<()>) -> Seen {
        layer
            .layer(service_fn(|req: Request<()>| async move {
                let header = req.headers().get("idempotency-key").cloned();
                Ok::<_, Infallible>((header, IdempotencyKey::of(&req).cloned()))
            }))
            .oneshot(req)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sets_a_fresh_v7_key_on_post_and_patch_only() {
        let (a, _) = send(
            IdempotencyKeyLayer::new(),
            Request::post("/").body(()).unwrap(),
        )
        .await;
        let (b, _) = send(
            IdempotencyKeyLayer::new(),
            Request::patch("/").body(()).unwrap(),
        )
        .await;
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a, b, "one key per logical request");
        let uuid = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let (none, ext) = send(
            IdempotencyKeyLayer::new(),
            Request::get("/").body(()).unwrap(),
        )
        .await;
        assert!(none.is_none() && ext.is_none(), "GET is idempotent already");
    }

    #[tokio::test]
    async fn never_overwrites_the_callers_key_but_exposes_it() {
        let req = Request::post("/")
            .header("idempotency-key", "caller-chose-this")
            .body(())
            .unwrap();
        let (header, ext) = send(IdempotencyKeyLayer::new(), req).await;
        assert_eq!(header.unwrap(), "caller-chose-this");
        assert_eq!(ext.unwrap().0, "caller-chose-this");
    }

    #[tokio::test]
    async fn header_methods_and_kind_are_configurable() {
        let layer = IdempotencyKeyLayer::new()
            .header(HeaderName::from_static("x-request-key"))
            .methods([Method::PUT])
            .kind(KeyKind::Custom(Arc::new(|parts| {
                HeaderValue::from_str(&format!("{} {}", parts.method, parts.uri.path())).unwrap()
            })));
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().get("x-request-key").cloned())
        }));
        let key = svc
            .clone()
            .oneshot(Request::put("/orders/7").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(key.unwrap(), "PUT /orders/7");
        let none = svc
            .oneshot(Request::post("/orders").body(()).unwrap())
            .await
            .unwrap();
        assert!(none.is_none(), "POST is not in the configured methods");
        let (v4, _) = send(
            IdempotencyKeyLayer::new().kind(KeyKind::V4),
            Request::post("/").body(()).unwrap(),
        )
        .await;
        let uuid = uuid::Uuid::parse_str(v4.unwrap().to_str().unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
    }
}
