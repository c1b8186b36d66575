//! [`Adaptive`]: CUBIC on short paths, BBR on long ones, chosen per connection from the
//! minimum round trip measured so far.
//!
//! Both controllers see every event (sent, acknowledged, lost, MTU change), so whichever is
//! chosen has a warm estimate of the path; only the window quinn sends against comes from
//! the chosen one. The minimum round trip only ever falls, so a connection that starts on
//! BBR (a long path) moves to CUBIC if a shorter round trip is ever seen, never back.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Bbr, BbrConfig, Controller, ControllerFactory, Cubic, CubicConfig};
use quinn_proto::RttEstimator;

/// Paths whose minimum round trip is at least this long use BBR.
pub const LONG_HAUL_RTT: Duration = Duration::from_millis(10);

/// Builds [`Adaptive`] controllers (the factory given to quinn's transport config).
#[derive(Debug, Clone, Default)]
pub struct AdaptiveConfig {
    cubic: Arc<CubicConfig>,
    bbr: Arc<BbrConfig>,
}

impl ControllerFactory for AdaptiveConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(Adaptive {
            cubic: Cubic::new(Arc::clone(&self.cubic), now, current_mtu),
            bbr: Bbr::new(Arc::clone(&self.bbr), current_mtu),
            long_haul: false,
        })
    }
}

/// A congestion controller that follows CUBIC or BBR depending on the path.
#[derive(Debug, Clone)]
pub struct Adaptive {
    cubic: Cubic,
    bbr: Bbr,
    /// Whether BBR's window is used: the minimum round trip measured is at least
    /// [`LONG_HAUL_RTT`]. Before the first acknowledgement, CUBIC's (the initial windows
    /// are alike).
    long_haul: bool,
}

impl Adaptive {
    /// Whether the connection currently follows BBR.
    pub fn is_long_haul(&self) -> bool {
        self.long_haul
    }

    fn chosen(&self) -> &dyn Controller {
        if self.long_haul {
            &self.bbr
        } else {
            &self.cubic
        }
    }
}

impl Controller for Adaptive {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.cubic.on_sent(now, bytes, last_packet_number);
        self.bbr.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.long_haul = rtt.min() >= LONG_HAUL_RTT;
        self.cubic.on_ack(now, sent, bytes, app_limited, rtt);
        self.bbr.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.cubic
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
        self.bbr
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.cubic
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
        self.bbr
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.cubic.on_mtu_update(new_mtu);
        self.bbr.on_mtu_update(new_mtu);
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
        self.cubic.initial_window()
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
        assert!(!adaptive.is_long_haul());
        assert_eq!(adaptive.bbr.window(), bbr.window(), "events reach BBR too");
    }
}
