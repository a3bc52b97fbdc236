//! When a call gives its permit back: [`OnResponse`] (the default) or [`OnBodyEnd`].

use crate::policy::Permit;

/// Decides how long a call's permit outlives its response future.
pub trait Release<Res>: Clone + Send + Sync + 'static {
    /// What the caller receives.
    type Response;

    /// Hands `response` to the caller, keeping `permit` as long as the policy says.
    fn attach(&self, response: Res, permit: Permit) -> Self::Response;
}

/// The permit is released when the response future completes (or is dropped): the bulkhead
/// bounds producing responses, not clients reading them. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnResponse;

impl<Res> Release<Res> for OnResponse {
    type Response = Res;

    #[inline]
    fn attach(&self, response: Res, permit: Permit) -> Res {
        drop(permit);
        response
    }
}

/// For HTTP: the permit is held until the response body ends (its last frame, an error, or
/// the body dropped), for a dependency whose cost is the streaming itself (downloads, proxied
/// streams). Set with [`BulkheadLayer::release_on_body_end`](crate::BulkheadLayer::release_on_body_end).
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct OnBodyEnd;

#[cfg(feature = "http")]
impl<B> Release<http::Response<B>> for OnBodyEnd {
    type Response = http::Response<rampart_core::body::GuardedBody<B, Permit>>;

    #[inline]
    fn attach(&self, response: http::Response<B>, permit: Permit) -> Self::Response {
        response.map(|body| rampart_core::body::GuardedBody::new(body, permit))
    }
}
