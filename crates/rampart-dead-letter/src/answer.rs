//! What the caller gets once a failure is parked: [`OnParked`], with [`ReturnFailure`] (the
//! default) and [`AcceptForLater`].

use http::{HeaderName, HeaderValue, Response, StatusCode};
use rampart_core::error::BoxError;

use crate::{
    error::{FailedResponse, ParkFailed, Parked},
    record::{DeadLetterId, ParkReason},
    shared::Final,
    store::StoreError,
};

/// The response header that names the dead letter a failure was parked as.
pub const DEAD_LETTER_ID: HeaderName = HeaderName::from_static("rampart-dead-letter-id");

/// What a [`DeadLetterService`](crate::DeadLetterService) answers once a failure is parked (or could not be).
pub trait OnParked<ResB>: Clone + Send + Sync + 'static {
    /// The answer for a failure parked as `id`, in a store that survives a crash of the
    /// process if `durable`.
    fn parked(
        &self,
        id: DeadLetterId,
        kind: ParkReason,
        failure: Final<ResB>,
        durable: bool,
    ) -> Result<Response<ResB>, BoxError>;
}

/// The caller gets the failure, annotated with the dead letter's id: a failure response
/// gets the [`DEAD_LETTER_ID`] header (and a [`ParkedAs`] extension), an error becomes a
/// [`Parked`] error whose source is the original error. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReturnFailure;

/// The caller gets `202 Accepted`, with the [`DEAD_LETTER_ID`] header and a [`ParkedAs`]
/// extension; the body is the response body type's `Default` (empty).
///
/// Only for a record a durable store kept: `202` promises the request will be delivered, and
/// a record held in memory (a [`MemoryStore`](crate::MemoryStore) primary, or secondary when
/// the primary failed) is lost with the process. Then the caller gets the failure, annotated,
/// as with [`ReturnFailure`], unless the layer was built with
/// [`accept_non_durable`](crate::DeadLetterLayer::accept_non_durable).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptForLater {
    pub(crate) non_durable: bool,
}

/// The id of the dead letter a response stands for, in the response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedAs(pub DeadLetterId);

fn mark<B>(res: &mut Response<B>, id: DeadLetterId) {
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert(DEAD_LETTER_ID, v);
    }
    res.extensions_mut().insert(ParkedAs(id));
}

impl<ResB: Send + 'static> OnParked<ResB> for ReturnFailure {
    fn parked(
        &self,
        id: DeadLetterId,
        kind: ParkReason,
        failure: Final<ResB>,
        _durable: bool,
    ) -> Result<Response<ResB>, BoxError> {
        match failure {
            Final::Response(mut res) => {
                mark(&mut res, id);
                Ok(res)
            }
            Final::Error(e) => Err(Box::new(Parked::new(id, kind, e))),
        }
    }
}

impl<ResB: Default + Send + 'static> OnParked<ResB> for AcceptForLater {
    fn parked(
        &self,
        id: DeadLetterId,
        kind: ParkReason,
        failure: Final<ResB>,
        durable: bool,
    ) -> Result<Response<ResB>, BoxError> {
        if !durable && !self.non_durable {
            tracing::warn!(
                target: "rampart::dead_letter", %id,
                "dead letter kept by a store that does not survive a restart: the caller gets \
                 the failure, not 202"
            );
            return ReturnFailure.parked(id, kind, failure, durable);
        }
        let mut res = Response::new(ResB::default());
        *res.status_mut() = StatusCode::ACCEPTED;
        mark(&mut res, id);
        Ok(res)
    }
}

/// The error for a failure no store could keep.
pub(crate) fn park_failed<ResB>(
    kind: ParkReason,
    failure: Final<ResB>,
    stores: Vec<StoreError>,
) -> BoxError {
    let original: BoxError = match failure {
        Final::Response(res) => Box::new(FailedResponse::new(res.status())),
        Final::Error(e) => e,
    };
    Box::new(ParkFailed::new(kind, original, stores))
}
