//! The errors of a [`DeadLetterService`](crate::DeadLetterService): a failure that was parked
//! ([`Parked`]), and one that could not be ([`ParkFailed`]).

use std::{error::Error, fmt};

use rampart_core::error::BoxError;

use crate::{
    record::{DeadLetterId, ParkReason},
    store::StoreError,
};

/// The request failed and was parked as dead letter `id`: the original error, annotated.
///
/// Its `source` is the original error, so `rampart_core::error::find` still finds an open
/// circuit or a timeout through it.
#[derive(Debug)]
pub struct Parked {
    id: DeadLetterId,
    kind: ParkReason,
    source: BoxError,
}

impl Parked {
    /// The error for a failure parked as `id`: `source` annotated, as a
    /// [`DeadLetterLayer`](crate::DeadLetterLayer) answers. For adapters that park with a
    /// [`Parker`](crate::Parker).
    pub fn new(id: DeadLetterId, kind: ParkReason, source: BoxError) -> Self {
        Self { id, kind, source }
    }

    /// The dead letter's id: what `rampart dlq show` takes.
    pub fn id(&self) -> DeadLetterId {
        self.id
    }

    /// How the request failed.
    pub fn kind(&self) -> ParkReason {
        self.kind
    }

    /// The original error.
    pub fn into_inner(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for Parked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request failed ({}) and was dead-lettered as {}: {}",
            self.kind, self.id, self.source
        )
    }
}

impl Error for Parked {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The request failed, and no store could keep it: the original failure and every store's
/// error (the primary's first, then the secondary's).
///
/// Nothing is dropped silently: this reaches the caller, who still holds the failure.
#[derive(Debug)]
pub struct ParkFailed {
    kind: ParkReason,
    original: BoxError,
    stores: Vec<StoreError>,
}

impl ParkFailed {
    /// The error for a failure no store kept: the original failure and every store's error.
    /// For adapters that park with a [`Parker`](crate::Parker).
    pub fn new(kind: ParkReason, original: BoxError, stores: Vec<StoreError>) -> Self {
        Self {
            kind,
            original,
            stores,
        }
    }

    /// How the request failed.
    pub fn kind(&self) -> ParkReason {
        self.kind
    }

    /// The original failure.
    pub fn original(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.original
    }

    /// Why each store refused the record, the primary first.
    pub fn store_errors(&self) -> &[StoreError] {
        &self.stores
    }
}

impl fmt::Display for ParkFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request failed ({}): {}; ", self.kind, self.original)?;
        f.write_str("it could not be dead-lettered")?;
        for (i, e) in self.stores.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; then " })?;
            e.fmt(f)?;
        }
        Ok(())
    }
}

impl Error for ParkFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.original)
    }
}

/// A failure response, as an error: what [`Parked`] and [`ParkFailed`] carry when the request
/// failed with a response rather than an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedResponse {
    status: http::StatusCode,
}

impl FailedResponse {
    /// A failure response with `status`, as an error, for [`ParkFailed::new`] or
    /// [`Parked::new`] when the request failed with a response rather than an error.
    pub fn new(status: http::StatusCode) -> Self {
        Self { status }
    }

    /// The response's status.
    pub fn status(&self) -> http::StatusCode {
        self.status
    }
}

impl fmt::Display for FailedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response status {}", self.status)
    }
}

impl Error for FailedResponse {}
