//! [`Cost`]: what a call spends of the limit.

use std::fmt;

/// What a request costs, in the limit's units: `1` for every call by default ([`UnitCost`]),
/// or what a function of the request says ([`cost_fn`]): the rows a query asks for, the bytes
/// of an upload, the tokens of a prompt.
pub trait Cost<Req>: Clone + Send + Sync + 'static {
    /// The cost of `req`.
    fn cost(&self, req: &Req) -> u64;
}

/// Every call costs `1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCost;

impl<Req> Cost<Req> for UnitCost {
    #[inline]
    fn cost(&self, _: &Req) -> u64 {
        1
    }
}

/// A cost made from a closure; see [`cost_fn`].
#[derive(Clone, Copy)]
pub struct CostFn<F>(F);

impl<F> fmt::Debug for CostFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CostFn").finish_non_exhaustive()
    }
}

/// A cost computed from the request.
///
/// ```
/// use rampart_rate_limit::{Cost, cost_fn};
///
/// // A batch call costs one unit per item in its `x-items` header (1 without one).
/// let cost = cost_fn(|req: &http::Request<()>| {
///     req.headers()
///         .get("x-items")
///         .and_then(|v| v.to_str().ok()?.parse().ok())
///         .unwrap_or(1)
/// });
/// let req = http::Request::get("/").header("x-items", "25").body(()).unwrap();
/// assert_eq!(cost.cost(&req), 25);
/// ```
pub fn cost_fn<F, Req>(f: F) -> CostFn<F>
where
    F: Fn(&Req) -> u64 + Clone + Send + Sync + 'static,
{
    CostFn(f)
}

impl<F, Req> Cost<Req> for CostFn<F>
where
    F: Fn(&Req) -> u64 + Clone + Send + Sync + 'static,
{
    #[inline]
    fn cost(&self, req: &Req) -> u64 {
        (self.0)(req)
    }
}
