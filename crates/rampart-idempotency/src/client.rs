//! [`IdempotencyKeyLayer`]: the client half of the protocol.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Method, Request};
use rampart_core::key::IdempotencyKey;
use tower_layer::Layer;

use rampart_core::body::ReplayBody;
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

/// Makes the key of a request that has none.
pub trait MakeKey<B>: Clone + Send + Sync + 'static {
    /// The key for the request with this head and body.
    fn make_key(&self, parts: &http::request::Parts, body: &B) -> HeaderValue;
}

impl<B> MakeKey<B> for KeyKind {
    fn make_key(&self, parts: &http::request::Parts, _: &B) -> HeaderValue {
        new_key(self, parts)
    }
}

/// Deterministic keys: the SHA-256 of the method, the URI and the body, in hex, so that the
/// same operation with the same parameters always gets the same key (a client that crashes
/// and sends the request again is recognised by the server). See
/// [`IdempotencyKeyLayer::sha256`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Key;

impl<B: Send + 'static> MakeKey<ReplayBody<B>> for Sha256Key {
    fn make_key(&self, parts: &http::request::Parts, body: &ReplayBody<B>) -> HeaderValue {
        sha256_key(parts, body)
    }
}

/// [`IdempotencyKeyLayer`]: one idempotency key per logical request, so that a retried `POST`
/// does its work once.
///
/// In the spirit of tower-http's `SetRequestId`: the layer sets a header (`Idempotency-Key` by
/// default) on requests of the configured methods (`POST` and `PATCH` by default), unless the
/// caller already set one, which is never overwritten. Either way the key is also put in the
/// request's extensions as an [`IdempotencyKey`], for the layers inside (retries replay the
/// header with the request; dead letters record the key).
///
/// Put it *outside* the retry layer: it then runs once per logical request, and every attempt
/// carries the same key. [`IdempotencyKeyLayer::sha256`] makes deterministic keys instead: a
/// hash of the method, the URI and the body.
///
/// ```
/// use rampart_core::key::IdempotencyKey;
/// use rampart_idempotency::IdempotencyKeyLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = IdempotencyKeyLayer::new().layer(service_fn(|req: http::Request<()>| async move {
///     let header = req.headers().get("idempotency-key").cloned();
///     Ok::<_, std::convert::Infallible>((header, IdempotencyKey::of(&req).cloned()))
/// }));
/// let req = http::Request::post("/charges").body(()).unwrap();
/// let (header, key) = svc.oneshot(req).await.unwrap();
/// let header = header.expect("a key was set");
/// assert_eq!(header.len(), 36, "a UUID");
/// assert_eq!(key, Some(IdempotencyKey(header)));
/// # }
/// ```
///
/// `M` makes the keys: [`KeyKind`] (random UUIDs, the default, or a function of the head) or
/// [`Sha256Key`] (deterministic).
#[derive(Debug, Clone)]
pub struct IdempotencyKeyLayer<M = KeyKind> {
    header: HeaderName,
    methods: Arc<[Method]>,
    make: M,
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
            header: HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
            methods: Arc::from([Method::POST, Method::PATCH]),
            make: KeyKind::V7,
        }
    }

    /// Makes keys this way instead.
    pub fn kind(mut self, kind: KeyKind) -> Self {
        self.make = kind;
        self
    }

    /// Makes *deterministic* keys instead: the SHA-256 of the method, the URI and the body.
    ///
    /// It needs the body in memory: put it *inside* a body-buffering layer such as
    /// rampart-retry's `BufferBodyLayer` (and outside the retry layer), which hands it a
    /// [`ReplayBody`]. A body too large to hold gets a random UUID v7 instead: it is sent once
    /// anyway.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use rampart_core::key::IdempotencyKey;
    /// use rampart_core::body::ReplayBody;
    /// use rampart_idempotency::IdempotencyKeyLayer;
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = ServiceBuilder::new()
    ///     .layer(IdempotencyKeyLayer::sha256())
    ///     .service(service_fn(|req: http::Request<ReplayBody<Full<Bytes>>>| async move {
    ///         Ok::<_, std::convert::Infallible>(IdempotencyKey::of(&req).cloned())
    ///     }));
    /// // What a buffering layer hands on: the whole body, in memory.
    /// let post = || {
    ///     let body = ReplayBody::Buffered { data: Some(Bytes::from("{\"amount\":42}")), trailers: None };
    ///     http::Request::post("/charges").body(body).unwrap()
    /// };
    /// let a = svc.clone().oneshot(post()).await.unwrap().unwrap();
    /// let b = svc.oneshot(post()).await.unwrap().unwrap();
    /// assert_eq!(a, b, "the same operation, the same key");
    /// assert_eq!(a.0.len(), 64);
    /// # }
    /// ```
    ///
    /// **Identical operations share a key, whoever makes them.** Two users who each send
    /// `POST /charges {"amount":42}` get the same key, and a server that deduplicates by key
    /// alone answers the second with the first's response: the second charge never happens,
    /// and the second user sees the first's result. Use it only with a server that scopes keys
    /// by caller (rampart-idempotency does, with its `caller` function: a key is looked up per
    /// authenticated caller), or put who is calling in the request it hashes (a header such
    /// as the tenant's, or in the path). Otherwise use [`new`](Self::new): a random key per
    /// logical request.
    ///
    pub fn sha256() -> IdempotencyKeyLayer<Sha256Key> {
        let base = Self::new();
        IdempotencyKeyLayer {
            header: base.header,
            methods: base.methods,
            make: Sha256Key,
        }
    }
}

