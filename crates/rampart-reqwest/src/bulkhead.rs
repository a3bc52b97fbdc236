//! [`BulkheadMiddleware`]: rampart-bulkhead's permits in a reqwest-middleware client.

use std::fmt;

use http::{Extensions, HeaderName};
use rampart_bulkhead::{
    BulkheadHandle, BulkheadLayer, DefaultClass, KeyedBulkheadLayer, Prioritize, Priority,
};
use rampart_core::key::KeyExtractor;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::{ByHost, error::middleware_error};

/// Bounded concurrency in front of a reqwest client, with priority classes and a bounded
/// wait.
///
/// The permits are rampart-bulkhead's: the same capacity, classes (reservations, borrowing),
/// wait queue (`max_wait`, `max_queued`), handle, stats and metrics as [`BulkheadLayer`]. A
/// request that finds no permit is not sent: the caller gets `Error::Middleware` holding the
/// same [`BulkheadFull`](rampart_bulkhead::BulkheadFull) the tower layer returns
/// ([`find`](crate::find) finds it).
///
/// **Priority class** of a request, first found wins:
///
/// 1. a [`Priority`] in the request's extensions:
///    `client.post(url).with_extension(Priority::new("critical"))`;
/// 2. the prioritizer set with [`prioritize`](Self::prioritize): [`PriorityFromHeader`], or
///    [`priority_fn`](rampart_bulkhead::priority_fn) over `reqwest::Request`;
/// 3. the bulkhead's default class.
///
/// **The permit is held until the response head arrives**, not while the body is read: the
/// bulkhead bounds the requests in flight at the dependency, not how long the caller takes
/// to read responses (the tower layer's default, `OnResponse`). Where the download is the
/// cost, bound it in the code that reads the body.
///
/// ```
/// use std::time::Duration;
/// use rampart_bulkhead::{BulkheadLayer, Priority};
/// use rampart_reqwest::BulkheadMiddleware;
///
/// let bulkhead = BulkheadMiddleware::new(
///     BulkheadLayer::builder()
///         .name("partner-api")
///         .borrowing_class("critical", 10)
///         .class("normal", 5)
///         .class("bulk", 2)
///         .default_class("normal")
///         .max_wait(Duration::from_millis(200))
///         .layer()
///         .unwrap(),
/// );
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(bulkhead)
///     .build();
/// let request = client
///     .post("http://partner.example/orders")
///     .with_extension(Priority::new("critical"));
/// # let _ = request;
/// ```
pub struct BulkheadMiddleware<X = ByHost, P = DefaultClass>
where
    X: KeyExtractor<Request>,
{
    partitions: Partitions<X>,
    prioritize: P,
}

enum Partitions<X: KeyExtractor<Request>> {
    One(BulkheadLayer),
    PerKey(KeyedBulkheadLayer<X, X::Key>),
}

impl<X: KeyExtractor<Request>, P: Clone> Clone for BulkheadMiddleware<X, P> {
    fn clone(&self) -> Self {
        Self {
            partitions: match &self.partitions {
                Partitions::One(l) => Partitions::One(l.clone()),
                Partitions::PerKey(l) => Partitions::PerKey(l.clone()),
            },
            prioritize: self.prioritize.clone(),
        }
    }
}

impl<X: KeyExtractor<Request>, P> fmt::Debug for BulkheadMiddleware<X, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BulkheadMiddleware");
        match &self.partitions {
            Partitions::One(l) => d.field("bulkhead", l),
            Partitions::PerKey(l) => d.field("partitions", l),
        };
        d.finish_non_exhaustive()
    }
}

impl BulkheadMiddleware {
    /// One bulkhead for every request: `layer`'s, shared with any tower client built from it.
    ///
    /// To share a tower layer that has a prioritizer, pass
    /// `layer.clone().prioritize(DefaultClass)`: the bulkhead is kept.
    pub fn new(layer: BulkheadLayer) -> Self {
        Self {
            partitions: Partitions::One(layer),
            prioritize: DefaultClass,
        }
    }
}

