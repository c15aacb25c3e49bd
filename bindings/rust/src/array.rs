//! N-dimensional arrays in xproc Values (`Value.array`, see `docs/protocol.md`): numpy's
//! dtypes, a shape, and the elements little-endian in C order, read in place as slices and
//! written from slices.
//!
//! ```no_run
//! use xproc::array::{write_array, ArrayRef};
//! let mut message = capnp::message::Builder::new_default();
//! let value = message.init_root::<xproc::value_capnp::value::Builder>();
//! write_array(value, &[1.0f64, 2.0, 3.0, 4.0], &[2, 2])?;
//!
//! let value = message.get_root_as_reader::<xproc::value_capnp::value::Reader>()?;
//! let array = ArrayRef::read(value)?;
//! assert_eq!(array.shape(), &[2, 2]);
//! assert_eq!(array.as_slice::<f64>()?, &[1.0, 2.0, 3.0, 4.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Reading checks what another process controls, as the C++ library does: the dtype, that
//! the bytes are exactly product(shape) elements, at most 64 dimensions, bools that are 0
//! or 1, and elements aligned for their type where they lie.

use crate::value_capnp::value;
use crate::{Error, DECODE_ERROR, TYPE_ERROR, VALUE_ERROR};

pub use crate::value_capnp::value::array::DType;

/// The most dimensions an array may have (numpy's limit).
pub const MOST_DIMENSIONS: usize = 64;
/// Arrays of this many bytes or more travel in pieces (past Cap'n Proto's largest Data) ...
pub const PIECES_FROM: usize = 1 << 29;
/// ... each of this many bytes but the last.
pub const PIECE_BYTES: usize = 1 << 28;

fn error(code: i32, message: String) -> Error {
    Error { code, message }
}

/// An IEEE 754 binary16 number, as its bits (Rust has no stable half-precision type).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct F16(pub u16);

/// A complex number laid out as numpy's complex64 (`Complex<f32>`) and complex128
/// (`Complex<f64>`): the real part, then the imaginary part.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Complex<T> {
    /// The real part.
    pub re: T,
    /// The imaginary part.
    pub im: T,
}

/// The element types of arrays, each with its dtype.
///
/// # Safety
/// Implemented only for plain types whose every bit pattern of `size_of::<Self>()` bytes
/// is a valid value (bool's are checked to be 0 or 1 before a slice of them is made).
pub unsafe trait Element: Copy + 'static {
    /// The dtype whose elements are this type.
    const DTYPE: DType;
}

macro_rules! elements {
    ($($t:ty => $d:ident),* $(,)?) => { $(unsafe impl Element for $t { const DTYPE: DType = DType::$d; })* };
}
elements!(bool => Bool, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64, u8 => Uint8, u16 => Uint16,
          u32 => Uint32, u64 => Uint64, F16 => Float16, f32 => Float32, f64 => Float64,
          Complex<f32> => Complex64, Complex<f64> => Complex128);

/// Bytes per element.
pub fn itemsize(dtype: DType) -> usize {
    match dtype {
        DType::Bool | DType::Int8 | DType::Uint8 => 1,
        DType::Int16 | DType::Uint16 | DType::Float16 => 2,
        DType::Int32 | DType::Uint32 | DType::Float32 => 4,
        DType::Int64 | DType::Uint64 | DType::Float64 | DType::Complex64 => 8,
        DType::Complex128 => 16,
    }
}

/// Alignment of the element type, which a slice in place relies on.
fn alignment(dtype: DType) -> usize {
    match dtype {
        DType::Complex64 => 4,
        DType::Complex128 => 8,
        other => itemsize(other),
    }
}

/// A checked `Value.array` where it lies in a message.
#[derive(Debug, Clone)]
pub struct ArrayRef<'a> {
    dtype: DType,
    shape: Vec<u64>,
    len: usize,
    pieces: Vec<&'a [u8]>,
}

