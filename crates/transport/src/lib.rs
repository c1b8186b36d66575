//! QUIC transport settings that nodes and the relay share.
//!
//! Records cross two very different kinds of path. Between a hospital's node and a relay in
//! the same data centre (or on one machine, as in the tests and benchmarks) the round trip
//! is well under a millisecond and loss is rare; between a clinic abroad or a patient on a
//! mobile network and the relay it is 100–300 ms, with loss and reordering. quinn's default
//! congestion controller, CUBIC, reads every lost packet as congestion: at 5 % random loss
//! and 300 ms it carried about 25 KB/s (a 100 MiB bundle would take over an hour). BBR,
//! which paces by measured bandwidth and round trip, carried the same bundle in about 20 s —
//! but at sub-millisecond round trips its small window makes the sender wake for every few
//! packets, and a 1 GiB transfer on loopback cost the relay twice the CPU. So each
//! connection uses [`Adaptive`]: CUBIC when the minimum round trip over its first packets is
//! below [`LONG_HAUL_RTT`], BBR otherwise. See docs/operations.md, "Testing over bad
//! networks", for the measurements.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod adaptive;

pub use adaptive::{Adaptive, AdaptiveConfig, DECIDE_AFTER_ACKS, LONG_HAUL_RTT};

use std::sync::Arc;

/// Later packets acknowledged before an earlier one counts as lost. RFC 9002 suggests 3;
/// on a reordering path at a few MB/s dozens of packets overtake one delayed by 5 ms, and
/// with 3 each of those was a (spurious) loss: 0.2 MB/s instead of 5–7 MB/s measured.
/// Loss detection by time (9/8 of the round trip) still applies.
pub const PACKET_REORDER_THRESHOLD: u32 = 32;

/// Applies the shared settings (congestion control and reordering tolerance) to `t`.
pub fn tune(t: &mut quinn::TransportConfig) -> &mut quinn::TransportConfig {
    t.congestion_controller_factory(Arc::new(AdaptiveConfig::default()))
        .packet_threshold(PACKET_REORDER_THRESHOLD)
}
