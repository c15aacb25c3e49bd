//! The libxproc_c the crate links is the release the crate is.

#[test]
fn library_version_is_the_crate_version() {
    assert_eq!(xproc::library_version(), env!("CARGO_PKG_VERSION"));
}
