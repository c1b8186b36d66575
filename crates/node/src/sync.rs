//! `send` and `sync`: moving bundles between the outbox, the relay and the inbox.
//!
//! The order of steps is what makes delivery exactly-once and loss-free:
//!
//! 1. **Upload**: every outbox bundle the relay has not accepted is deposited (resuming from
//!    what the relay already holds); it stays queued until the relay says `DepositAccepted`,
//!    which the relay sends only once the bundle is durable there.
//! 2. **Receive**: each mailbox item not already known here is fetched into
//!    `inbox/incoming/<id>.part` (resuming from its length), fsynced, checked against the
//!    listed length and SHA-256, then verified (pass 1 of opening: signature, pin, recipient
//!    list, every hash; nothing decrypted is written). It then becomes an inbox entry, or a
//!    quarantine entry if any check failed — durably — and **only then** is the relay
//!    acknowledged and a signed receipt (`delivered` or `rejected`) posted for the sender. A
//!    bundle id already in the inbox or quarantine is acknowledged again, never stored twice.
//! 3. **Receipts**: the receipts and notices for bundles this node sent are fetched after the
//!    last sequence number seen; each receipt is checked against the recipient's pinned card
//!    and against the ciphertext hash this node deposited before it changes any state.
//!
//! A crash anywhere repeats at most a step whose effect is idempotent. Logs and events carry
//! bundle ids, facility ids and sizes — never subjects, patient references or part names.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use dossier_bundle::{FacilityCard, Keyring, Manifest, Timestamp};
use dossier_wire::message::NoticeKind;

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::contacts::ContactBook;
use crate::disclosures::{self, Channel, DisclosureRecord};
use crate::error::NodeError;
use crate::home::NodeHome;
use crate::outbox::{self, DeliveryState, OutboxRecord};
use crate::relay_client::{RelayConnection, RelayError, TransferProgress};
use crate::relay_config::RelayConfig;
use crate::sealing::SealOptions;
use crate::statefile::{read_json, with_state_lock, write_json};

/// Attempts per network step within one run (the connection is re-made between them).
const TRIES: u32 = 3;
const SYNC_STATE_FORMAT: &str = "dossier-sync/v1";

/// Everything a transfer needs: the home, the unlocked keys, the relay and the observers.
pub struct SyncContext<'a> {
    /// The node's home.
    pub home: &'a NodeHome,
    /// The unlocked keyring (signs the relay proof and receipts, decrypts to verify).
    pub keyring: &'a Keyring,
    /// This node's current card.
    pub me: FacilityCard,
    /// The pinned relay.
    pub relay: RelayConfig,
    /// Draws transfer progress.
    pub progress: &'a dyn TransferProgress,
    /// Hears what happens.
    pub events: &'a dyn SyncEvents,
    /// Who runs the sync: receipts, quarantines and revocations are audited as theirs.
    pub actor: &'a Actor,
    /// Asks a download in progress to stop (the operator stopping `sync --watch`); the
    /// bytes received stay for the next attempt to resume after.
    pub stop: StopSignal,
}

/// Tells a running sync to stop: a download in progress runs on a blocking thread that
/// the async shutdown signal cannot interrupt, so it watches this instead.
#[derive(Clone, Debug)]
pub struct StopSignal(tokio::sync::watch::Receiver<bool>);

/// The sending half of a [`StopSignal`].
#[derive(Debug)]
pub struct Stopper(tokio::sync::watch::Sender<bool>);

