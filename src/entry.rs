//! The loadable-extension entry points. `sqlite3_tether_init` is what SQLite derives from the
//! file name `libtether.so`; `sqlite3_extension_init` serves any other file name.
use std::ffi::c_char;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{ffi, Connection};

/// Keeps this library mapped until the process exits, whatever SQLite does: after a failed init
/// SQLite closes the library, and whatever tether registered before failing must not dangle.
/// Takes one more reference that is never released, and marks the library never to be unloaded.
pub(crate) fn keep_library_loaded() {
    #[cfg(unix)]
    // SAFETY: dladdr only reads the address; dlopen with RTLD_NOLOAD never loads anything new,
    // it only finds the library already mapped at that name.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let ours = keep_library_loaded as fn() as *const libc::c_void;
        if libc::dladdr(ours, &mut info) != 0 && !info.dli_fname.is_null() {
            // The handle is deliberately leaked: never closed, it holds the library.
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

fn init(conn: Connection) -> rusqlite::Result<bool> {
    match catch_unwind(AssertUnwindSafe(|| crate::register(&conn))) {
        // Keep the library mapped: background workers may outlive the loading connection.
        Ok(Ok(())) => Ok(true),
        Ok(Err(error)) => Err(rusqlite::Error::UserFunctionError(
            format!("tether: {error}").into(),
        )),
        Err(_) => Err(rusqlite::Error::UserFunctionError(
            "tether: internal error while loading".into(),
        )),
    }
}

/// # Safety
/// Called by SQLite with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_tether_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    Connection::extension_init2(db, pz_err_msg, p_api, init)
}

/// # Safety
/// Called by SQLite with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    Connection::extension_init2(db, pz_err_msg, p_api, init)
}
