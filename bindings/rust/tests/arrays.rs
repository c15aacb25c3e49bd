//! Arrays in xproc Values from Rust: every dtype written from a slice reads back as the same
//! slice and shape, large arrays travel in pieces, malformed arrays are DECODE_ERRORs, and
//! arrays tour Python -> C++ -> Rust -> Python unchanged. XPROC_PEER names the C++ side
//! (examples/cross/peer.cpp) and XPROC_PYTHON an interpreter with xproc and numpy; ctest
//! sets both.
use std::process::Command;

use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize;
use xproc::array::{write_array, ArrayRef, Complex, DType, Element, F16};
use xproc::value_capnp::value;
use xproc::Queue;

fn round_trip<T: Element + PartialEq + std::fmt::Debug>(elements: &[T], shape: &[u64]) {
    let mut message = Builder::new_default();
    write_array(message.init_root::<value::Builder>(), elements, shape).unwrap();
    let words = serialize::write_message_to_words(&message);
    let reader = serialize::read_message_from_flat_slice(&mut words.as_slice(), ReaderOptions::new()).unwrap();
    let array = ArrayRef::read(reader.get_root::<value::Reader>().unwrap()).unwrap();
    assert_eq!(array.dtype(), T::DTYPE);
    assert_eq!(array.shape(), shape);
    assert_eq!(array.as_slice::<T>().unwrap(), elements);
    assert_eq!(array.to_vec::<T>().unwrap(), elements);
}

#[test]
fn every_dtype_round_trips_as_a_slice() {
    round_trip(&[true, false, true, true, false, false], &[2, 3]);
    round_trip(&[-1i8, 2, 3], &[3]);
    round_trip(&[i16::MIN, 2], &[2]);
    round_trip(&[i32::MAX; 8], &[2, 2, 2]);
    round_trip(&[i64::MIN], &[]);
    round_trip::<u8>(&[], &[0, 5]);
    round_trip(&[u16::MAX, 1], &[2, 1]);
    round_trip(&[7u32; 4], &[4]);
    round_trip(&[u64::MAX, 0], &[2]);
    round_trip(&[F16(0x3c00), F16(0xfc00)], &[2]);
    round_trip(&[1.5f32, -0.0], &[2]);
    round_trip(&[f64::INFINITY, 1e-300, 3.0], &[3]);
    round_trip(&[Complex { re: 1.0f32, im: -2.0 }], &[1]);
    round_trip(&[Complex { re: 0.5f64, im: 4.0 }, Complex { re: -1.0, im: 0.0 }], &[1, 2]);
}

