//! [`Retry`] and its [`ResponseFuture`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use rampart_core::{
    BoxFuture,
    classify::{Classify, FailureKind, Outcome},
    error::BoxError,
};
use tokio::time::{Instant, Sleep};
use tower::util::Oneshot;
use tower_service::Service;

use crate::{
    error::{LastError, RetryError},
    hook::{NoHook, OnAttempt, Prepared, Previous},
    policy::{Attempt, Decision, GiveUp, RetryPolicy},
    protocol::{RetryInfo, RetryProtocol, ServerHint},
    replay::{ByClone, Replay},
};

/// A service whose failed calls are retried. Made by [`RetryLayer`](crate::RetryLayer).
///
/// Requests are sent again as the [`Replay`] `R` says (by `Clone` by default), and each retry
/// calls a clone of the inner service, made ready first. The first attempt uses the service
/// `poll_ready` made ready.
///
/// A retry's clone is made from a copy of the inner service kept when the layer was applied,
/// shared by every call's future: a call costs one reference-count increment, not a clone of
/// the whole stack inside (for a breaker, a bulkhead, a timeout and a hyper-util client, a
/// dozen increments on counters every worker thread shares). The trade-off: a retry calls a
/// clone of the service as it was then, so a change made through
/// [`get_mut`](Self::get_mut) reaches first attempts only. Services whose clones share their
/// state (every rampart layer, hyper's and reqwest's clients, tower's `Buffer`) behave the
/// same either way.
pub struct Retry<S, C, H, R = ByClone, A = NoHook> {
    inner: S,
    /// The copy retries clone, with the policy: one `Arc` per call's future.
    shared: Arc<Template<S>>,
    policy: Arc<RetryPolicy>,
    classifier: C,
    hints: H,
    replay: R,
    hook: A,
}

impl<S: Clone, C: Clone, H: Clone, R: Clone, A: Clone> Clone for Retry<S, C, H, R, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            hints: self.hints.clone(),
            replay: self.replay.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<S: fmt::Debug, C, H, R, A> fmt::Debug for Retry<S, C, H, R, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What a call's future shares with every other: the copy of the inner service retries
/// clone, and the policy.
struct Template<S> {
    svc: S,
    policy: Arc<RetryPolicy>,
}

impl<S: Clone, C, H, R, A> Retry<S, C, H, R, A> {
    pub(crate) fn from_parts(
        inner: S,
        policy: Arc<RetryPolicy>,
        classifier: C,
        hints: H,
        replay: R,
        hook: A,
    ) -> Self {
        Self {
            shared: Arc::new(Template {
                svc: inner.clone(),
                policy: policy.clone(),
            }),
            inner,
            policy,
            classifier,
            hints,
            replay,
            hook,
        }
    }
}

impl<S, C, H, R, A> Retry<S, C, H, R, A> {
    rampart_core::inner_service_accessors!();
}

impl<S, C, H, R, A, Req> Service<Req> for Retry<S, C, H, R, A>
where
    S: Service<Req> + Clone,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
    H: RetryProtocol<Req, S::Response, S::Error>,
    A: OnAttempt<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = RetryError<S::Error>;
    type Future = ResponseFuture<S, Req, C, H, R, A>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| RetryError::new(0, GiveUp::Fatal, LastError::Inner(e)))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(budget) = self.policy.budget() {
            budget.deposit();
        }
        let replay_safe = self.hints.replay_safe(&req);
        let deadline = self.hints.deadline(&req);
        let (mut first, stored) = self.replay.keep(req);
        self.hook.before(&mut first, 1);
        self.hints.note_attempt(&first, 1);
        let fut = self.inner.call(first);
        ResponseFuture {
            state: State::First { fut },
            timeout: self
                .policy
                .attempt_timeout()
                .map(|d| Box::pin(tokio::time::sleep(d))),
            ctx: Ctx {
                shared: self.shared.clone(),
                stored,
                replay: self.replay.clone(),
                hook: self.hook.clone(),
                classifier: self.classifier.clone(),
                hints: self.hints.clone(),
                attempts: 0,
                replay_safe,
                started: self.policy.has_deadline().then(Instant::now),
                deadline,
                previous_nanos: 0,
            },
        }
    }
}

/// What the future carries between attempts.
struct Ctx<S, Req, C, H, R: Replay<Req>, A> {
    shared: Arc<Template<S>>,
    stored: Option<R::Stored>,
    replay: R,
    hook: A,
    classifier: C,
    hints: H,
    attempts: u32,
    replay_safe: bool,
    /// When the first attempt started; only read when the policy has a deadline.
    started: Option<Instant>,
    /// The deadline the request carries (from a timeout layer outside), if any.
    deadline: Option<Instant>,
    /// The last wait, in nanoseconds (a `u64` keeps every call's future smaller).
    previous_nanos: u64,
}

/// After an attempt: the final result, or a wait before the next attempt and its request.
enum Next<T, Req> {
    Done(T),
    Wait(Duration, Prepared<Req>),
}

