//! Fixtures shared by this crate's unit tests.

use crate::card::CardDetails;
use crate::{CountryCode, FacilityCard, FacilityId, FacilityKeys, PartyKind, Timestamp};

/// Fresh keys and a self-signed facility card for `id` in country `cc`.
pub(crate) fn facility(id: &str, cc: &str) -> (FacilityKeys, FacilityCard) {
    let keys = FacilityKeys::generate().expect("system RNG");
    let details = CardDetails {
        id: FacilityId::parse(id).expect("valid test id"),
        name: format!("Facility {id}"),
        country: CountryCode::parse(cc).expect("valid test country"),
        kind: PartyKind::Facility,
    };
    let created = Timestamp::parse("2026-11-23T09:00:00Z").expect("valid time");
    let card = FacilityCard::issue(&keys, &details, created, None, None).expect("card issues");
    (keys, card)
}
