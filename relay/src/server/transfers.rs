//! Permits for body transfers (deposits and fetches): relay-wide, so that body memory is
//! bounded whatever the number of connections, and per facility, so that one node cannot
//! hold every slot. A node trickling a byte every few seconds keeps its transfer — and its
//! slot — alive indefinitely without tripping any time-out; with only a relay-wide limit,
//! two such connections (32 streams each) could stall every other facility's transfers.
//! A facility's transfers beyond its share wait for one of its own to end (QUIC flow control
//! holds the node back meanwhile); other facilities are not affected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// Most body transfers streaming at once, relay-wide. Each holds at most a few MiB of
/// buffers.
pub(crate) const MAX_CONCURRENT_TRANSFERS: usize = 64;
/// Most body transfers one facility may have streaming at once.
pub(crate) const MAX_TRANSFERS_PER_FACILITY: usize = 8;

/// The relay's transfer permits.
pub(crate) struct Transfers {
    all: Semaphore,
    per_facility: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

/// Held while a body streams; dropping it frees both slots.
pub(crate) struct TransferPermit<'a> {
    _facility: Option<OwnedSemaphorePermit>,
    _all: Option<SemaphorePermit<'a>>,
}

impl Transfers {
    pub(crate) fn new() -> Self {
        Self {
            all: Semaphore::new(MAX_CONCURRENT_TRANSFERS),
            per_facility: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot of `facility`'s own, then for one of the relay's. The map holds
    /// one entry per facility that ever transferred: bounded by the enrolled facilities.
    pub(crate) async fn acquire(&self, facility: &Arc<str>) -> TransferPermit<'_> {
        let own = {
            let mut map = self
                .per_facility
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                map.entry(Arc::clone(facility))
                    .or_insert_with(|| Arc::new(Semaphore::new(MAX_TRANSFERS_PER_FACILITY))),
            )
        };
        // Neither semaphore is ever closed, so acquiring only fails in theory; a permit of
        // `None` then simply does not limit.
        let facility = own.acquire_owned().await.ok();
        let all = self.all.acquire().await.ok();
        TransferPermit {
            _facility: facility,
            _all: all,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_facility_cannot_take_every_slot() {
        let t = Transfers::new();
        let busy: Arc<str> = Arc::from("us-trickler");
        let other: Arc<str> = Arc::from("th-clinic");
        let mut held = Vec::new();
        for _ in 0..MAX_TRANSFERS_PER_FACILITY {
            held.push(t.acquire(&busy).await);
        }
        let more = tokio::time::timeout(Duration::from_millis(50), t.acquire(&busy)).await;
        assert!(more.is_err(), "the busy facility's next transfer waits");
        let theirs = tokio::time::timeout(Duration::from_millis(50), t.acquire(&other)).await;
        assert!(theirs.is_ok(), "another facility still gets a slot");
        held.pop();
        let after = tokio::time::timeout(Duration::from_millis(50), t.acquire(&busy)).await;
        assert!(after.is_ok(), "a freed slot of its own lets it go on");
    }

    #[tokio::test]
    async fn the_relay_wide_limit_holds_across_facilities() {
        let t = Transfers::new();
        let mut held = Vec::new();
        for i in 0..MAX_CONCURRENT_TRANSFERS {
            let f: Arc<str> = Arc::from(format!("f{}", i / MAX_TRANSFERS_PER_FACILITY));
            held.push(t.acquire(&f).await);
        }
        let late: Arc<str> = Arc::from("late");
        let waits = tokio::time::timeout(Duration::from_millis(50), t.acquire(&late)).await;
        assert!(waits.is_err(), "no slot beyond the relay-wide limit");
    }
}
