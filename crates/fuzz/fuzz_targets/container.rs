//! The plaintext container reader (the tar inside the age layer): never panics, bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dossier_bundle::container::fuzz_read_container(data);
});
