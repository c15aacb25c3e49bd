//! Rust and C++ on one named queue: Rust reads the Points a C++ process put, and a C++
//! process reads the Points Rust put. XPROC_PEER names the C++ side
//! (examples/cross/peer.cpp); ctest sets it.
use std::process::Command;

use capnp::message::{Builder, ReaderOptions};
use capnp::serialize;
use xproc::Queue;

// The examples' Point (examples/cpp/point.capnp), which build.rs generates in the repository.
mod point_capnp {
    include!(concat!(env!("OUT_DIR"), "/point_capnp.rs"));
}
use point_capnp::point;

fn peer() -> String {
    std::env::var("XPROC_PEER").expect("XPROC_PEER must name the built xproc_example_cross_peer")
}

fn unique(tag: &str) -> String {
    format!("rust-{}-{}", tag, std::process::id())
}

#[test]
fn reads_what_cpp_put() {
    let name = unique("from-cpp");
    let status = Command::new(peer()).args(["produce", &name, "3"]).status().unwrap();
    assert!(status.success());
    let mut queue = Queue::open(&name).unwrap();
    assert_eq!(queue.schema_id(), <point::Reader as capnp::traits::HasTypeId>::TYPE_ID);
    for i in 0..3i64 {
        let bytes = queue.get(Some(10.0)).unwrap();
        let message = serialize::read_message_from_flat_slice(&mut bytes.as_slice(), ReaderOptions::new()).unwrap();
        let p = message.get_root::<point::Reader>().unwrap();
        assert_eq!((p.get_x(), p.get_y()), (i, i * i));
        assert_eq!(p.get_name().unwrap().to_str().unwrap(), format!("C++ point {i}"));
    }
    assert_eq!(queue.get(Some(0.0)).unwrap_err().code, xproc::EMPTY);
    Queue::remove(&name).unwrap();
}

#[test]
fn cpp_reads_what_rust_put() {
    let name = unique("to-cpp");
    let mut queue = Queue::create(&name, 0, <point::Reader as capnp::traits::HasTypeId>::TYPE_ID).unwrap();
    for i in 0..2i64 {
        let mut message = Builder::new_default();
        let mut p = message.init_root::<point::Builder>();
        p.set_x(100 + i);
        p.set_y(-i);
        p.set_name(format!("Rust point {i}"));
        queue.put(&serialize::write_message_to_words(&message), None).unwrap();
    }
    let output = Command::new(peer()).args(["consume", &name, "2"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text, "C++ got x=100 y=0 name=Rust point 0\nC++ got x=101 y=-1 name=Rust point 1\n");
    Queue::remove(&name).unwrap();
}

#[test]
fn errors_carry_code_and_message() {
    let error = Queue::open("rust-no-such-queue-at-all").err().unwrap();
    assert_eq!(error.code, xproc::VALUE_ERROR);
    assert!(error.message.contains("rust-no-such-queue-at-all"), "{}", error.message);
    assert!(Queue::create("bad/name", 0, 0).is_err());
}