impl<S, Req, C, H, R, A> Ctx<S, Req, C, H, R, A>
where
    S: Service<Req>,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
    H: RetryProtocol<Req, S::Response, S::Error>,
    A: OnAttempt<Req, S::Response, S::Error>,
{
    fn after_attempt(
        &mut self,
        result: Result<Result<S::Response, S::Error>, Duration>,
    ) -> Next<Result<S::Response, RetryError<S::Error>>, Req> {
        self.attempts += 1;
        let judged = match &result {
            // A timed-out attempt: transient, and the server said nothing.
            Err(_) => Some((FailureKind::Transient, ServerHint::None)),
            Ok(r) => match self.classifier.outcome_of(r.as_ref()) {
                Some(Outcome::Failure(kind)) => Some((kind, self.hints.server_hint(r.as_ref()))),
                // Success, ignored, or an outcome only the end of the stream will tell.
                _ => None,
            },
        };
        let Some((kind, hint)) = judged else {
            return Next::Done(self.finish(result, GiveUp::Fatal));
        };
        self.after_failure(result, kind, hint)
    }

    /// A failed attempt: retry after a wait, or give up. Out of line: the success path above
    /// stays small.
    #[cold]
    #[inline(never)]
    fn after_failure(
        &mut self,
        result: Result<Result<S::Response, S::Error>, Duration>,
        kind: FailureKind,
        hint: ServerHint,
    ) -> Next<Result<S::Response, RetryError<S::Error>>, Req> {
        let (server_delay, server_forbids) = match hint {
            ServerHint::None => (None, false),
            ServerHint::After(d) => (Some(d), false),
            ServerHint::DontRetry => (None, true),
        };
        let attempt = Attempt {
            number: self.attempts,
            transient: kind == FailureKind::Transient,
            replay_safe: self.replay_safe,
            replayable: self.stored.is_some(),
            server_delay,
            server_forbids,
            elapsed: self.started.map_or(Duration::ZERO, |t| t.elapsed()),
            previous_delay: Duration::from_nanos(self.previous_nanos),
            // The request's own deadline (from an outer timeout layer) is kept too.
            time_left: self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now())),
        };
        let decision = self.shared.policy.decide(&attempt);
        match decision {
            Decision::Retry { after } => {
                tracing::debug!(
                    target: "rampart::retry",
                    attempt = self.attempts, ?after, ?server_delay, "retrying"
                );
                metrics::counter!(
                    "rampart_retry_retries_total",
                    rampart_core::registry::INSTANCE_LABEL => self.shared.policy.name().clone()
                )
                .increment(1);
                self.previous_nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
                let Some(stored) = self.stored.as_ref() else {
                    // The policy retries only a replayable request.
                    return Next::Done(self.finish(result, GiveUp::NotReplayable));
                };
                let req = self.replay.again(stored);
                let previous = match &result {
                    Ok(Ok(res)) => Previous::Response(res),
                    Ok(Err(e)) => Previous::Error(e),
                    Err(took) => Previous::TimedOut(*took),
                };
                let next = self.hook.before_retry(req, previous, self.attempts + 1);
                Next::Wait(after, next)
            }
            Decision::GiveUp(reason) => {
                tracing::debug!(
                    target: "rampart::retry",
                    attempts = self.attempts, reason = reason.as_str(), "giving up"
                );
                metrics::counter!(
                    "rampart_retry_give_ups_total",
                    rampart_core::registry::INSTANCE_LABEL => self.shared.policy.name().clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                Next::Done(self.finish(result, reason))
            }
        }
    }

    /// The error of a retry whose hook failed to prepare it.
    #[cold]
    fn hook_failed(&self, e: BoxError) -> RetryError<S::Error> {
        tracing::debug!(
            target: "rampart::retry",
            attempts = self.attempts, error = %e, "giving up: the hook preparing the retry failed"
        );
        metrics::counter!(
            "rampart_retry_give_ups_total",
            rampart_core::registry::INSTANCE_LABEL => self.shared.policy.name().clone(),
            "reason" => GiveUp::HookFailed.as_str()
        )
        .increment(1);
        RetryError::new(self.attempts, GiveUp::HookFailed, LastError::Hook(e))
    }

    /// The final result: a response as it came, or the error with the attempts and `reason`.
    fn finish(
        &self,
        result: Result<Result<S::Response, S::Error>, Duration>,
        reason: GiveUp,
    ) -> Result<S::Response, RetryError<S::Error>> {
        match result {
            Ok(Ok(mut res)) => {
                // Only a failure response is "given up on"; a success just says how many.
                let failed = matches!(
                    self.classifier.outcome_of(Ok(&res)),
                    Some(Outcome::Failure(_))
                );
                let info = RetryInfo {
                    gave_up: failed.then_some(reason),
                };
                self.hints.annotate(&mut res, info);
                Ok(res)
            }
            Ok(Err(e)) => Err(RetryError::new(self.attempts, reason, LastError::Inner(e))),
            Err(took) => Err(RetryError::new(
                self.attempts,
                reason,
                LastError::TimedOut(took),
            )),
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        First {
            #[pin]
            fut: S::Future,
        },
        Again {
            #[pin]
            fut: Oneshot<S, Req>,
        },
        Waiting {
            // Boxed: only a retry waits, and it allocates nothing else.
            sleep: Pin<Box<Sleep>>,
            // The request to send after the wait (taken when it ends).
            next: Option<Prepared<Req>>,
        },
        Preparing {
            // The hook's work before the retry.
            fut: BoxFuture<'static, Result<Req, BoxError>>,
        },
        TimedOut,
    }
}