impl<X: KeyExtractor<Request>> BulkheadMiddleware<X> {
    /// One partition per key of `layer`'s extractor (a [`KeyExtractor`] over
    /// `reqwest::Request`, e.g. [`ByHost`]), each with the whole configuration to itself;
    /// requests without a key share a fallback partition.
    ///
    /// ```
    /// use rampart_bulkhead::BulkheadLayer;
    /// use rampart_reqwest::{BulkheadMiddleware, ByHost};
    ///
    /// let per_host = BulkheadMiddleware::keyed(
    ///     BulkheadLayer::builder().name("hosts").max_concurrent(8).keyed(ByHost).unwrap(),
    /// );
    /// # let _ = per_host;
    /// ```
    pub fn keyed(layer: KeyedBulkheadLayer<X, X::Key>) -> Self {
        Self {
            partitions: Partitions::PerKey(layer),
            prioritize: DefaultClass,
        }
    }
}

impl<X: KeyExtractor<Request>, P> BulkheadMiddleware<X, P> {
    /// Names the priority class of a request without a [`Priority`] extension with
    /// `prioritize`.
    pub fn prioritize<P2: Prioritize<Request>>(self, prioritize: P2) -> BulkheadMiddleware<X, P2> {
        BulkheadMiddleware {
            partitions: self.partitions,
            prioritize,
        }
    }

    /// The handle of the bulkhead requests with `key` go through (`None`: the fallback
    /// partition of requests without a key), if it exists yet; with one bulkhead, that one
    /// whatever the key.
    pub fn handle(&self, key: Option<&X::Key>) -> Option<BulkheadHandle> {
        match &self.partitions {
            Partitions::One(l) => Some(l.handle()),
            Partitions::PerKey(l) => match key {
                Some(key) => l.handle().get(key),
                None => Some(l.handle().fallback()),
            },
        }
    }
}

impl<X, P> BulkheadMiddleware<X, P>
where
    X: KeyExtractor<Request>,
    P: Prioritize<Request>,
{
    async fn call(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let acquiring = {
            let class = match extensions.get::<Priority>() {
                Some(p) => Some(p.as_str()),
                None => self.prioritize.class_of(&req),
            };
            match &self.partitions {
                Partitions::One(l) => l.acquire(class),
                Partitions::PerKey(l) => l.acquire(l.extractor().extract(&req), class),
            }
        };
        let permit = acquiring.await.map_err(middleware_error)?;
        let result = next.run(req, extensions).await;
        drop(permit);
        result
    }
}

impl<X, P> Middleware for BulkheadMiddleware<X, P>
where
    X: KeyExtractor<Request>,
    P: Prioritize<Request>,
{
    forward_to_call!();
}

/// Names a reqwest request's priority class by the value of a header, e.g.
/// `x-priority: bulk`. A value that is not visible ASCII counts as none. The header is sent
/// on as it is.
///
/// ```
/// use rampart_bulkhead::Prioritize;
/// use rampart_reqwest::PriorityFromHeader;
///
/// let by_header = PriorityFromHeader::new(http::HeaderName::from_static("x-priority"));
/// let mut req = reqwest::Request::new(http::Method::GET, "http://a.example/".parse().unwrap());
/// req.headers_mut().insert("x-priority", "bulk".parse().unwrap());
/// assert_eq!(by_header.class_of(&req), Some("bulk"));
/// ```
#[derive(Debug, Clone)]
pub struct PriorityFromHeader {
    name: HeaderName,
}

impl PriorityFromHeader {
    /// Reads the class from the header `name`.
    pub const fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl Prioritize<Request> for PriorityFromHeader {
    fn class_of<'a>(&'a self, req: &'a Request) -> Option<&'a str> {
        req.headers().get(&self.name)?.to_str().ok()
    }
}
