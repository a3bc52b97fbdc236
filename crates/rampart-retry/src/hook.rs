//! Hooks on the attempts ([`OnAttempt`]): change the request before each one ([`on_attempt`],
//! synchronous), or do asynchronous work before a retry, seeing how the attempt before it failed
//! ([`on_retry`]: a `401` answered by refreshing a token, the retry carrying the new one).
//!
//! The layer takes one hook ([`RetryLayer::on_attempt`](crate::RetryLayer::on_attempt)).

use std::{fmt, future::Future, marker::PhantomData, time::Duration};

use rampart_core::{BoxFuture, error::BoxError};

/// What the retry layer calls around each attempt: [`before`](Self::before) just before an
/// attempt is sent (synchronous: set an attempt-count header, a timestamp), and
/// [`before_retry`](Self::before_retry) when a retry has been decided, with the request for it
/// and how the attempt before failed (by default it calls `before`).
///
/// `before` gets the attempt's own copy of the request (attempts are rebuilt from the
/// original, so changes don't pile up) and the attempt's number, from 1. `Res` and `E` are the
/// inner service's response and error types; a hook that does not look at them implements the
/// trait for all of them.
///
/// [`on_attempt`] makes a synchronous hook from a closure, [`on_retry`] an asynchronous one.
pub trait OnAttempt<Req, Res, E>: Clone + Send + Sync + 'static {
    /// Called just before attempt `number` (from 1) is sent.
    fn before(&self, req: &mut Req, number: u32);

    /// Called when attempt `number - 1` failed and attempt `number` was decided, with that
    /// attempt's own copy of the request and how the one before failed; before the backoff
    /// wait. A [`Prepared::Later`] future runs after the wait, and the retry is sent with the
    /// request it yields; if it fails, the retry layer gives up
    /// ([`GiveUp::HookFailed`](crate::policy::GiveUp::HookFailed)) with its error.
    ///
    /// By default: [`before`](Self::before), then the request is ready. An implementation
    /// that overrides this calls `before` itself if it wants it.
    #[inline]
    fn before_retry(
        &self,
        mut req: Req,
        previous: Previous<'_, Res, E>,
        number: u32,
    ) -> Prepared<Req> {
        let _ = previous;
        self.before(&mut req, number);
        Prepared::Ready(req)
    }
}

/// How the attempt before a retry failed.
#[derive(Debug)]
pub enum Previous<'a, Res, E> {
    /// It answered with a failure response (a `401`, a `503`, as the classifier judged it).
    Response(&'a Res),
    /// It failed with the inner service's error.
    Error(&'a E),
    /// It ran out of its per-attempt time.
    TimedOut(Duration),
}

/// The request for a retry: ready now, or after asynchronous work.
pub enum Prepared<Req> {
    /// Send this.
    Ready(Req),
    /// Send what this yields (after the backoff wait); an error ends the retries.
    Later(BoxFuture<'static, Result<Req, BoxError>>),
}

impl<Req> fmt::Debug for Prepared<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Ready(_) => f.write_str("Ready"),
            Prepared::Later(_) => f.write_str("Later"),
        }
    }
}

/// Changes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl<Req, Res, E> OnAttempt<Req, Res, E> for NoHook {
    #[inline]
    fn before(&self, _: &mut Req, _: u32) {}
}

/// A hook made from a closure; see [`on_attempt`].
#[derive(Clone)]
pub struct OnAttemptFn<F>(F);

impl<F> fmt::Debug for OnAttemptFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OnAttemptFn").finish_non_exhaustive()
    }
}

/// Makes a hook from a closure called with the attempt's request and number (from 1).
///
/// ```
/// use rampart_retry::hook::{on_attempt, OnAttempt};
///
/// let hook = on_attempt(|req: &mut http::Request<()>, n: u32| {
///     req.headers_mut().insert("x-attempt", n.into());
/// });
/// let mut req = http::Request::new(());
/// // Called by the retry layer; by hand, say which service's response and error it serves.
/// OnAttempt::<_, http::Response<()>, std::io::Error>::before(&hook, &mut req, 2);
/// assert_eq!(req.headers()["x-attempt"], "2");
/// ```
pub fn on_attempt<F, Req>(f: F) -> OnAttemptFn<F>
where
    F: Fn(&mut Req, u32) + Clone + Send + Sync + 'static,
{
    OnAttemptFn(f)
}

impl<F, Req, Res, E> OnAttempt<Req, Res, E> for OnAttemptFn<F>
where
    F: Fn(&mut Req, u32) + Clone + Send + Sync + 'static,
{
    #[inline]
    fn before(&self, req: &mut Req, number: u32) {
        (self.0)(req, number)
    }
}

/// A hook made from an asynchronous closure; see [`on_retry`].
pub struct OnRetryFn<F, Res, E> {
    f: F,
    _types: PhantomData<fn(&Res, &E)>,
}

impl<F: Clone, Res, E> Clone for OnRetryFn<F, Res, E> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _types: PhantomData,
        }
    }
}

impl<F, Res, E> fmt::Debug for OnRetryFn<F, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRetryFn").finish_non_exhaustive()
    }
}

/// Makes a hook that does asynchronous work before each retry: `f` gets the retry's own copy
/// of the request, how the attempt before failed and the retry's number (from 2), and returns
/// a future of the request to send. The future runs after the backoff wait; an error from it
/// ends the retries ([`GiveUp::HookFailed`](crate::policy::GiveUp::HookFailed)). The first
/// attempt goes out untouched.
///
/// `f` reads what it needs from [`Previous`] at once (it is borrowed); the future it returns
/// owns what it uses.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use rampart_core::error::BoxError;
/// use rampart_retry::hook::{Previous, on_retry};
///
/// /// A token holder: `refresh` stands for a call to the identity provider.
/// #[derive(Clone, Default)]
/// struct Tokens(Arc<Mutex<u32>>);
/// impl Tokens {
///     async fn refresh(&self) -> Result<String, BoxError> {
///         let mut n = self.0.lock().unwrap();
///         *n += 1;
///         Ok(format!("Bearer token-{n}"))
///     }
/// }
///
/// let tokens = Tokens::default();
/// let hook = on_retry(
///     move |mut req: http::Request<()>, previous: Previous<'_, http::Response<()>, BoxError>, _n| {
///         let unauthorized = matches!(previous, Previous::Response(res) if res.status() == 401);
///         let tokens = tokens.clone();
///         async move {
///             if unauthorized {
///                 req.headers_mut().insert("authorization", tokens.refresh().await?.parse()?);
///             }
///             Ok(req)
///         }
///     },
/// );
/// # let _ = hook;
/// ```
pub fn on_retry<F, Fut, Req, Res, E>(f: F) -> OnRetryFn<F, Res, E>
where
    F: Fn(Req, Previous<'_, Res, E>, u32) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Req, BoxError>> + Send + 'static,
{
    OnRetryFn {
        f,
        _types: PhantomData,
    }
}

impl<F, Fut, Req, Res, E> OnAttempt<Req, Res, E> for OnRetryFn<F, Res, E>
where
    F: Fn(Req, Previous<'_, Res, E>, u32) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Req, BoxError>> + Send + 'static,
    Res: 'static,
    E: 'static,
{
    #[inline]
    fn before(&self, _: &mut Req, _: u32) {}

    fn before_retry(&self, req: Req, previous: Previous<'_, Res, E>, number: u32) -> Prepared<Req> {
        Prepared::Later(Box::pin((self.f)(req, previous, number)))
    }
}