impl StopSignal {
    /// A signal and the [`Stopper`] that raises it.
    pub fn new() -> (Stopper, StopSignal) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (Stopper(tx), StopSignal(rx))
    }

    /// A signal that is never raised.
    pub fn never() -> StopSignal {
        StopSignal::new().1
    }

    /// Completes once the signal is raised; never, if its stopper was dropped unraised.
    pub async fn raised(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Stopper {
    /// Raises the signal.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl<'a> SyncContext<'a> {
    /// A context for `home` (loads this node's card and the relay configuration).
    pub fn new(
        home: &'a NodeHome,
        keyring: &'a Keyring,
        progress: &'a dyn TransferProgress,
        events: &'a dyn SyncEvents,
        actor: &'a Actor,
    ) -> Result<Self, NodeError> {
        Ok(Self {
            home,
            keyring,
            me: crate::identity::my_card(home)?,
            relay: RelayConfig::require(home)?,
            progress,
            events,
            actor,
            stop: StopSignal::never(),
        })
    }
}

/// Something that happened during `send` or `sync`. No variant carries record content.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A copy whose retention period ran out was deleted (see `retention`).
    Purged {
        /// `export`, `inbox` or `outbox`.
        what: &'static str,
        /// The bundle it belonged to.
        bundle_id: String,
    },
    /// Authenticated to the relay.
    Connected {
        /// Relay address.
        address: String,
    },
    /// The relay accepted a bundle durably.
    Uploaded {
        /// Bundle id.
        bundle_id: String,
        /// Relay time of acceptance.
        accepted_at: Timestamp,
        /// Bytes sent on this attempt.
        sent: u64,
    },
    /// An upload failed for now; the bundle stays queued.
    UploadDeferred {
        /// Bundle id.
        bundle_id: String,
        /// Why.
        error: String,
    },
    /// The relay refused a bundle for good; it will not be retried.
    UploadRefused {
        /// Bundle id.
        bundle_id: String,
        /// Why.
        error: String,
    },
    /// A verified bundle entered the inbox.
    Received {
        /// Bundle id.
        bundle_id: String,
        /// Signed sender.
        from: String,
        /// Kind.
        kind: String,
        /// Ciphertext bytes.
        length: u64,
        /// Bytes already here from an interrupted download (0 if fetched whole).
        resumed_from: u64,
    },
    /// A bundle failed verification and was quarantined.
    Quarantined {
        /// Bundle id.
        bundle_id: String,
        /// Depositor according to the relay.
        relay_from: String,
        /// Why.
        reason: String,
    },
    /// A bundle already received was delivered again; acknowledged, not stored twice.
    Duplicate {
        /// Bundle id.
        bundle_id: String,
    },
    /// A download failed for now; it resumes next time.
    DownloadDeferred {
        /// Bundle id.
        bundle_id: String,
        /// Why.
        error: String,
    },
    /// A recipient's state changed (verified receipt or relay notice).
    Receipt {
        /// Bundle id.
        bundle_id: String,
        /// Recipient.
        recipient: String,
        /// New state.
        state: DeliveryState,
        /// When (signed time for receipts).
        at: Timestamp,
    },
    /// A pinned contact's revocation of its key was verified and applied: nothing more is
    /// sent to or accepted from its pinned key (docs/protocol.md §17; `sync::revocations`).
    ContactRevoked {
        /// Contact id.
        id: String,
        /// The contact's one-line reason (their words, never record content).
        reason: String,
    },
    /// The relay stored this node's revocation of its key.
    RevocationPosted {
        /// Fingerprint of the revoked key.
        fingerprint: String,
    },
    /// Something to tell the user that changes nothing.
    Warning(String),
    /// The connection was lost; trying again later.
    Reconnecting {
        /// Seconds until the next attempt.
        in_secs: u64,
        /// Why.
        error: String,
    },
}

/// Receives [`SyncEvent`]s as they happen.
pub trait SyncEvents: Send + Sync {
    /// One event.
    fn event(&self, e: SyncEvent);
}

/// Ignores events.
pub struct NoEvents;

impl SyncEvents for NoEvents {
    fn event(&self, _: SyncEvent) {}
}

/// Persistent position in the relay's receipt log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncState {
    format: String,
    receipts_after: u64,
    last_sync_at: Option<Timestamp>,
}

impl SyncState {
    fn path(home: &NodeHome) -> PathBuf {
        home.root().join("sync.json")
    }

    fn load(home: &NodeHome) -> Result<Self, NodeError> {
        let path = Self::path(home);
        match read_json::<Self>(&path)? {
            Some(s) if s.format == SYNC_STATE_FORMAT => Ok(s),
            Some(_) => Err(NodeError::CorruptState(path, "unknown format version")),
            None => Ok(Self {
                format: SYNC_STATE_FORMAT.into(),
                receipts_after: 0,
                last_sync_at: None,
            }),
        }
    }

    /// Moves the position forward only (another process may have gone further).
    fn advance(home: &NodeHome, after: u64, now: Timestamp) -> Result<(), NodeError> {
        with_state_lock(home, || {
            let mut s = Self::load(home)?;
            s.receipts_after = s.receipts_after.max(after);
            s.last_sync_at = Some(now);
            write_json(&Self::path(home), &s)
        })
    }
}

