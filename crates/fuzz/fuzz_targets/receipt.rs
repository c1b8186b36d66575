//! Delivery receipt parser: never panics; anything accepted re-serialises to a receipt that
//! parses equal.
#![no_main]
use dossier_bundle::receipt::SignedReceipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedReceipt::parse(data) {
        let again = SignedReceipt::parse(&r.to_bytes()).expect("a re-serialised receipt parses");
        assert_eq!(again, r);
    }
});