impl<M> IdempotencyKeyLayer<M> {
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
}

impl<S, M: Clone> Layer<S> for IdempotencyKeyLayer<M> {
    type Service = SetIdempotencyKey<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        SetIdempotencyKey {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`IdempotencyKeyLayer`].
#[derive(Debug, Clone)]
pub struct SetIdempotencyKey<S, M = KeyKind> {
    inner: S,
    layer: IdempotencyKeyLayer<M>,
}

impl<S, M> SetIdempotencyKey<S, M> {
    rampart_core::inner_service_accessors!();
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

fn sha256_key<B>(parts: &http::request::Parts, body: &ReplayBody<B>) -> HeaderValue {
    use sha2::{Digest, Sha256};
    let ReplayBody::Buffered { data, .. } = body else {
        return new_key(&KeyKind::V7, parts);
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str().as_bytes());
    h.update(b"\n");
    h.update(parts.uri.to_string().as_bytes());
    h.update(b"\n");
    h.update(data.as_deref().unwrap_or_default());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid-digest"))
}

impl<S, M, B> Service<Request<B>> for SetIdempotencyKey<S, M>
where
    S: Service<Request<B>>,
    M: MakeKey<B>,
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
        let req = if let Some(value) = req.headers().get(&layer.header).cloned() {
            // The caller's key is never overwritten; it is only made visible inside.
            let mut req = req;
            req.extensions_mut().insert(IdempotencyKey(value));
            req
        } else if layer.methods.contains(req.method()) {
            let (mut parts, body) = req.into_parts();
            let value = layer.make.make_key(&parts, &body);
            parts.headers.insert(layer.header.clone(), value.clone());
            parts.extensions.insert(IdempotencyKey(value));
            Request::from_parts(parts, body)
        } else {
            req
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

    #[tokio::test]
    async fn sha256_keys_are_deterministic_and_differ_by_parameters() {
        use bytes::Bytes;
        use http_body_util::Full;
        use tower::ServiceBuilder;

        // A buffering layer's part: bodies of up to 16 bytes held whole, larger ones streamed.
        let buffer = |req: Request<Bytes>| {
            req.map(|data| {
                if data.len() <= 16 {
                    ReplayBody::Buffered {
                        data: Some(data),
                        trailers: None,
                    }
                } else {
                    ReplayBody::Streaming {
                        prefix: None,
                        rest: Full::new(data),
                    }
                }
            })
        };
        let svc = ServiceBuilder::new()
            .map_request(buffer)
            .layer(IdempotencyKeyLayer::sha256())
            .service(service_fn(
                |req: Request<ReplayBody<Full<Bytes>>>| async move {
                    Ok::<_, Infallible>(req.headers().get("idempotency-key").cloned())
                },
            ));
        let key = |method: Method, uri: &'static str, body: &'static str| {
            let svc = svc.clone();
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .body(Bytes::from_static(body.as_bytes()))
                .unwrap();
            async move { svc.oneshot(req).await.unwrap() }
        };
        let a = key(Method::POST, "/charges", "42").await.unwrap();
        assert_eq!(a, key(Method::POST, "/charges", "42").await.unwrap());
        assert_ne!(a, key(Method::POST, "/charges", "43").await.unwrap());
        assert_ne!(a, key(Method::POST, "/refunds", "42").await.unwrap());
        assert_ne!(a, key(Method::PATCH, "/charges", "42").await.unwrap());
        assert!(key(Method::GET, "/charges", "").await.is_none());
        // Known digest of "POST\n/charges\n42".
        use sha2::{Digest, Sha256};
        let want: String = Sha256::digest(b"POST\n/charges\n42")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a, want.as_str());
        // Too large to hold: a random key, a fresh one each time.
        let big = "x".repeat(17).leak();
        let r1 = key(Method::POST, "/charges", big).await.unwrap();
        let r2 = key(Method::POST, "/charges", big).await.unwrap();
        assert_ne!(r1, r2);
        assert_eq!(r1.len(), 36);
    }
}
