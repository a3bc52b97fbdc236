//! Request and response bodies.
//!
//! - [`GuardedBody`]: a response body that holds a value (a permit) until the stream ends.
//! - [`ReplayBody`] and [`ReadBody`]: bounded request-body buffering, so
//!   that a request can be sent again (retries) or recorded whole (dead letters);
//!   [`BufferedBody`], the copy a buffered request carries for the layers further in.

mod buffer;
mod guarded;

pub use self::buffer::{BufferedBody, ReadBody, ReadNow, ReadRequest, ReplayBody};
pub use self::guarded::GuardedBody;
