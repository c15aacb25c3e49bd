//! Rust bindings to xproc's C ABI (`bindings/c/include/xproc.h`): named shared-memory
//! queues that C++, Python and Rust processes share, carrying Cap'n Proto messages, and
//! the arrays of xproc Values as slices ([`array`](mod@array)).
//!
//! ```no_run
//! let mut queue = xproc::Queue::open("points")?;
//! let bytes = queue.get(Some(5.0))?;                 // one whole message, owned
//! let message = capnp::serialize::read_message_from_flat_slice(
//!     &mut bytes.as_slice(), capnp::message::ReaderOptions::new())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate links `libxproc_c`, the C ABI of the xproc C++ library, which must be built
//! and installed first; `build.rs` says where it is looked for (`XPROC_LIB_DIR`).
//! Messages are plain Cap'n Proto: the `capnp` crate reads and builds them, and
//! [`value_capnp`] is the schema of the untyped messages.
#![warn(missing_docs)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;

/// xproc's Value schema (`schema/xproc/value.capnp`), for reading Manager values and
/// untyped queues: the code `capnpc` generates from it.
#[allow(missing_docs)]
pub mod value_capnp {
    include!(concat!(env!("OUT_DIR"), "/value_capnp.rs"));
}

mod ffi {
    use super::*;
    #[repr(C)]
    pub struct xproc_queue {
        _private: [u8; 0],
    }
    extern "C" {
        pub fn xproc_strerror(code: c_int) -> *const c_char;
        pub fn xproc_last_error_message() -> *const c_char;
        pub fn xproc_free(buffer: *mut c_void);
        pub fn xproc_version() -> *const c_char;
        pub fn xproc_queue_create_typed(name: *const c_char, maxsize: usize, capacity_bytes: usize,
                                        schema_id: u64, out: *mut *mut xproc_queue) -> c_int;
        pub fn xproc_queue_open(name: *const c_char, out: *mut *mut xproc_queue) -> c_int;
        pub fn xproc_queue_schema_id(queue: *const xproc_queue, out: *mut u64) -> c_int;
        pub fn xproc_queue_put(queue: *mut xproc_queue, data: *const c_void, size: usize, timeout: f64) -> c_int;
        pub fn xproc_queue_get(queue: *mut xproc_queue, data: *mut *mut c_void, size: *mut usize,
                               timeout: f64) -> c_int;
        pub fn xproc_queue_qsize(queue: *const xproc_queue, out: *mut usize) -> c_int;
        pub fn xproc_queue_remove(name: *const c_char) -> c_int;
        pub fn xproc_queue_close(queue: *mut xproc_queue);
    }
}

/// An xproc status code with the message the library gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// One of the `XPROC_*` codes of xproc.h (1 = empty, 2 = full, 5 = value error ...).
    pub code: i32,
    /// What went wrong, as the library said it (`xproc_last_error_message()`).
    pub message: String,
}

/// A get found no message before its timeout.
pub const EMPTY: i32 = 1;
/// A put found no room before its timeout.
pub const FULL: i32 = 2;
/// A bad argument: a bad or taken queue name, a closed queue, a wrong array shape ...
pub const VALUE_ERROR: i32 = 5;
/// A value of the wrong kind: not an array, an array of another dtype ...
pub const TYPE_ERROR: i32 = 8;
/// Bytes that are not a valid message of the expected type (a malformed array ...).
pub const DECODE_ERROR: i32 = 14;

pub mod array;

// The README's example compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = unsafe { CStr::from_ptr(ffi::xproc_strerror(self.code)) }.to_string_lossy();
        write!(f, "{} ({})", name, self.message)
    }
}

impl std::error::Error for Error {}

fn check(code: c_int) -> Result<(), Error> {
    if code == 0 {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(ffi::xproc_last_error_message()) }.to_string_lossy().into_owned();
    Err(Error { code, message })
}

fn c_name(name: &str) -> Result<CString, Error> {
    CString::new(name).map_err(|_| Error { code: VALUE_ERROR, message: "queue name contains a NUL byte".into() })
}

/// The version of the libxproc_c this process runs ("MAJOR.MINOR.PATCH"), which should be
/// this crate's version: the two are released together.
pub fn library_version() -> &'static str {
    // SAFETY: xproc_version returns a static NUL-terminated ASCII string.
    unsafe { CStr::from_ptr(ffi::xproc_version()) }.to_str().unwrap_or("")
}

/// `None` blocks until done; `Some(0.0)` does not block.
fn seconds(timeout: Option<f64>) -> f64 {
    timeout.unwrap_or(-1.0)
}

/// A named shared-memory queue (multiprocessing.Queue's semantics, crash-safe).
pub struct Queue {
    raw: *mut ffi::xproc_queue,
}

// The C ABI allows a handle on any thread (not two at once); &mut self enforces that.
unsafe impl Send for Queue {}

impl Queue {
    /// Creates the named queue for messages of the Cap'n Proto struct `schema_id`.
    pub fn create(name: &str, maxsize: usize, schema_id: u64) -> Result<Queue, Error> {
        let name = c_name(name)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe { ffi::xproc_queue_create_typed(name.as_ptr(), maxsize, 0, schema_id, &mut raw) })?;
        Ok(Queue { raw })
    }

    /// Opens a named queue any process made.
    pub fn open(name: &str) -> Result<Queue, Error> {
        let name = c_name(name)?;
        let mut raw = std::ptr::null_mut();
        check(unsafe { ffi::xproc_queue_open(name.as_ptr(), &mut raw) })?;
        Ok(Queue { raw })
    }

    /// Unlinks a named queue; open handles keep working.
    pub fn remove(name: &str) -> Result<(), Error> {
        let name = c_name(name)?;
        check(unsafe { ffi::xproc_queue_remove(name.as_ptr()) })
    }

    /// The schema id the creator recorded (0: raw bytes).
    pub fn schema_id(&self) -> u64 {
        let mut id = 0;
        unsafe { ffi::xproc_queue_schema_id(self.raw, &mut id) };
        id
    }

    /// Appends one message (the bytes of a Cap'n Proto message, flat): blocks while the
    /// queue is full, up to `timeout` seconds (`None`: no limit), then error code FULL.
    pub fn put(&mut self, message: &[u8], timeout: Option<f64>) -> Result<(), Error> {
        check(unsafe { ffi::xproc_queue_put(self.raw, message.as_ptr().cast(), message.len(), seconds(timeout)) })
    }

    /// Removes the oldest message and returns its bytes (error code EMPTY on timeout).
    pub fn get(&mut self, timeout: Option<f64>) -> Result<Vec<u8>, Error> {
        let mut data = std::ptr::null_mut();
        let mut size = 0usize;
        check(unsafe { ffi::xproc_queue_get(self.raw, &mut data, &mut size, seconds(timeout)) })?;
        let bytes = unsafe { std::slice::from_raw_parts(data as *const u8, size) }.to_vec();
        unsafe { ffi::xproc_free(data) };
        Ok(bytes)
    }

    /// The number of messages waiting (a snapshot: other processes change it).
    pub fn qsize(&self) -> usize {
        let mut n = 0;
        unsafe { ffi::xproc_queue_qsize(self.raw, &mut n) };
        n
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        unsafe { ffi::xproc_queue_close(self.raw) };
    }
}
