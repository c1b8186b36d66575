//! Manifest parser: never panics; accepted manifests round-trip through `to_bytes`.
#![no_main]
use dossier_bundle::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).expect("re-serialised manifest parses"), m);
    }
});
