//! Node-API link settings for the cdylib.
fn main() {
    napi_build::setup();
}
