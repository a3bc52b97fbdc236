//! [`Settle`]: what a call really cost, from its result.

use std::fmt;

/// What a call really cost, from its result and the estimate reserved for it.
pub trait Settle<Res, E>: Clone + Send + Sync + 'static {
    /// The actual cost.
    fn actual(&self, result: Result<&Res, &E>, estimate: u64) -> u64;
}

/// The estimate was the cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepEstimate;

impl<Res, E> Settle<Res, E> for KeepEstimate {
    #[inline]
    fn actual(&self, _: Result<&Res, &E>, estimate: u64) -> u64 {
        estimate
    }
}

/// A settlement made from a closure; see [`settle_fn`].
#[derive(Clone, Copy)]
pub struct SettleFn<F>(F);

impl<F> fmt::Debug for SettleFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SettleFn").finish_non_exhaustive()
    }
}

/// A settlement computed by `f` from the result and the estimate.
pub fn settle_fn<F, Res, E>(f: F) -> SettleFn<F>
where
    F: Fn(Result<&Res, &E>, u64) -> u64 + Clone + Send + Sync + 'static,
{
    SettleFn(f)
}

impl<F, Res, E> Settle<Res, E> for SettleFn<F>
where
    F: Fn(Result<&Res, &E>, u64) -> u64 + Clone + Send + Sync + 'static,
{
    #[inline]
    fn actual(&self, result: Result<&Res, &E>, estimate: u64) -> u64 {
        (self.0)(result, estimate)
    }
}

/// The actual cost from a response header (e.g. `x-credits-used: 240`); the estimate when the
/// header is missing or not a number, or the call failed.
///
/// ```
/// use rampart_rate_limit::budget::{CostHeader, Settle};
///
/// let settle = CostHeader::new(http::HeaderName::from_static("x-credits-used"));
/// let res = http::Response::builder().header("x-credits-used", "240").body(()).unwrap();
/// assert_eq!(Settle::<_, std::io::Error>::actual(&settle, Ok(&res), 10), 240);
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct CostHeader(http::HeaderName);

#[cfg(feature = "http")]
impl CostHeader {
    /// Reads the cost from header `name`.
    pub const fn new(name: http::HeaderName) -> Self {
        Self(name)
    }
}

#[cfg(feature = "http")]
impl<B, E> Settle<http::Response<B>, E> for CostHeader
where
    B: 'static,
    E: 'static,
{
    fn actual(&self, result: Result<&http::Response<B>, &E>, estimate: u64) -> u64 {
        result
            .ok()
            .and_then(|res| {
                res.headers()
                    .get(&self.0)?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(estimate)
    }
}
