//! Pushing notices to connected nodes (docs/protocol.md §15.4), so a recipient online hears
//! of new mail without polling and a sender hears that a bundle expired.
//!
//! The [`Registry`] maps each authenticated facility to its live connections. A notice is
//! one relay-opened unidirectional stream carrying one `Notice` frame, sent to every
//! connection of the facility from its own short task, so a slow node never delays a
//! deposit's answer or another node's notice. Notices are hints — the mailbox and the
//! receipt log are the truth — so one that cannot be delivered within a few seconds is
//! dropped and logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dossier_wire::ServerMessage;
use dossier_wire::message::NoticeKind;
use quinn::{Connection, VarInt};

use super::Context;
use super::framing::write_frame;

/// How long one notice may take before it is given up.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Live connections by facility id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    by_facility: Mutex<HashMap<String, Vec<Connection>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Connection>>> {
        self.by_facility
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `conn` as `facility`'s until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, facility: &str, conn: &Connection) -> Registration {
        self.lock()
            .entry(facility.to_owned())
            .or_default()
            .push(conn.clone());
        Registration {
            registry: Arc::clone(self),
            facility: facility.to_owned(),
            id: conn.stable_id(),
        }
    }

    /// The live connections of `facility`.
    pub(crate) fn connections(&self, facility: &str) -> Vec<Connection> {
        self.lock().get(facility).cloned().unwrap_or_default()
    }

    /// Closes every connection of `facility` (after a revocation).
    pub(crate) fn close_facility(&self, facility: &str, code: VarInt, reason: &[u8]) -> usize {
        let conns = self.connections(facility);
        for c in &conns {
            c.close(code, reason);
        }
        conns.len()
    }

    /// Total live, authenticated connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// Removes a connection from the registry when its handler ends.
pub(crate) struct Registration {
    registry: Arc<Registry>,
    facility: String,
    id: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.facility) {
            list.retain(|c| c.stable_id() != self.id);
            if list.is_empty() {
                map.remove(&self.facility);
            }
        }
    }
}

/// Sends `kind` about `bundle_id` to every live connection of `facility`, each from its own
/// task (which holds the context, so shutdown waits for it).
pub(crate) fn notify(ctx: &Arc<Context>, facility: &str, kind: NoticeKind, bundle_id: &str) {
    for conn in ctx.registry.connections(facility) {
        let ctx = Arc::clone(ctx);
        let msg = ServerMessage::Notice {
            kind,
            bundle_id: bundle_id.to_owned(),
        };
        let facility = facility.to_owned();
        let bundle_id = bundle_id.to_owned();
        tokio::spawn(async move {
            let sent = tokio::time::timeout(NOTICE_TIMEOUT, async {
                let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
                write_frame(&mut send, &msg)
                    .await
                    .map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())
            })
            .await;
            match sent {
                Ok(Ok(())) => tracing::debug!(%facility, %bundle_id, ?kind, "notice sent"),
                Ok(Err(e)) => {
                    tracing::debug!(%facility, %bundle_id, ?kind, error = %e, "notice not sent");
                }
                Err(_) => tracing::debug!(%facility, %bundle_id, ?kind, "notice timed out"),
            }
            drop(ctx);
        });
    }
}
