// Links libxproc_c (the C ABI) and generates Rust code for xproc's Value schema and the
// examples' Point (used by the tests). XPROC_LIB_DIR says where libxproc_c.so is
// (ctest sets it; default: the developer build).
use std::env;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let lib_dir = env::var("XPROC_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("build/default/bindings/c"));
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=xproc_c");
    // Tests and examples find the library where it was built.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    println!("cargo:rerun-if-env-changed=XPROC_LIB_DIR");

    capnpc::CompilerCommand::new()
        .import_path("/usr/include")
        .src_prefix(root.join("schema/xproc"))
        .file(root.join("schema/xproc/value.capnp"))
        .run()
        .expect("compiling schema/xproc/value.capnp (is the capnp tool installed?)");
    capnpc::CompilerCommand::new()
        .src_prefix(root.join("examples/cpp"))
        .file(root.join("examples/cpp/point.capnp"))
        .run()
        .expect("compiling examples/cpp/point.capnp");
    println!("cargo:rerun-if-changed={}", root.join("schema/xproc/value.capnp").display());
    println!("cargo:rerun-if-changed={}", root.join("examples/cpp/point.capnp").display());
}
