//! Priority classification: which class a request belongs to.
//!
//! A [`Prioritize`] implementation names the class of a request; the bulkhead maps the name to
//! one of its configured classes, and a request that names none (or an unknown one) goes to the
//! [default class](crate::BulkheadConfigBuilder::default_class).
//!
//! - [`DefaultClass`]: every request in the default class (the only choice without classes).
//! - [`PriorityHeader`]: the value of a header, e.g. `x-priority: critical`.
//! - [`Priority`] in the request extensions, put there by an earlier layer or by the route
//!   ([`ByExtension`]).
//! - [`priority_fn`]: any closure, e.g. by route.

use std::{borrow::Cow, fmt, marker::PhantomData};

/// Names the priority class of a request.
pub trait Prioritize<Req>: Clone + Send + Sync + 'static {
    /// The class name of `req`, or `None` for the default class.
    fn class_of<'a>(&'a self, req: &'a Req) -> Option<&'a str>;
}

/// Puts every request in the default class.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClass;

impl<Req> Prioritize<Req> for DefaultClass {
    #[inline]
    fn class_of<'a>(&'a self, _: &'a Req) -> Option<&'a str> {
        None
    }
}

/// The priority class of a request, as a request extension.
///
/// ```
/// use rampart_bulkhead::{ByExtension, Prioritize, Priority};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Priority::new("critical"));
/// assert_eq!(ByExtension.class_of(&req), Some("critical"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Priority(Cow<'static, str>);

impl Priority {
    /// A priority class by name.
    pub fn new(class: impl Into<Cow<'static, str>>) -> Self {
        Self(class.into())
    }

    /// The class name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Classifies by the [`Priority`] request extension.
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ByExtension;

#[cfg(feature = "http")]
impl<B> Prioritize<http::Request<B>> for ByExtension {
    #[inline]
    fn class_of<'a>(&'a self, req: &'a http::Request<B>) -> Option<&'a str> {
        req.extensions().get::<Priority>().map(Priority::as_str)
    }
}

/// Classifies by the value of a header, e.g. `x-priority: critical`. A value that is not
/// visible ASCII counts as none.
///
/// **The header is the client's word.** On a server, any caller can send
/// `x-priority: critical` and take the capacity kept for the top class. Limit the classes a
/// header may pick with [`allow`](Self::allow) (any other value counts as none, the default
/// class), and give the top classes from a trusted source instead: a layer that has
/// authenticated the caller puts a [`Priority`] in the request extensions, read by
/// [`ByExtension`] (or a [`priority_fn`] that reads both). Behind your own gateway, which
/// sets or strips the header, the header alone is fine.
///
/// ```
/// use rampart_bulkhead::{Prioritize, PriorityHeader};
///
/// let by_header = PriorityHeader::new(http::HeaderName::from_static("x-priority"))
///     .allow(["normal", "bulk"]);
/// let req = http::Request::get("/").header("x-priority", "bulk").body(()).unwrap();
/// assert_eq!(by_header.class_of(&req), Some("bulk"));
/// let greedy = http::Request::get("/").header("x-priority", "critical").body(()).unwrap();
/// assert_eq!(by_header.class_of(&greedy), None, "not a class a client may pick");
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct PriorityHeader {
    name: http::HeaderName,
    allowed: Option<std::sync::Arc<[Cow<'static, str>]>>,
}

#[cfg(feature = "http")]
impl PriorityHeader {
    /// Classifies by the header `name`; every class may be named (see the type's docs).
    pub const fn new(name: http::HeaderName) -> Self {
        Self {
            name,
            allowed: None,
        }
    }

    /// Only these classes may be named by the header; any other value counts as none.
    pub fn allow<I, C>(mut self, classes: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Cow<'static, str>>,
    {
        self.allowed = Some(classes.into_iter().map(Into::into).collect());
        self
    }
}

#[cfg(feature = "http")]
impl<B> Prioritize<http::Request<B>> for PriorityHeader {
    #[inline]
    fn class_of<'a>(&'a self, req: &'a http::Request<B>) -> Option<&'a str> {
        let class = req.headers().get(&self.name)?.to_str().ok()?;
        match &self.allowed {
            Some(allowed) if !allowed.iter().any(|c| c == class) => None,
            _ => Some(class),
        }
    }
}

/// A classifier made from a closure; see [`priority_fn`].
pub struct PriorityFn<F, Req> {
    f: F,
    _req: PhantomData<fn(&Req)>,
}

/// Makes a classifier from a closure returning a class name.
///
/// ```
/// use rampart_bulkhead::{priority_fn, Prioritize};
///
/// // Exports are bulk work, everything else normal.
/// let by_route = priority_fn(|req: &http::Request<()>| {
///     Some(if req.uri().path().starts_with("/export") { "bulk" } else { "normal" })
/// });
/// let req = http::Request::get("/export/all").body(()).unwrap();
/// assert_eq!(by_route.class_of(&req), Some("bulk"));
/// ```
pub fn priority_fn<F, Req>(f: F) -> PriorityFn<F, Req>
where
    F: Fn(&Req) -> Option<&'static str>,
{
    PriorityFn {
        f,
        _req: PhantomData,
    }
}

impl<F: Clone, Req> Clone for PriorityFn<F, Req> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _req: PhantomData,
        }
    }
}

impl<F, Req> fmt::Debug for PriorityFn<F, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityFn").finish_non_exhaustive()
    }
}

impl<F, Req> Prioritize<Req> for PriorityFn<F, Req>
where
    F: Fn(&Req) -> Option<&'static str> + Clone + Send + Sync + 'static,
    Req: 'static,
{
    #[inline]
    fn class_of<'a>(&'a self, req: &'a Req) -> Option<&'a str> {
        (self.f)(req)
    }
}