impl<'a> ArrayRef<'a> {
    /// The array a Value holds; error code DECODE_ERROR when it is malformed, TYPE_ERROR
    /// when the Value is not an array.
    pub fn read(value: value::Reader<'a>) -> Result<ArrayRef<'a>, Error> {
        match value.which() {
            Ok(value::Which::Array(array)) => {
                Self::read_array(array.map_err(|e| error(DECODE_ERROR, format!("invalid array: {e}")))?)
            }
            Ok(_) => Err(error(TYPE_ERROR, "expected an array Value".into())),
            Err(e) => Err(error(DECODE_ERROR, format!("unknown Value kind {}", e.0))),
        }
    }

    /// Checks one `Value.Array`.
    pub fn read_array(array: value::array::Reader<'a>) -> Result<ArrayRef<'a>, Error> {
        let decode = |e: capnp::Error| error(DECODE_ERROR, format!("invalid array: {e}"));
        let dtype = array.get_dtype().map_err(|e| error(DECODE_ERROR, format!("an array of unknown dtype {}", e.0)))?;
        let size = itemsize(dtype);
        let shape_list = array.get_shape().map_err(decode)?;
        if shape_list.len() as usize > MOST_DIMENSIONS {
            return Err(error(DECODE_ERROR, format!("an array of {} dimensions (at most {MOST_DIMENSIONS})", shape_list.len())));
        }
        let shape: Vec<u64> = shape_list.iter().collect();
        let data = array.get_data().map_err(decode)?;
        let piece_list = array.get_pieces().map_err(decode)?;
        if !data.is_empty() && piece_list.len() != 0 {
            return Err(error(DECODE_ERROR, "an array with both data and pieces".into()));
        }
        let mut pieces = Vec::new();
        let mut candidates = vec![data];
        for piece in piece_list.iter() {
            candidates.push(piece.map_err(decode)?);
        }
        for piece in candidates {
            if piece.len() % size != 0 {
                return Err(error(DECODE_ERROR, format!("an array piece of {} bytes is not whole {dtype:?} elements", piece.len())));
            }
            // (An empty slice's pointer is a dangling non-null address, aligned to nothing.)
            if !piece.is_empty() && piece.as_ptr() as usize % alignment(dtype) != 0 {
                return Err(error(DECODE_ERROR, format!("array elements of dtype {dtype:?} misaligned in the message")));
            }
            if dtype == DType::Bool && piece.iter().any(|&b| b > 1) {
                return Err(error(DECODE_ERROR, "an array of bool holds a byte not 0 or 1".into()));
            }
            if !piece.is_empty() {
                pieces.push(piece);
            }
        }
        let bytes: usize = pieces.iter().map(|p| p.len()).sum();
        let count = shape
            .iter()
            .try_fold(1u64, |count, &length| count.checked_mul(length))
            .ok_or_else(|| error(DECODE_ERROR, format!("an array shape {shape:?} overflows")))?;
        if count.checked_mul(size as u64) != Some(bytes as u64) {
            return Err(error(
                DECODE_ERROR,
                format!("an array of shape {shape:?} and dtype {dtype:?} with {bytes} bytes of elements"),
            ));
        }
        Ok(ArrayRef { dtype, shape, len: count as usize, pieces })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The length along each dimension; empty for a 0-dimensional array.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements' bytes: one piece, or several for arrays of PIECES_FROM bytes or more.
    pub fn pieces(&self) -> &[&'a [u8]] {
        &self.pieces
    }

    /// The elements as `T`, in place: TYPE_ERROR when `T` is not the dtype's element type
    /// or the array is in pieces (read it with `to_vec`).
    pub fn as_slice<T: Element>(&self) -> Result<&'a [T], Error> {
        self.check_type::<T>()?;
        match self.pieces.as_slice() {
            [] => Ok(&[]),
            [bytes] => {
                // SAFETY: read_array checked the length (whole elements), the alignment
                // and, for bool, every byte; T accepts any other bit pattern (Element).
                Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / std::mem::size_of::<T>()) })
            }
            pieces => Err(error(TYPE_ERROR, format!("an array in {} pieces is not one slice; use to_vec", pieces.len()))),
        }
    }

    /// An owned copy of the elements as `T` (pieces joined); TYPE_ERROR for another dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, Error> {
        self.check_type::<T>()?;
        let mut out: Vec<T> = Vec::with_capacity(self.len);
        let mut written = 0usize;
        for piece in &self.pieces {
            // SAFETY: as in as_slice; the pieces add up to len elements.
            unsafe {
                std::ptr::copy_nonoverlapping(piece.as_ptr(), out.as_mut_ptr().cast::<u8>().add(written), piece.len());
            }
            written += piece.len();
        }
        // SAFETY: exactly len elements were written.
        unsafe { out.set_len(self.len) };
        Ok(out)
    }

    fn check_type<T: Element>(&self) -> Result<(), Error> {
        if T::DTYPE != self.dtype {
            return Err(error(TYPE_ERROR, format!("expected an array of {:?}, got one of {:?}", T::DTYPE, self.dtype)));
        }
        Ok(())
    }
}

/// Writes `elements` shaped `shape` into `value` as a `Value.array` (pieces from
/// PIECES_FROM bytes). VALUE_ERROR when product(shape) is not `elements.len()` or there
/// are more than 64 dimensions.
pub fn write_array<T: Element>(value: value::Builder<'_>, elements: &[T], shape: &[u64]) -> Result<(), Error> {
    if shape.len() > MOST_DIMENSIONS {
        return Err(error(VALUE_ERROR, format!("an array of {} dimensions (at most {MOST_DIMENSIONS})", shape.len())));
    }
    let count = shape.iter().try_fold(1u64, |count, &length| count.checked_mul(length));
    if count != Some(elements.len() as u64) {
        return Err(error(VALUE_ERROR, format!("shape {shape:?} does not hold {} elements", elements.len())));
    }
    // SAFETY: T is a plain type (Element); its bytes are what the wire carries on a
    // little-endian machine.
    let bytes = unsafe { std::slice::from_raw_parts(elements.as_ptr().cast::<u8>(), std::mem::size_of_val(elements)) };
    let mut array = value.init_array();
    array.set_dtype(T::DTYPE);
    let mut out_shape = array.reborrow().init_shape(shape.len() as u32);
    for (i, &length) in shape.iter().enumerate() {
        out_shape.set(i as u32, length);
    }
    if bytes.len() < PIECES_FROM {
        array.set_data(bytes);
    } else {
        let chunks: Vec<&[u8]> = bytes.chunks(PIECE_BYTES).collect();
        let mut pieces = array.init_pieces(chunks.len() as u32);
        for (i, chunk) in chunks.iter().enumerate() {
            pieces.set(i as u32, chunk);
        }
    }
    Ok(())
}

#[cfg(target_endian = "big")]
compile_error!("xproc arrays are read in place as little-endian");