pin_project! {
    /// The response future of [`Retry`]: the current attempt, or the wait before the next.
    pub struct ResponseFuture<S, Req, C, H, R, A>
    where
        S: Service<Req>,
        R: Replay<Req>,
    {
        #[pin]
        state: State<S, Req>,
        // The current attempt's timeout, if the policy has one (boxed: only then allocated).
        timeout: Option<Pin<Box<Sleep>>>,
        ctx: Ctx<S, Req, C, H, R, A>,
    }
}

impl<S, Req, C, H, R, A> fmt::Debug for ResponseFuture<S, Req, C, H, R, A>
where
    S: Service<Req>,
    R: Replay<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.ctx.attempts)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, H, R, A> Future for ResponseFuture<S, Req, C, H, R, A>
where
    S: Service<Req> + Clone,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
    H: RetryProtocol<Req, S::Response, S::Error>,
    A: OnAttempt<Req, S::Response, S::Error>,
{
    type Output = Result<S::Response, RetryError<S::Error>>;

    // Always inlined, with everything but a first attempt that completes at once kept out of
    // line in `drive`: the common case then costs one poll and no call.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let StateProj::First { fut } = this.state.as_mut().project()
            && let Poll::Ready(result) = fut.poll(cx)
        {
            match this.ctx.after_attempt(Ok(result)) {
                Next::Done(out) => return Poll::Ready(out),
                Next::Wait(after, next) => this.state.set(State::Waiting {
                    sleep: Box::pin(tokio::time::sleep(after)),
                    next: Some(next),
                }),
            }
        }
        drive(this.state, this.timeout, this.ctx, cx)
    }
}

/// Every step of a retry future but the first attempt completing at once.
#[inline(never)]
fn drive<S, Req, C, H, R, A>(
    mut state: Pin<&mut State<S, Req>>,
    timeout: &mut Option<Pin<Box<Sleep>>>,
    ctx: &mut Ctx<S, Req, C, H, R, A>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, RetryError<S::Error>>>
where
    S: Service<Req> + Clone,
    R: Replay<Req>,
    C: Classify<S::Response, S::Error>,
    H: RetryProtocol<Req, S::Response, S::Error>,
    A: OnAttempt<Req, S::Response, S::Error>,
{
    loop {
        let attempt = match state.as_mut().project() {
            StateProj::First { fut } => fut.poll(cx),
            StateProj::Again { fut } => fut.poll(cx),
            StateProj::TimedOut => unreachable!("a timed-out attempt is decided at once"),
            StateProj::Waiting { sleep, next } => {
                ready!(sleep.as_mut().poll(cx));
                match next.take() {
                    Some(Prepared::Ready(req)) => send(&mut state, timeout, ctx, req),
                    Some(Prepared::Later(fut)) => state.set(State::Preparing { fut }),
                    None => unreachable!("a wait always has its next request"),
                }
                continue;
            }
            StateProj::Preparing { fut } => {
                match ready!(fut.as_mut().poll(cx)) {
                    Ok(req) => send(&mut state, timeout, ctx, req),
                    Err(e) => return Poll::Ready(Err(ctx.hook_failed(e))),
                }
                continue;
            }
        };
        let result = match attempt {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => {
                let timed_out = timeout
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if !timed_out {
                    return Poll::Pending;
                }
                // Drop the attempt (cancelling it) before deciding.
                state.set(State::TimedOut);
                Err(ctx.shared.policy.attempt_timeout().unwrap_or_default())
            }
        };
        match ctx.after_attempt(result) {
            Next::Done(out) => return Poll::Ready(out),
            Next::Wait(after, next) => state.set(State::Waiting {
                sleep: Box::pin(tokio::time::sleep(after)),
                next: Some(next),
            }),
        }
    }
}

/// Sends the next attempt's request, restarting the per-attempt timeout.
fn send<S, Req, C, H, R, A>(
    state: &mut Pin<&mut State<S, Req>>,
    timeout: &mut Option<Pin<Box<Sleep>>>,
    ctx: &mut Ctx<S, Req, C, H, R, A>,
    req: Req,
) where
    S: Service<Req> + Clone,
    R: Replay<Req>,
    H: RetryProtocol<Req, S::Response, S::Error>,
{
    ctx.hints.note_attempt(&req, ctx.attempts + 1);
    let fut = Oneshot::new(ctx.shared.svc.clone(), req);
    state.set(State::Again { fut });
    if let (Some(t), Some(d)) = (timeout.as_mut(), ctx.shared.policy.attempt_timeout()) {
        t.as_mut()
            .reset(rampart_core::clock::saturating_add(Instant::now(), d));
    }
}