/// A connection made on demand and re-made after it breaks.
struct Session<'c, 'a> {
    ctx: &'c SyncContext<'a>,
    conn: Option<RelayConnection>,
    /// When this session last ran retention (`None`: not yet).
    last_purge: Option<std::time::Instant>,
}

impl<'c, 'a> Session<'c, 'a> {
    fn new(ctx: &'c SyncContext<'a>) -> Self {
        Self {
            ctx,
            conn: None,
            last_purge: None,
        }
    }

    async fn get(&mut self) -> Result<&mut RelayConnection, RelayError> {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.closed_reason().is_some())
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(connect_with_backoff(self.ctx).await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    fn reset(&mut self) {
        self.conn = None;
    }

    async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
    }
}

/// Shortest time between two retention passes of one `sync --watch`.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.min(6))
}

/// Runs `$op` (an expression using the connection `$c`) with a fresh connection after each
/// connection failure, up to [`TRIES`] times.
macro_rules! with_retry {
    ($session:expr, |$c:ident| $op:expr) => {{
        let mut attempt = 0u32;
        loop {
            let result = match $session.get().await {
                Ok($c) => $op.await,
                // Connecting has its own retries: do not multiply them.
                Err(e) => break Err(e),
            };
            match result {
                Err(e) if e.is_connection_problem() && attempt + 1 < TRIES => {
                    $session.reset();
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}

mod receipts;
mod receive;
pub mod revocations;

async fn connect_with_backoff(ctx: &SyncContext<'_>) -> Result<RelayConnection, RelayError> {
    let mut attempt = 0;
    loop {
        let started = std::time::Instant::now();
        match RelayConnection::connect(&ctx.relay, ctx.me.id(), ctx.keyring.current()).await {
            Ok(c) => {
                ctx.events.event(SyncEvent::Connected {
                    address: ctx.relay.address.clone(),
                });
                return Ok(c);
            }
            // A quick failure (refused, reset) may pass; after a full time-out the relay
            // is simply not there, and waiting again would only make the user wait.
            Err(e)
                if e.is_connection_problem()
                    && attempt + 1 < TRIES
                    && started.elapsed().as_secs() < ctx.relay.connect_timeout_secs =>
            {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn relay_time(secs: i64, fallback: Timestamp) -> Timestamp {
    Timestamp::from_unix(secs).unwrap_or(fallback)
}

/// What `send` achieved.
#[derive(Debug)]
pub enum SendOutcome {
    /// The relay holds the bundle durably.
    Accepted(Box<OutboxRecord>),
    /// Safely queued here, but the relay could not be reached: `sync` will upload it.
    Queued {
        /// The queued bundle.
        record: Box<OutboxRecord>,
        /// Why it was not uploaded.
        why: String,
    },
}

/// `dossier send`: seals into the outbox (durable, queued), then tries once to upload.
/// A relay that cannot be reached leaves the bundle queued (not an error); a relay that
/// refuses is an error that says what became of the bundle.
pub async fn send(
    ctx: &SyncContext<'_>,
    opts: &SealOptions,
    inputs: &[PathBuf],
) -> Result<SendOutcome, NodeError> {
    // Sending is audited and accounted for as part of the operation: before the bundle
    // becomes visible in the outbox, or not at all.
    let book = ContactBook::load(ctx.home)?;
    let mut commit = |m: &Manifest| {
        let now = Timestamp::now();
        let mut rec =
            DisclosureRecord::new(m, Channel::Relay, ctx.actor.operator().as_str(), &book, now);
        rec.redacted = opts.redacted;
        rec.overrides = opts.overrides.clone();
        disclosures::record(ctx.home, &rec)?;
        let mut event = AuditEvent::new(AuditAction::Send).bundle(&m.bundle_id);
        for r in m.recipients.iter().filter(|r| r.id != m.sender.id) {
            event = event.counterpart(&r.id, book.get(&r.id).map(|c| c.card.country()));
        }
        if let Err(e) = ctx.actor.record(event) {
            disclosures::forget(ctx.home, m.bundle_id.as_str());
            return Err(e);
        }
        Ok(())
    };
    let record = tokio::task::block_in_place(|| {
        outbox::queue(
            ctx.home,
            ctx.keyring,
            opts,
            inputs,
            Timestamp::now(),
            &mut commit,
        )
    })?;
    let id = record.bundle_id.clone();
    // A `sync --watch` running beside us would otherwise start the same upload at once.
    let mut lock = crate::statefile::file_lock(&outbox::bundle_path(ctx.home, &id))?;
    let _uploading = tokio::task::block_in_place(|| lock.write())
        .map_err(NodeError::io("taking the upload lock"))?;
    if let Some(r) = outbox::load(ctx.home, &id)?.filter(|r| !r.needs_upload()) {
        return Ok(SendOutcome::Accepted(Box::new(r)));
    }
    let result = async {
        let conn = RelayConnection::connect(&ctx.relay, ctx.me.id(), ctx.keyring.current()).await?;
        ctx.events.event(SyncEvent::Connected {
            address: ctx.relay.address.clone(),
        });
        let accepted = conn
            .deposit(
                &id,
                &record.to,
                &outbox::bundle_path(ctx.home, &id),
                record.length,
                &record.ciphertext_sha256,
                ctx.progress,
            )
            .await;
        conn.close().await;
        accepted
    }
    .await;
    let now = Timestamp::now();
    match result {
        Ok(a) => {
            let at = relay_time(a.accepted_at, now);
            let rec = outbox::update(ctx.home, &id, |r| {
                r.mark_accepted(at, now);
                r.clone()
            })?
            .unwrap_or(record);
            Ok(SendOutcome::Accepted(Box::new(rec)))
        }
        Err(e) if e.is_connection_problem() => {
            let why = e.to_string();
            let rec = outbox::update(ctx.home, &id, |r| {
                r.record_attempt_failure(&why, now);
                r.clone()
            })?
            .unwrap_or(record);
            Ok(SendOutcome::Queued {
                record: Box::new(rec),
                why,
            })
        }
        Err(e) if e.refuses_bundle_for_good() => {
            let why = format!("the relay refused it: {e}");
            outbox::update(ctx.home, &id, |r| r.mark_refused(&why, now))?;
            Err(NodeError::SendRefused {
                bundle_id: id,
                source: e,
                next: "It is marked refused in the outbox and will not be retried; fix the cause (e.g. split a bundle that is too large) and send again",
            })
        }
        Err(e) => {
            outbox::update(ctx.home, &id, |r| {
                r.record_attempt_failure(&e.to_string(), now)
            })?;
            Err(NodeError::SendRefused {
                bundle_id: id,
                source: e,
                next: "It stays queued in the outbox; once the cause is fixed, `dossier sync` uploads it",
            })
        }
    }
}

/// One `dossier sync`: upload, receive, post pending receipts, collect receipts.
pub async fn sync_once(ctx: &SyncContext<'_>) -> Result<(), NodeError> {
    let mut session = Session::new(ctx);
    let result = round(ctx, &mut session).await;
    session.close().await;
    result
}

/// `dossier sync --watch`: rounds after every new-mail or expiry notice, every `interval`,
/// and soon after a bundle is queued by another `dossier` process; reconnects with backoff
/// when the relay goes away; returns when `shutdown` completes.
pub async fn watch(
    ctx: &SyncContext<'_>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    tokio::pin!(shutdown);
    let mut session = Session::new(ctx);
    let mut failures = 0u32;
    let result = loop {
        let outcome = tokio::select! {
            r = round(ctx, &mut session) => r,
            _ = &mut shutdown => break Ok(()),
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(NodeError::Relay(e)) if e.is_connection_problem() => {
                session.reset();
                let wait = backoff(failures).min(Duration::from_secs(60));
                failures += 1;
                ctx.events.event(SyncEvent::Reconnecting {
                    in_secs: wait.as_secs().max(1),
                    error: e.to_string(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    _ = &mut shutdown => break Ok(()),
                }
            }
            Err(e) => break Err(e),
        }
        let outbox_stamp = outbox_mtime(ctx.home);
        let deadline = tokio::time::Instant::now() + interval;
        loop {
            let notice = async {
                match session.conn.as_mut() {
                    Some(c) => c.next_notice().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                n = notice => {
                    match n {
                        Some(n) if n.kind == NoticeKind::NewMail || n.kind == NoticeKind::Expired => break,
                        Some(_) => {}
                        // The connection is gone; the next round reconnects.
                        None => { session.reset(); break }
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if tokio::time::Instant::now() >= deadline || outbox_mtime(ctx.home) != outbox_stamp {
                        break;
                    }
                }
                _ = &mut shutdown => {
                    session.close().await;
                    return Ok(());
                }
            }
        }
    };
    session.close().await;
    result
}

fn outbox_mtime(home: &NodeHome) -> Option<std::time::SystemTime> {
    std::fs::metadata(outbox::dir(home))
        .and_then(|m| m.modified())
        .ok()
}

async fn round(ctx: &SyncContext<'_>, session: &mut Session<'_, '_>) -> Result<(), NodeError> {
    revocations::exchange(ctx, session).await?;
    upload_pending(ctx, session).await?;
    receive::receive_mail(ctx, session).await?;
    receive::post_pending_receipts(ctx, session).await?;
    receipts::collect_receipts(ctx, session).await?;
    // Retention runs with every sync, so copies do not outlive the policy's periods on a
    // node nobody purges by hand — once per `sync`, and at most hourly under `--watch`,
    // whose rounds follow every new-mail notice (periods are counted in days).
    if session
        .last_purge
        .is_some_and(|at| at.elapsed() < PURGE_INTERVAL)
    {
        return Ok(());
    }
    session.last_purge = Some(std::time::Instant::now());
    let policy = crate::policy::Policy::load(ctx.home)?;
    let purged = tokio::task::block_in_place(|| {
        crate::retention::purge(ctx.home, ctx.actor, &policy, Timestamp::now(), false)
    })?;
    for p in purged {
        ctx.events.event(SyncEvent::Purged {
            what: p.what,
            bundle_id: p.bundle_id,
        });
    }
    Ok(())
}

async fn upload_pending(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    let pending: Vec<OutboxRecord> = outbox::list(ctx.home)?
        .into_iter()
        .filter(OutboxRecord::needs_upload)
        .collect();
    for rec in pending {
        let id = rec.bundle_id.clone();
        let path = outbox::bundle_path(ctx.home, &id);
        if !path.is_file() {
            let why = "its ciphertext is missing from the outbox (deleted?); send the files again";
            outbox::update(ctx.home, &id, |r| r.mark_refused(why, Timestamp::now()))?;
            ctx.events.event(SyncEvent::UploadRefused {
                bundle_id: id,
                error: why.into(),
            });
            continue;
        }
        let mut lock = crate::statefile::file_lock(&path)?;
        let Ok(_uploading) = lock.try_write() else {
            ctx.events.event(SyncEvent::UploadDeferred {
                bundle_id: id,
                error: "another dossier process is uploading it right now".into(),
            });
            continue;
        };
        // Re-read: the other process may have finished it before we took the lock.
        if !outbox::load(ctx.home, &id)?.is_some_and(|r| r.needs_upload()) {
            continue;
        }
        let result = with_retry!(session, |c| c.deposit(
            &id,
            &rec.to,
            &path,
            rec.length,
            &rec.ciphertext_sha256,
            ctx.progress
        ));
        let now = Timestamp::now();
        match result {
            Ok(a) => {
                let at = relay_time(a.accepted_at, now);
                outbox::update(ctx.home, &id, |r| r.mark_accepted(at, now))?;
                ctx.events.event(SyncEvent::Uploaded {
                    bundle_id: id,
                    accepted_at: at,
                    sent: a.sent,
                });
            }
            Err(e) if e.refuses_node() => return Err(e.into()),
            Err(e) if e.refuses_bundle_for_good() => {
                let why = format!("the relay refused it: {e}");
                outbox::update(ctx.home, &id, |r| r.mark_refused(&why, now))?;
                ctx.events.event(SyncEvent::UploadRefused {
                    bundle_id: id,
                    error: why,
                });
            }
            Err(e) => {
                let why = e.to_string();
                outbox::update(ctx.home, &id, |r| r.record_attempt_failure(&why, now))?;
                if e.is_connection_problem() {
                    return Err(e.into());
                }
                ctx.events.event(SyncEvent::UploadDeferred {
                    bundle_id: id,
                    error: why,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