#[test]
fn the_wrong_element_type_or_shape_is_refused() {
    let mut message = Builder::new_default();
    let error = write_array(message.init_root::<value::Builder>(), &[1.0f64, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert_eq!(error.code, xproc::VALUE_ERROR);
    write_array(message.init_root::<value::Builder>(), &[1.0f64, 2.0], &[2]).unwrap();
    let array = ArrayRef::read(message.get_root_as_reader::<value::Reader>().unwrap()).unwrap();
    assert_eq!(array.as_slice::<f32>().unwrap_err().code, xproc::TYPE_ERROR);
    let mut text = Builder::new_default();
    text.init_root::<value::Builder>().set_text("not an array");
    assert_eq!(ArrayRef::read(text.get_root_as_reader::<value::Reader>().unwrap()).unwrap_err().code, xproc::TYPE_ERROR);
}

#[test]
fn arrays_of_512_mib_or_more_travel_in_pieces() {
    let big = vec![3u8; xproc::array::PIECES_FROM + 16];
    let mut message = Builder::new_default();
    write_array(message.init_root::<value::Builder>(), &big, &[big.len() as u64]).unwrap();
    let array = ArrayRef::read(message.get_root_as_reader::<value::Reader>().unwrap()).unwrap();
    assert_eq!(array.pieces().len(), 3);
    assert_eq!(array.as_slice::<u8>().unwrap_err().code, xproc::TYPE_ERROR);
    let joined = array.to_vec::<u8>().unwrap();
    assert!(joined == big);
}

/// A `Value.Array` as a hostile writer makes it. (An unknown dtype cannot be written
/// through the generated enum; the C++ and Python tests send one.)
fn hand_built(dtype: DType, shape: &[u64], data: &[u8], pieces: &[&[u8]]) -> Builder<HeapAllocator> {
    let mut message = Builder::new_default();
    let mut array = message.init_root::<value::Builder>().init_array();
    array.set_dtype(dtype);
    let mut out = array.reborrow().init_shape(shape.len() as u32);
    for (i, &length) in shape.iter().enumerate() {
        out.set(i as u32, length);
    }
    array.set_data(data);
    if !pieces.is_empty() {
        let mut list = array.reborrow().init_pieces(pieces.len() as u32);
        for (i, piece) in pieces.iter().enumerate() {
            list.set(i as u32, piece);
        }
    }
    message
}

fn decode_error(message: &Builder<HeapAllocator>) -> String {
    let error = ArrayRef::read(message.get_root_as_reader::<value::Reader>().unwrap()).unwrap_err();
    assert_eq!(error.code, xproc::DECODE_ERROR, "{}", error.message);
    error.message
}

#[test]
fn malformed_arrays_are_decode_errors() {
    assert!(decode_error(&hand_built(DType::Float64, &[3], &[0; 16], &[])).contains("with 16 bytes"));
    assert!(decode_error(&hand_built(DType::Bool, &[2], &[1, 2], &[])).contains("not 0 or 1"));
    let good_bool = hand_built(DType::Bool, &[2], &[1, 0], &[]);
    assert!(ArrayRef::read(good_bool.get_root_as_reader::<value::Reader>().unwrap()).is_ok());
    assert!(decode_error(&hand_built(DType::Uint8, &[4], &[0; 2], &[&[0; 2]])).contains("both data and pieces"));
    assert!(decode_error(&hand_built(DType::Int32, &[3], &[], &[&[0; 6], &[0; 6]])).contains("not whole"));
    assert!(decode_error(&hand_built(DType::Uint8, &[1; 65], &[0], &[])).contains("65 dimensions"));
    assert!(decode_error(&hand_built(DType::Uint8, &[1 << 32, 1 << 32, 2], &[], &[])).contains("overflows"));
    // product(shape) * 16 overflows 64 bits
    assert!(decode_error(&hand_built(DType::Complex128, &[u64::MAX / 8], &[0; 16], &[])).contains("with 16 bytes"));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (ctest sets it)"))
}

fn relay_in_rust(from: &mut Queue, to: &mut Queue, count: usize) {
    fn copy<T: Element>(array: &ArrayRef<'_>, to: value::Builder<'_>) {
        write_array(to, array.as_slice::<T>().unwrap(), array.shape()).unwrap();
    }
    for _ in 0..count {
        let bytes = from.get(Some(20.0)).unwrap();
        // Into words, so that the elements are aligned for their type wherever the bytes were.
        let mut words = capnp::Word::allocate_zeroed_vec(bytes.len() / 8);
        capnp::Word::words_to_bytes_mut(&mut words).copy_from_slice(&bytes);
        let mut flat = capnp::Word::words_to_bytes(&words);
        let reader = serialize::read_message_from_flat_slice(&mut flat, ReaderOptions::new()).unwrap();
        let array = ArrayRef::read(reader.get_root::<value::Reader>().unwrap()).unwrap();
        let mut message = Builder::new_default();
        let out = message.init_root::<value::Builder>();
        match array.dtype() {
            DType::Bool => copy::<bool>(&array, out),
            DType::Int8 => copy::<i8>(&array, out),
            DType::Int16 => copy::<i16>(&array, out),
            DType::Int32 => copy::<i32>(&array, out),
            DType::Int64 => copy::<i64>(&array, out),
            DType::Uint8 => copy::<u8>(&array, out),
            DType::Uint16 => copy::<u16>(&array, out),
            DType::Uint32 => copy::<u32>(&array, out),
            DType::Uint64 => copy::<u64>(&array, out),
            DType::Float16 => copy::<F16>(&array, out),
            DType::Float32 => copy::<f32>(&array, out),
            DType::Float64 => copy::<f64>(&array, out),
            DType::Complex64 => copy::<Complex<f32>>(&array, out),
            DType::Complex128 => copy::<Complex<f64>>(&array, out),
        }
        to.put(&serialize::write_message_to_words(&message), None).unwrap();
    }
}

#[test]
fn arrays_tour_python_cpp_rust_python_unchanged() {
    let value_schema = <value::Reader as capnp::traits::HasTypeId>::TYPE_ID;
    let names: Vec<String> = ["py-to-cpp", "cpp-to-rust", "rust-to-py"]
        .iter()
        .map(|tag| format!("rust-arrays-{tag}-{}", std::process::id()))
        .collect();
    let mut queues: Vec<Queue> = names.iter().map(|name| Queue::create(name, 0, value_schema).unwrap()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/arrays_relay.py");

    let put = Command::new(env("XPROC_PYTHON")).args([script, "put", &names[0]]).output().unwrap();
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let count: usize = String::from_utf8(put.stdout).unwrap().trim().parse().unwrap();
    assert!(count > 50);

    let relay = Command::new(env("XPROC_PEER")).args(["relay-arrays", &names[0], &names[1], &count.to_string()]).output().unwrap();
    assert!(relay.status.success(), "{}", String::from_utf8_lossy(&relay.stderr));

    let (first, rest) = queues.split_at_mut(2);
    relay_in_rust(&mut first[1], &mut rest[0], count);

    let check = Command::new(env("XPROC_PYTHON")).args([script, "check", &names[2]]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    for name in &names {
        Queue::remove(name).unwrap();
    }
}
