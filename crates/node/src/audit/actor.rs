//! [`Actor`]: the operator running this command and the trail their actions go into.
//!
//! Every operation that touches records or keys takes an `&Actor` and calls
//! [`Actor::record`] as part of its work, so an operation whose entry cannot be written
//! fails with it (see the module docs of [`crate::audit`]).

use dossier_bundle::Timestamp;

use super::{AuditEntry, AuditEvent, AuditLog, Operator};
use crate::error::NodeError;
use crate::home::NodeHome;

/// Who is acting on this node, and where their actions are recorded.
#[derive(Debug)]
pub struct Actor {
    operator: Operator,
    log: AuditLog,
}

impl Actor {
    /// `operator` acting on `home`.
    pub fn new(home: &NodeHome, operator: Operator) -> Self {
        Self {
            operator,
            log: AuditLog::open(home),
        }
    }

    /// The operator's name.
    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// The trail.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Appends `event` now, as this operator. An error means the operation must fail.
    pub fn record(&self, event: AuditEvent) -> Result<AuditEntry, NodeError> {
        self.log.append(&self.operator, &event, Timestamp::now())
    }
}
