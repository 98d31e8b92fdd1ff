//! Registering SQL functions: flags by what the function does, and no panic or Rust error
//! crossing into the host — both become SQL errors that name the function.
use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ToSql;
use rusqlite::Connection;

use crate::error::{Error, Result};

#[derive(Clone, Copy)]
pub enum Kind {
    /// Writes the database or does network I/O: callable only from top-level SQL.
    Writes,
    /// Reads state that changes: never deterministic, still fine in views.
    Reads,
    /// No side effects at all, but a new value each call (identifier generators).
    Volatile,
    /// Same output for the same input.
    Pure,
}

impl Kind {
    fn flags(self) -> FunctionFlags {
        let utf8 = FunctionFlags::SQLITE_UTF8;
        match self {
            Kind::Writes => utf8 | FunctionFlags::SQLITE_DIRECTONLY,
            Kind::Reads => utf8,
            Kind::Volatile => utf8 | FunctionFlags::SQLITE_INNOCUOUS,
            Kind::Pure => {
                utf8 | FunctionFlags::SQLITE_INNOCUOUS | FunctionFlags::SQLITE_DETERMINISTIC
            }
        }
    }
}

/// Registers `name` for each argument count in `arities`.
pub fn register<F, T>(
    conn: &Connection,
    name: &'static str,
    arities: &[i32],
    kind: Kind,
    body: F,
) -> Result<()>
where
    F: Fn(&Context<'_>) -> Result<T> + Send + Clone + 'static,
    T: ToSql,
{
    for &arity in arities {
        let body = body.clone();
        conn.create_scalar_function(name, arity, kind.flags(), move |ctx| {
            match catch_unwind(AssertUnwindSafe(|| body(ctx))) {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(error)) => Err(user_error(format!("{name}: {error}"))),
                Err(panic) => Err(user_error(format!(
                    "{name}: internal error: {}",
                    panic_message(&panic)
                ))),
            }
        })?;
    }
    Ok(())
}

/// The connection a SQL function was called on.
pub fn connection<'a>(ctx: &'a Context<'_>) -> Result<rusqlite::functions::ConnectionRef<'a>> {
    // SAFETY: the reference lives no longer than the call, on the calling thread.
    unsafe { ctx.get_connection() }.map_err(Error::from)
}

/// Argument `index` as text; SQL NULL is an error naming the argument.
pub fn required_text(ctx: &Context<'_>, index: usize, what: &str) -> Result<String> {
    text_arg(ctx, index, what)?.ok_or_else(|| Error::new(format!("{what} is NULL")))
}

/// Argument `index` as text; `None` for SQL NULL; an error naming the argument otherwise.
pub fn text_arg(ctx: &Context<'_>, index: usize, what: &str) -> Result<Option<String>> {
    use rusqlite::types::ValueRef;
    match ctx.get_raw(index) {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Error::new(format!("{what} is not valid UTF-8 text"))),
        ValueRef::Integer(i) => Ok(Some(i.to_string())),
        ValueRef::Real(r) => Ok(Some(r.to_string())),
        ValueRef::Blob(_) => Err(Error::new(format!("{what} must be text, not a BLOB"))),
    }
}

fn user_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(Error::new(message)))
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}
