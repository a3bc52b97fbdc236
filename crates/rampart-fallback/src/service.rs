//! [`Fallback`] and its [`ResponseFuture`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::{body::BufferedBody, error::BoxError, key::KeyExtractor};
use tower_service::Service;

use crate::{
    answer::{FALLBACK, Failed, FallbackAnswer, Source, StaticResponse},
    body::{FallbackBody, Recorder},
    shared::{Alternative, BoxFuture, Shared},
};

/// A service whose failures are answered by a fallback. Made by
/// [`FallbackLayer`](crate::FallbackLayer).
pub struct Fallback<S, K> {
    inner: S,
    shared: Arc<Shared>,
    key: K,
}

impl<S: Clone, K: Clone> Clone for Fallback<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for Fallback<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K> Fallback<S, K> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, key: K) -> Self {
        Self { inner, shared, key }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, K, B, ResB> Service<Request<B>> for Fallback<S, K>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    K: KeyExtractor<Request<B>>,
    K::Key: fmt::Display,
    ResB: Body<Data = Bytes>,
{
    type Response = Response<FallbackBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let personal = req.headers().contains_key(http::header::AUTHORIZATION)
            || req.headers().contains_key(http::header::COOKIE);
        let key = match &shared.cache {
            Some(_)
                if shared.cache_methods.contains(req.method())
                    && (shared.key_has_identity || !personal) =>
            {
                self.key.extract(&req).map(|k| k.to_string())
            }
            _ => None,
        };
        // What a function will see, kept only if one may be called.
        let head = shared
            .alternatives
            .iter()
            .any(|a| matches!(a, Alternative::Function(_)))
            .then(|| Head {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                body: req.extensions().get::<BufferedBody>().map(|b| b.0.clone()),
            });
        ResponseFuture {
            state: State::Calling {
                fut: self.inner.call(req),
            },
            ctx: Ctx {
                shared: shared.clone(),
                key,
                head,
                failed: None,
            },
        }
    }
}

struct Ctx {
    shared: Arc<Shared>,
    key: Option<String>,
    head: Option<Head>,
    /// What the functions of the chain are told, once the inner service failed.
    failed: Option<Failed>,
}

/// The request as a fallback function sees it.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Option<Bytes>,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            fut: F,
        },
        Function {
            fut: BoxFuture<Result<StaticResponse, BoxError>>,
            replaced_status: Option<StatusCode>,
            // Its place in the chain.
            at: usize,
        },
    }
}

