//! The whole open path on arbitrary bytes (age header, bounded header check, decryption,
//! container): never panics and never verifies.
#![no_main]
use dossier_bundle::open::{SenderDirectory, SenderLookupError, verify};
use dossier_bundle::{FacilityCard, FacilityId, FacilityKeys, Keyring, PartyRef};
use libfuzzer_sys::fuzz_target;

struct NoPins;
impl SenderDirectory for NoPins {
    fn sender_card(&self, _: &PartyRef) -> Result<FacilityCard, SenderLookupError> {
        Err(SenderLookupError::NotAContact)
    }
}

fuzz_target!(|data: &[u8]| {
    let keys = FacilityKeys::from_secrets(
        "AGE-SECRET-KEY-1KXN4FGXS9PQVSQ0ECN6YAM9W0ETFFJJWWHPK9QPGMDF2R2UUYF3QD93RWY",
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
    )
    .expect("fixed test keys");
    let ring = Keyring::new(keys);
    let me = FacilityId::parse("th-fuzz").expect("valid id");
    assert!(verify(data, &ring, &me, &NoPins).is_err());
});
