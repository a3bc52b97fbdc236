//! The command's error: one line on stderr, and an exit code.

use std::{error::Error, process::ExitCode};

/// Exit code of an error (a bad store URL, an unreachable store, an unknown record id).
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code of a usage error (clap uses it too) and of a `purge` without `--yes`.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code of a redrive that ran but left records failed or given up.
pub(crate) const EXIT_REDRIVE_INCOMPLETE: u8 = 3;

/// What ends the command: a message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    message: String,
    code: u8,
}

impl CliError {
    /// An error: exit code [`EXIT_ERROR`].
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_ERROR,
        }
    }

    /// A usage error: exit code [`EXIT_USAGE`].
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: EXIT_USAGE,
        }
    }

    /// `err` and every source it has that its message does not already include, on one line.
    pub(crate) fn from_error(err: &(dyn Error + 'static)) -> Self {
        Self::new(rampart_core::error::chain_line(err))
    }

    /// Prints the error on stderr, on one line; its exit code.
    pub(crate) fn report(self) -> ExitCode {
        let one_line = crate::format::one_line(&self.message);
        eprintln!("error: {one_line}");
        ExitCode::from(self.code)
    }
}

impl From<rampart_dead_letter::StoreError> for CliError {
    fn from(e: rampart_dead_letter::StoreError) -> Self {
        Self::from_error(&e)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::new(format!("cannot write the output: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_message_holds_every_source_once() {
        let e = CliError::from_error(&Outer(std::io::Error::other("inner")));
        assert_eq!(e.message, "outer: inner");
        assert_eq!(e.code, EXIT_ERROR);
        let store = rampart_dead_letter::StoreError::new(
            "sqlite:x.db",
            rampart_dead_letter::StoreErrorKind::Unavailable,
        )
        .with_source("disk on fire");
        let e = CliError::from(store);
        assert_eq!(
            e.message,
            "dead-letter store sqlite:x.db: unavailable: disk on fire"
        );
    }
}
