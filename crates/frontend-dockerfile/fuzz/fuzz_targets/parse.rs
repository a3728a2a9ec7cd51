//! The Dockerfile parser never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = img_frontend_dockerfile::parse(data, "Dockerfile");
});
