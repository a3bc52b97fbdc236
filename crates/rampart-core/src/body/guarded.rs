//! A response body that holds a value until the stream ends.
//!
//! A policy that must keep something for as long as a response streams (a bulkhead permit, a
//! concurrency slot) wraps the body: the guard is dropped as soon as the body reports its end
//! (its last frame, an error, or `is_end_stream`), or when the body itself is dropped early.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A body that drops `guard` when the stream ends or the body is dropped.
    ///
    /// ```
    /// use http_body_util::{BodyExt, Full};
    /// use rampart_core::body::GuardedBody;
    /// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
    ///
    /// struct Flag(Arc<AtomicBool>);
    /// impl Drop for Flag {
    ///     fn drop(&mut self) { self.0.store(true, Ordering::SeqCst) }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let released = Arc::new(AtomicBool::new(false));
    /// let body = GuardedBody::new(Full::new(bytes::Bytes::from("hi")), Flag(released.clone()));
    /// let mut body = std::pin::pin!(body);
    /// let frame = body.frame().await.unwrap().unwrap();
    /// assert_eq!(frame.into_data().unwrap(), "hi");
    /// assert!(released.load(Ordering::SeqCst), "released with the last frame");
    /// # }
    /// ```
    pub struct GuardedBody<B, G> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> GuardedBody<B, G> {
    /// Wraps `inner`, holding `guard` until it ends.
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// `true` while the guard is held.
    pub fn is_holding(&self) -> bool {
        self.guard.is_some()
    }
}

impl<B: std::fmt::Debug, G> std::fmt::Debug for GuardedBody<B, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedBody")
            .field("inner", &self.inner)
            .field("holding", &self.guard.is_some())
            .finish()
    }
}

impl<B: Body, G> Body for GuardedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = ready!(inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(_)) if !inner.is_end_stream() => {}
            _ => drop(this.guard.take()),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
