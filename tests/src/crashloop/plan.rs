//! What one crash-loop cycle will do, drawn from the seeded source before it starts.

use std::collections::VecDeque;
use std::time::Duration;

use super::Config;
use super::children::{Rng, Who};

/// One bundle a slot will send.
pub(crate) struct SendPlan {
    pub(crate) sender: usize,
    pub(crate) to: Vec<usize>,
    pub(crate) large: bool,
}

/// Everything random about one cycle, drawn up front so it depends on the seed only.
///
/// Times are counted from the cycle's *anchor*: the moment the relay logs the cycle's first
/// `deposit receiving`, so that kills land while bundles move rather than while the senders
/// are still sealing (see [`ANCHOR_LIMIT`]).
pub(crate) struct Plan {
    pub(crate) slots: Vec<VecDeque<SendPlan>>,
    /// One-shot `sync` runs: (start after the anchor, node).
    pub(crate) syncs: Vec<(Duration, Who)>,
    /// `sync --watch` processes, started with the cycle: SIGKILLed with the nodes, or
    /// stopped with SIGTERM at the end when nodes are not killed.
    pub(crate) watches: Vec<Who>,
    pub(crate) relay_kill: Option<Duration>,
    pub(crate) restart_at_once: bool,
    pub(crate) node_kill: Option<Duration>,
    /// Per slot: its running send dies with the nodes.
    pub(crate) kill_send: Vec<bool>,
}

/// A cycle whose uploads have not begun this long after its start is anchored anyway.
pub(crate) const ANCHOR_LIMIT: Duration = Duration::from_secs(5);

impl Plan {
    pub(crate) fn draw(
        rng: &mut Rng,
        cfg: &Config,
        n: u32,
        senders: usize,
        recipients: usize,
    ) -> Self {
        let large_cycle = cfg.large_every > 0 && n % cfg.large_every == 0;
        let slots = (0..cfg.senders)
            .map(|s| {
                (0..cfg.bundles_per_sender)
                    .map(|b| SendPlan {
                        sender: rng.below(senders as u64) as usize,
                        to: match rng.below(3) {
                            0 => vec![0],
                            1 => vec![recipients - 1],
                            _ => (0..recipients).collect(),
                        },
                        large: large_cycle && s == 0 && b == 0,
                    })
                    .collect()
            })
            .collect();
        let mut syncs = Vec::new();
        let mut watches = Vec::new();
        let mut nodes: Vec<Who> = (0..recipients).map(Who::Recipient).collect();
        if cfg.kill.node() {
            // Senders' syncs take over uploads from killed sends, and die too.
            nodes.extend((0..senders).map(Who::Sender));
        }
        for who in nodes {
            if rng.chance(1, 2) {
                watches.push(who);
            } else {
                syncs.push((rng.millis(cfg.max_kill_delay_ms), who));
            }
        }
        syncs.sort_by_key(|s| s.0);
        Self {
            slots,
            syncs,
            watches,
            relay_kill: cfg.kill.relay().then(|| rng.millis(cfg.max_kill_delay_ms)),
            restart_at_once: rng.chance(1, 2),
            node_kill: cfg.kill.node().then(|| rng.millis(cfg.max_kill_delay_ms)),
            kill_send: (0..cfg.senders)
                .map(|_| cfg.kill.node() && rng.chance(1, 3))
                .collect(),
        }
    }
}
