// Links libxproc_c (the C ABI) and generates Rust code for xproc's Value schema, plus the
// examples' Point for the tests when built inside the xproc repository.
//
// Where libxproc_c is found: XPROC_LIB_DIR when set (ctest sets it); otherwise the
// repository's developer build (build/default/bindings/c) when there is one; otherwise
// the linker's own search path, where `cmake --install` to a system prefix puts it.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let checkout = crate_dir.join("../..");
    println!("cargo:rerun-if-env-changed=XPROC_LIB_DIR");
    let lib_dir = match env::var_os("XPROC_LIB_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(checkout.join("build/default/bindings/c")).filter(|dir| dir.is_dir()),
    };
    if let Some(dir) = &lib_dir {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Tests and examples find the library where it was built.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=xproc_c");

    // schema/value.capnp is a link to the repository's schema/xproc/value.capnp, which
    // `cargo package` stores as a file: one schema, and a crate that builds on its own.
    compile(&crate_dir.join("schema"), "value.capnp");
    // The examples' Point, which tests/cross_language.rs exchanges with a C++ process: in
    // the repository only (the published crate has no tests).
    let examples = checkout.join("examples/cpp");
    if examples.join("point.capnp").is_file() && checkout.join("schema/xproc/value.capnp").is_file() {
        compile(&examples, "point.capnp");
    }
}

fn compile(dir: &Path, file: &str) {
    let path = dir.join(file);
    println!("cargo:rerun-if-changed={}", path.display());
    capnpc::CompilerCommand::new()
        .import_path("/usr/include") // capnp/c++.capnp, which value.capnp imports
        .src_prefix(dir)
        .file(&path)
        .run()
        .unwrap_or_else(|e| panic!("compiling {} (is the capnp tool installed?): {e}", path.display()));
}