pin_project! {
    /// The response future of [`Fallback`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        ctx: Ctx,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

fn answer<B>(
    name: &Arc<str>,
    (status, headers, body): (StatusCode, http::HeaderMap, Bytes),
    info: FallbackAnswer,
) -> Response<FallbackBody<B>> {
    let mut res = Response::new(FallbackBody::full(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res.headers_mut().insert(FALLBACK, info.header());
    res.extensions_mut().insert(info);
    tracing::debug!(target: "rampart::fallback", source = ?info.source, "fallback answered");
    let source = match info.source {
        Source::Cache { staleness, .. } => staleness.as_str(),
        Source::Static => "static",
        Source::Function => "function",
    };
    metrics::counter!(
        "rampart_fallback_answers_total",
        rampart_core::registry::INSTANCE_LABEL => name.clone(),
        "source" => source
    )
    .increment(1);
    res
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
    ResB: Body<Data = Bytes>,
{
    type Output = Result<Response<FallbackBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let ctx = &mut *this.ctx;
                    let (status, error) = match ready!(fut.poll(cx)) {
                        Ok(res) if !(ctx.shared.is_failure)(res.status()) => {
                            return Poll::Ready(Ok(good(ctx, res)));
                        }
                        Ok(res) => (Some(res.status()), Err(res)),
                        Err(e) => {
                            let e: BoxError = e.into();
                            if !(ctx.shared.on_error)(&*e) {
                                return Poll::Ready(Err(e));
                            }
                            (None, Ok(e))
                        }
                    };
                    // The last good answer first.
                    if let (Some(cache), Some(key)) = (&ctx.shared.cache, &ctx.key)
                        && let Some((stored, staleness, age)) = cache.get(key)
                    {
                        let info = FallbackAnswer {
                            source: Source::Cache { staleness, age },
                            replaced_status: status,
                            alternative: 0,
                        };
                        return Poll::Ready(Ok(answer(
                            &ctx.shared.name,
                            (stored.status, stored.headers, stored.body),
                            info,
                        )));
                    }
                    if ctx.shared.alternatives.is_empty() {
                        // Nothing to fall back on: the failure as it was.
                        return Poll::Ready(match error {
                            Err(res) => Ok(res.map(|b| FallbackBody::inner(b, None))),
                            Ok(e) => Err(e),
                        });
                    }
                    let head = ctx.head.take();
                    ctx.failed = Some(failed(head, status, error.ok()));
                    if let Some(done) = next(ctx, &mut this.state, 0, status) {
                        return Poll::Ready(done);
                    }
                }
                StateProj::Function {
                    fut,
                    replaced_status,
                    at,
                } => {
                    let (status, at) = (*replaced_status, *at);
                    match ready!(fut.as_mut().poll(cx)) {
                        Ok(r) => {
                            let info = FallbackAnswer {
                                source: Source::Function,
                                replaced_status: status,
                                alternative: at,
                            };
                            return Poll::Ready(Ok(answer(&this.ctx.shared.name, r.parts(), info)));
                        }
                        Err(e) if at + 1 == this.ctx.shared.alternatives.len() => {
                            return Poll::Ready(Err(e));
                        }
                        Err(e) => {
                            tracing::debug!(
                                target: "rampart::fallback",
                                alternative = at,
                                error = %e,
                                "fallback function had nothing; trying the next alternative"
                            );
                            if let Some(done) = next(this.ctx, &mut this.state, at + 1, status) {
                                return Poll::Ready(done);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the chain's functions are told of the failure.
fn failed(head: Option<Head>, status: Option<StatusCode>, error: Option<BoxError>) -> Failed {
    let head = head.unwrap_or(Head {
        method: Method::default(),
        uri: Uri::default(),
        version: Version::default(),
        headers: HeaderMap::new(),
        body: None,
    });
    Failed {
        method: head.method,
        uri: head.uri,
        version: head.version,
        headers: head.headers,
        body: head.body,
        status,
        error: error.map(Arc::from),
    }
}

/// Tries the alternative at `at`: a static response answers at once (`Some`); a function is
/// set running in `state` (`None`: poll on).
fn next<F, ResB>(
    ctx: &mut Ctx,
    state: &mut Pin<&mut State<F>>,
    at: usize,
    status: Option<StatusCode>,
) -> Option<Result<Response<FallbackBody<ResB>>, BoxError>> {
    match &ctx.shared.alternatives[at] {
        Alternative::Static(r) => {
            let info = FallbackAnswer {
                source: Source::Static,
                replaced_status: status,
                alternative: at,
            };
            Some(Ok(answer(&ctx.shared.name, r.parts(), info)))
        }
        Alternative::Function(f) => {
            let failed = ctx
                .failed
                .clone()
                .unwrap_or_else(|| failed(None, status, None));
            state.set(State::Function {
                fut: f(failed),
                replaced_status: status,
                at,
            });
            None
        }
    }
}

/// A good response: passed on, and recorded for the cache as it streams if it is a `2xx` to a
/// cached method.
fn good<B>(ctx: &mut Ctx, res: Response<B>) -> Response<FallbackBody<B>> {
    let recorder = match (&ctx.shared.cache, ctx.key.take()) {
        (Some(cache), Some(key)) if res.status().is_success() && shareable(res.headers()) => {
            let mut headers = res.headers().clone();
            // A session handed to one caller is never handed to another.
            headers.remove(http::header::SET_COOKIE);
            Some(Box::new(Recorder {
                cache: cache.clone(),
                key,
                status: res.status(),
                headers,
                buf: BytesMut::new(),
            }))
        }
        _ => None,
    };
    res.map(|b| FallbackBody::inner(b, recorder))
}

/// `false` for a response its server says not to keep or share: `Cache-Control: no-store` or
/// `private`.
fn shareable(headers: &http::HeaderMap) -> bool {
    !headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or_default().trim())
        .any(|d| d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private"))
}
