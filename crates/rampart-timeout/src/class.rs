//! Naming a request's operation class: the [`OperationClass`] extension, or a
//! [`ClassifyOperation`] of your own over the [`RequestHead`].

/// A request's operation class, in its extensions: what the default classifier reads.
///
/// Set it per route (e.g. with axum's `Extension` layer, or a `map_request`) or per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperationClass(pub &'static str);

/// What a classifier sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The URI.
    pub uri: &'a http::Uri,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The extensions.
    pub extensions: &'a http::Extensions,
}

/// Names a request's operation class.
pub trait ClassifyOperation: Send + Sync + 'static {
    /// The class of the request; a class the layer does not know gets the default class's
    /// timeout.
    fn class(&self, head: &RequestHead<'_>) -> &'static str;
}

impl<F> ClassifyOperation for F
where
    F: Fn(&RequestHead<'_>) -> &'static str + Send + Sync + 'static,
{
    fn class(&self, head: &RequestHead<'_>) -> &'static str {
        self(head)
    }
}

/// The default classifier: the request's [`OperationClass`] extension, else `request`.
pub fn default_classify(head: &RequestHead<'_>) -> &'static str {
    head.extensions
        .get::<OperationClass>()
        .map_or("request", |c| c.0)
}
