//! Retention: a background task that expires undelivered ciphertext and tells its senders
//! (DESIGN.md invariant 6; docs/protocol.md §15.4).
//!
//! At start and then every `expiry_check_secs`, it runs the store's bounded retention pass
//! until the store reports no more work: bundles past the retention time lose their body
//! and mailbox entries and their senders get an `expired` entry in the receipt log; stale
//! uploads are discarded; old receipts purged. Each sender that is connected also gets an
//! `expired` notice, once per bundle. Only counts and ids are logged.

use std::sync::Arc;
use std::time::Duration;

use dossier_wire::message::NoticeKind;

use super::notices::notify;
use super::shutdown::Shutdown;
use super::{Context, blocking};
use crate::clock::now_unix;

/// Runs retention passes until shutdown.
pub(crate) async fn run(ctx: Arc<Context>, mut shutdown: Shutdown, every: Duration) {
    loop {
        pass(&ctx).await;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.recv() => return,
        }
    }
}

/// One retention pass: store batches until none is left, notices to connected senders.
async fn pass(ctx: &Arc<Context>) {
    loop {
        let store = Arc::clone(&ctx.store);
        let report = match blocking(move || store.expire(now_unix())).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "retention pass failed; will retry");
                return;
            }
        };
        for bundle in &report.expired {
            tracing::info!(
                bundle_id = %bundle.bundle_id,
                sender = %bundle.sender,
                undelivered_to = bundle.recipients.len(),
                "bundle expired undelivered"
            );
            notify(ctx, &bundle.sender, NoticeKind::Expired, &bundle.bundle_id);
        }
        if report.abandoned_uploads + report.receipts_purged + report.records_purged > 0 {
            tracing::info!(
                abandoned_uploads = report.abandoned_uploads,
                receipts_purged = report.receipts_purged,
                records_purged = report.records_purged,
                "retention"
            );
        }
        if !report.more {
            return;
        }
    }
}
