//! Card parser: never panics; anything accepted re-serialises to a card that parses equal.
#![no_main]
use dossier_bundle::FacilityCard;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(card) = FacilityCard::parse(data) {
        let again = FacilityCard::parse(&card.to_file_bytes()).expect("a re-serialised card parses");
        assert_eq!(again, card);
    }
});
