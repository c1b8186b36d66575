//! [`Adaptive`]: CUBIC on short paths, BBR on long ones, chosen per connection from the
//! path's minimum round trip after [`DECIDE_AFTER_ACKS`] acknowledged packets.
//!
//! The minimum round trip is what tells a data-centre path (well under a millisecond) from
//! an intercontinental one (100–300 ms). The first samples are not enough: measured on
//! loopback, the handshake's first sample often exceeded 10 ms (the peers are busy with
//! keys and certificates), and deciding on it put loopback transfers on BBR. Until the
//! decision both controllers see every event, so the chosen one starts warm; after it, only
//! the chosen one is kept (feeding both for the whole connection would cost every
//! acknowledgement twice). The choice is not revisited: a connection does not move between
//! such different paths.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Bbr, BbrConfig, Controller, ControllerFactory, Cubic, CubicConfig};
use quinn_proto::RttEstimator;

/// Paths whose minimum round trip is at least this long use BBR.
pub const LONG_HAUL_RTT: Duration = Duration::from_millis(10);

/// Acknowledged packets after which the path is judged: a few round trips of data.
pub const DECIDE_AFTER_ACKS: u32 = 64;

/// Builds [`Adaptive`] controllers (the factory given to quinn's transport config).
#[derive(Debug, Clone, Default)]
pub struct AdaptiveConfig {
    cubic: Arc<CubicConfig>,
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for AdaptiveConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Adaptive(Path::Undecided {
            cubic: Cubic::new(Arc::clone(&self.cubic), now, current_mtu),
            bbr: Bbr::new(Arc::clone(&self.bbr), current_mtu),
            acks: 0,
        }))
    }
}

/// A congestion controller that follows CUBIC or BBR depending on the path.
#[derive(Debug, Clone)]
pub struct Adaptive(Path);

#[derive(Debug, Clone)]
enum Path {
    /// Fewer than [`DECIDE_AFTER_ACKS`] acknowledgements: both are fed, CUBIC's window is
    /// used (both start alike, in slow start).
    Undecided { cubic: Cubic, bbr: Bbr, acks: u32 },
    /// Minimum round trip below [`LONG_HAUL_RTT`].
    Short(Cubic),
    /// Minimum round trip at least [`LONG_HAUL_RTT`].
    Long(Bbr),
}

impl Adaptive {
    /// Whether the connection follows BBR (decided after [`DECIDE_AFTER_ACKS`]).
    pub fn is_long_haul(&self) -> bool {
        matches!(self.0, Path::Long(_))
    }

    /// Whether the choice has been made.
    pub fn is_decided(&self) -> bool {
        !matches!(self.0, Path::Undecided { .. })
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Controller)) {
        match &mut self.0 {
            Path::Undecided { cubic, bbr, .. } => {
                f(cubic);
                f(bbr);
            }
            Path::Short(cubic) => f(cubic),
            Path::Long(bbr) => f(bbr),
        }
    }

    fn chosen(&self) -> &dyn Controller {
        match &self.0 {
            Path::Undecided { cubic, .. } | Path::Short(cubic) => cubic,
            Path::Long(bbr) => bbr,
        }
    }
}

impl Controller for Adaptive {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.each(|c| c.on_sent(now, bytes, last_packet_number));
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.each(|c| c.on_ack(now, sent, bytes, app_limited, rtt));
        if let Path::Undecided { cubic, bbr, acks } = &mut self.0 {
            *acks += 1;
            if *acks >= DECIDE_AFTER_ACKS {
                self.0 = if rtt.min() >= LONG_HAUL_RTT {
                    Path::Long(bbr.clone())
                } else {
                    Path::Short(cubic.clone())
                };
            }
        }
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.each(|c| c.on_end_acks(now, in_flight, app_limited, largest_packet_num_acked));
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.each(|c| c.on_congestion_event(now, sent, is_persistent_congestion, lost_bytes));
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.each(|c| c.on_mtu_update(new_mtu));
    }

    fn window(&self) -> u64 {
        self.chosen().window()
    }

    fn metrics(&self) -> quinn::congestion::ControllerMetrics {
        self.chosen().metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.chosen().initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_cubic_and_keeps_both_controllers_in_step() {
        let now = Instant::now();
        let mut a = Arc::new(AdaptiveConfig::default()).build(now, 1200);
        let mut cubic = Arc::new(CubicConfig::default()).build(now, 1200);
        let mut bbr = Arc::new(BbrConfig::default()).build(now, 1200);
        assert_eq!(
            a.window(),
            cubic.window(),
            "CUBIC's window before any sample"
        );
        assert_eq!(a.initial_window(), cubic.initial_window());
        for c in [&mut a, &mut cubic, &mut bbr] {
            c.on_mtu_update(1400);
            c.on_congestion_event(now, now, false, 1400);
        }
        assert_eq!(a.window(), cubic.window(), "events reach CUBIC");
        let adaptive = a.into_any().downcast::<Adaptive>().expect("an Adaptive");
        assert!(!adaptive.is_decided() && !adaptive.is_long_haul());
        match &adaptive.0 {
            Path::Undecided { bbr: theirs, .. } => {
                assert_eq!(theirs.window(), bbr.window(), "events reach BBR too")
            }
            _ => panic!("undecided before any acknowledgement"),
        }
    }
}
