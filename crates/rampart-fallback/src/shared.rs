//! [`Shared`]: what every service of one fallback layer shares.

use std::{error::Error, sync::Arc};

use http::{Method, StatusCode};
use rampart_core::error::BoxError;

use crate::{
    answer::{Failed, StaticResponse},
    cache::LastGood,
};

pub(crate) type BoxFuture<T> = rampart_core::BoxFuture<'static, T>;
type FallbackFn = Arc<dyn Fn(Failed) -> BoxFuture<Result<StaticResponse, BoxError>> + Send + Sync>;

pub(crate) enum Alternative {
    Static(StaticResponse),
    Function(FallbackFn),
}

pub(crate) struct Shared {
    /// The `name` label of the layer's metrics.
    pub(crate) name: Arc<str>,
    pub(crate) cache: Option<LastGood>,
    /// Tried in order after the cache, each when the one before had nothing.
    pub(crate) alternatives: Vec<Alternative>,
    pub(crate) is_failure: fn(StatusCode) -> bool,
    pub(crate) on_error: fn(&(dyn Error + 'static)) -> bool,
    pub(crate) cache_methods: Vec<Method>,
    pub(crate) key_has_identity: bool,
}
