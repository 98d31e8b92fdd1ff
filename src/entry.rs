//! The loadable-extension entry points. `sqlite3_tether_init` is what SQLite derives from the
//! file name `libtether.so`; `sqlite3_extension_init` serves any other file name.
use std::ffi::c_char;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

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

/// The API routine table of the SQLite that loaded tether first. rusqlite keeps the table of
/// the last load in one process-wide global that every SQL call goes through; a second SQLite
/// library in the process (two libraries each bringing their own) loading tether would switch
/// every connection of the first one to its routines, which crashes the process.
static FIRST_API: AtomicPtr<ffi::sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());

const OTHER_SQLITE: &str = "tether is already loaded by another SQLite library in this process; load it through one SQLite only";

/// Refuses a load by another SQLite library than the first (see [`FIRST_API`]) before rusqlite
/// stores anything, then loads.
///
/// # Safety
/// `p_api` is SQLite's API table (or null), `pz_err_msg` null or writable, `db` a connection.
unsafe fn load(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    if p_api.is_null() {
        return ffi::SQLITE_ERROR;
    }
    if let Err(first) = FIRST_API.compare_exchange(
        std::ptr::null_mut(),
        p_api,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        if first != p_api {
            set_error(pz_err_msg, p_api, OTHER_SQLITE);
            return ffi::SQLITE_ERROR;
        }
    }
    // Before rusqlite touches the host: on a SQLite older than it supports it panics while
    // setting up, and a panic here would abort the host. The version routine exists in every
    // SQLite that can load extensions.
    let version = (*p_api).libversion_number.map_or(0, |number| number());
    if version < MIN_SQLITE {
        let message = format!(
            "tether needs SQLite {} or newer (for RETURNING); this host has {}",
            dotted(MIN_SQLITE),
            dotted(version)
        );
        set_error(pz_err_msg, p_api, &message);
        return ffi::SQLITE_ERROR;
    }
    match catch_unwind(AssertUnwindSafe(|| {
        Connection::extension_init2(db, pz_err_msg, p_api, init)
    })) {
        Ok(rc) => rc,
        Err(_) => {
            set_error(pz_err_msg, p_api, "tether: internal error while loading");
            ffi::SQLITE_ERROR
        }
    }
}

const MIN_SQLITE: c_int = crate::schema::MIN_SQLITE_VERSION;

/// 3035000 → "3.35.0".
fn dotted(version: c_int) -> String {
    format!(
        "{}.{}.{}",
        version / 1_000_000,
        version / 1000 % 1000,
        version % 1000
    )
}

/// Hands `message` to SQLite as the load's error, allocated by that SQLite's own `sqlite3_malloc`
/// (it frees it with `sqlite3_free`): never through rusqlite, whose routines may belong to
/// another SQLite.
///
/// # Safety
/// `p_api` is a valid API table, `pz_err_msg` null or writable.
unsafe fn set_error(
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
    message: &str,
) {
    if pz_err_msg.is_null() {
        return;
    }
    let Some(malloc) = (*p_api).malloc else {
        return;
    };
    let bytes = message.as_bytes();
    let Ok(size) = c_int::try_from(bytes.len() + 1) else {
        return;
    };
    let copy = malloc(size).cast::<u8>();
    if copy.is_null() {
        return;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
    *copy.add(bytes.len()) = 0;
    *pz_err_msg = copy.cast::<c_char>();
}

/// # Safety
/// Called by SQLite with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_tether_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    load(db, pz_err_msg, p_api)
}

/// # Safety
/// Called by SQLite with a valid connection and API table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    load(db, pz_err_msg, p_api)
}
