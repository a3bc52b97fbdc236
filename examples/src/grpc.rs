//! The recommended client stack on a tonic `Channel`, and a codec for raw-bytes messages so
//! the chaos test and the examples need no code generation.
//!
//! The stack is [`stack`]'s, with gRPC's classifier and hints: the retry layer
//! retries `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and the like (from `grpc-status` in the head or
//! the trailers) and honours `grpc-retry-pushback-ms`; the dead-letter layer's default
//! classifier judges a gRPC answer by its `grpc-status`, in the head or the trailers.

use std::sync::Arc;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use rampart::{
    ServiceBuilderExt,
    circuit_breaker::Transition,
    core::{classify::GrpcClassifier, error::BoxError},
    dead_letter::{DeadLetterLayer, DeadLetterStore},
    idempotency::IdempotencyKeyLayer,
    retry::{protocol::GrpcProtocol, replay::HttpReplay},
    timeout::TimeoutLayer,
};
use tonic::{
    Status,
    client::GrpcService,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};
use tower::ServiceBuilder;

use crate::stack::{self, Handles, Settings};

/// Messages as raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesCodec;

/// Encodes raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesEncoder;

/// Decodes raw bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesDecoder;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> BytesEncoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> BytesDecoder {
        BytesDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What the stack is: a cloneable gRPC service whose futures and bodies can cross threads.
pub trait GrpcClient:
    GrpcService<
        tonic::body::Body,
        ResponseBody: http_body::Body<Data = Bytes, Error: Into<BoxError> + Send> + Send + 'static,
        Future: Send,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcClient for S where
    S: GrpcService<
            tonic::body::Body,
            ResponseBody: http_body::Body<Data = Bytes, Error: Into<BoxError> + Send>
                              + Send
                              + 'static,
            Future: Send,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// One unary call of `method` (e.g. `/orders.Orders/Place`) with a raw-bytes message.
pub async fn call<C: GrpcClient>(
    client: C,
    method: &'static str,
    message: Bytes,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(client);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.into().to_string()))?;
    let res = grpc
        .unary(
            tonic::Request::new(message),
            PathAndQuery::from_static(method),
            BytesCodec,
        )
        .await?;
    Ok(res.into_inner())
}

/// Builds the recommended client stack over `channel` (to `origin`, which the dead-letter
/// records name), parking in `store`.
pub fn client(
    channel: Channel,
    origin: http::Uri,
    store: Arc<dyn DeadLetterStore>,
    settings: &Settings,
    on_transition: impl Fn(&Transition) + Send + Sync + 'static,
) -> Result<(impl GrpcClient, Handles), BoxError> {
    let breaker = stack::breaker(settings, on_transition)?
        .classifier(GrpcClassifier::new())
        .ignore_rejections();
    let bulkhead = stack::bulkhead(settings)?;
    let handles = Handles {
        breaker: breaker.handle(),
        bulkhead: bulkhead.handle(),
    };
    let retry = stack::retry(settings)?
        .classifier(GrpcClassifier::new())
        // Every call carries an idempotency key (the key layer below), so every call may be
        // sent again: GrpcProtocol replays keyed calls, and no unkeyed one.
        .protocol(GrpcProtocol::default())
        .replay(HttpReplay);
    let svc = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::new())
        .dead_letter(
            DeadLetterLayer::builder("orders-grpc-client", store)
                .base_uri(origin)
                .build()?,
        )
        .timeouts(TimeoutLayer::new(settings.total_timeout)?)
        .retries(retry)
        .circuit_breaker(breaker)
        .bulkhead(bulkhead)
        .timeouts(TimeoutLayer::new(settings.attempt_timeout)?)
        .map_request(|req: http::Request<_>| req.map(tonic::body::Body::new))
        .service(channel);
    Ok((svc, handles))
}
