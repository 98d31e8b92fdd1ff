//! One error type for every SQL function: a message for the user, never a secret, and the kind
//! of failure (SQLite's result code, an HTTP status) so callers decide by kind, not by text.
use std::fmt;

use rusqlite::ErrorCode;

#[derive(Debug)]
pub struct Error {
    message: String,
    cause: Cause,
}

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// SQLite refused a statement: its primary code and extended code.
    Sqlite { code: ErrorCode, extended: i32 },
    /// The server answered with this HTTP status (≥ 300).
    Http(u16),
    /// The response was larger than `max_response_bytes`.
    TooLarge,
    /// Anything else: bad input, a broken answer, the network.
    Other,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            cause: Cause::Other,
        }
    }

    pub fn with_cause(message: impl Into<String>, cause: Cause) -> Self {
        Error {
            message: message.into(),
            cause,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// The same kind of error with more context in front of its message.
    pub fn context(self, prefix: impl fmt::Display) -> Self {
        Error {
            message: format!("{prefix}: {}", self.message),
            cause: self.cause,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self.cause {
            Cause::Http(status) => Some(status),
            _ => None,
        }
    }

    pub fn sqlite_code(&self) -> Option<ErrorCode> {
        match self.cause {
            Cause::Sqlite { code, .. } => Some(code),
            _ => None,
        }
    }

    /// A foreign key constraint failed (immediately or at COMMIT of deferred keys).
    pub fn is_foreign_key(&self) -> bool {
        matches!(self.cause, Cause::Sqlite { extended, .. } if extended == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
    }

    /// The row itself cannot be written here (a constraint, a type a STRICT table refuses, a
    /// value too big, a column or table that is not there now): other rows may still apply, and
    /// this one may apply later. Everything else (disk full, I/O, read-only, busy, interrupted,
    /// out of memory, corruption) is about the database, not the row: nothing more can be written
    /// now.
    pub fn is_row_problem(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(
                ErrorCode::ConstraintViolation
                    | ErrorCode::TypeMismatch
                    | ErrorCode::TooBig
                    | ErrorCode::ParameterOutOfRange
                    | ErrorCode::Unknown
            )
        ) || self.cause == Cause::Other
    }
}

/// SQLite's name for a result code, as its documentation spells it.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT",
        ErrorCode::DiskFull => "SQLITE_FULL",
        ErrorCode::SystemIoFailure => "SQLITE_IOERR",
        ErrorCode::ReadOnly => "SQLITE_READONLY",
        ErrorCode::DatabaseBusy => "SQLITE_BUSY",
        ErrorCode::DatabaseLocked => "SQLITE_LOCKED",
        ErrorCode::OperationInterrupted => "SQLITE_INTERRUPT",
        ErrorCode::OutOfMemory => "SQLITE_NOMEM",
        ErrorCode::DatabaseCorrupt => "SQLITE_CORRUPT",
        ErrorCode::NotADatabase => "SQLITE_NOTADB",
        ErrorCode::CannotOpen => "SQLITE_CANTOPEN",
        ErrorCode::TypeMismatch => "SQLITE_MISMATCH",
        ErrorCode::TooBig => "SQLITE_TOOBIG",
        ErrorCode::OperationAborted => "SQLITE_ABORT",
        ErrorCode::SchemaChanged => "SQLITE_SCHEMA",
        ErrorCode::PermissionDenied => "SQLITE_PERM",
        ErrorCode::AuthorizationForStatementDenied => "SQLITE_AUTH",
        _ => "SQLITE_ERROR",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        match &error {
            rusqlite::Error::SqliteFailure(e, _) => {
                let name = code_name(e.code);
                // SQL callers only see the text (a function's error reaches them as
                // SQLITE_ERROR), so the text names the code.
                let message = if name == "SQLITE_ERROR" {
                    error.to_string()
                } else {
                    format!("{error} ({name})")
                };
                Error::with_cause(
                    message,
                    Cause::Sqlite {
                        code: e.code,
                        extended: e.extended_code,
                    },
                )
            }
            _ => Error::new(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::new(format!("invalid JSON: {error}"))
    }
}

/// `bail!("...")` returns early with an [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::new(format!($($arg)*))) };
}
