//! Writing to stdout without panicking on a closed pipe.

use std::io::{ErrorKind, Write as _};

/// Writes `text` to stdout. A closed pipe (the reader, e.g. `head`, has exited) is not an
/// error: the rest of the output is dropped, as other command line tools do.
pub(crate) fn out(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
