//! [`RateLimitMiddleware`]: rampart-rate-limit's limits in a reqwest-middleware client.

use std::fmt;

use http::Extensions;
use rampart_rate_limit::{Cost, Limit, RateLimitLayer};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::error::middleware_error;

/// A rate limit in front of a reqwest client: the same GCRA limit, costs, keys, wait,
/// shadow mode, handle and metrics as [`RateLimitLayer`], shared with any tower client built
/// from the same layer.
///
/// A request over the limit is not sent: the caller gets `Error::Middleware` holding the
/// same [`RateLimited`](rampart_core::rejection::RateLimited) the tower layer returns
/// ([`find`](crate::find) finds it). With a `max_wait`, a request waits its turn first. Put
/// it inside a [`RetryMiddleware`](crate::RetryMiddleware) to limit the retries too.
///
/// ```
/// use rampart_rate_limit::{Quota, RateLimitLayer};
/// use rampart_reqwest::{ByHost, RateLimitMiddleware};
///
/// // 10 a second per host, 5 at once.
/// let per_host = RateLimitMiddleware::new(
///     RateLimitLayer::builder(Quota::per_second(10).burst(5)).keyed(ByHost).unwrap(),
/// );
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(per_host)
///     .build();
/// # let _ = client;
/// ```
pub struct RateLimitMiddleware<L, C> {
    layer: RateLimitLayer<L, C>,
}

impl<L, C: Clone> Clone for RateLimitMiddleware<L, C> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
        }
    }
}

impl<L, C> fmt::Debug for RateLimitMiddleware<L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitMiddleware")
            .field("layer", &self.layer)
            .finish()
    }
}

impl<L, C> RateLimitMiddleware<L, C> {
    /// The limit of `layer` (shared with it and its clones).
    pub fn new(layer: RateLimitLayer<L, C>) -> Self {
        Self { layer }
    }

    /// The layer, for its handle.
    pub fn layer(&self) -> &RateLimitLayer<L, C> {
        &self.layer
    }
}

impl<L, C> RateLimitMiddleware<L, C>
where
    L: Limit<Request>,
    C: Cost<Request>,
{
    async fn call(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        match self.layer.check(&req) {
            Ok(None) => {}
            Ok(Some(wait)) => tokio::time::sleep(wait).await,
            Err(refused) => return Err(middleware_error(refused)),
        }
        next.run(req, extensions).await
    }
}

impl<L, C> Middleware for RateLimitMiddleware<L, C>
where
    L: Limit<Request>,
    C: Cost<Request>,
{
    forward_to_call!();
}
