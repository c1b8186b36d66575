//! Relay frame decoder, both directions: never panics, never reads past its size limit;
//! anything accepted re-encodes to a frame that decodes equal.
#![no_main]
use dossier_wire::{ClientMessage, ServerMessage, check, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
    if let Ok(m) = decode::<ClientMessage>(data) {
        let again = encode(&m).expect("an accepted message re-encodes");
        assert_eq!(decode::<ClientMessage>(&again).expect("and decodes"), m);
    }
    if let Ok(m) = decode::<ServerMessage>(data) {
        let again = encode(&m).expect("an accepted message re-encodes");
        assert_eq!(decode::<ServerMessage>(&again).expect("and decodes"), m);
    }
});
