//! Revocation parser: never panics; anything accepted re-serialises to a revocation that
//! parses equal.
#![no_main]
use dossier_bundle::SignedRevocation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = SignedRevocation::parse(data) {
        let again =
            SignedRevocation::parse(&r.to_bytes()).expect("a re-serialised revocation parses");
        assert_eq!(again, r);
    }
});
