//! Hard limits on what this crate will read, and the counter that enforces them.
//!
//! The node runs these checks on records it did not write (an export from a hospital
//! system, a file a user picked), so every parser here is bounded in input size, nesting
//! depth, node count and matching work before it allocates in proportion to the input.
//! The numbers are far above any real patient record (the largest IPS bundles are a few
//! MiB) and far below what would exhaust a node's memory or stack.

use crate::FhirError;

/// Largest input accepted by every function of this crate, in bytes (64 MiB).
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// Deepest nesting of JSON arrays and objects accepted.
pub const MAX_JSON_DEPTH: usize = 128;

/// Deepest nesting of XML elements accepted (FHIR XML nests deeper than its JSON, and
/// narrative XHTML adds its own levels).
pub const MAX_XML_DEPTH: usize = 192;

/// Most JSON values, or XML elements and text nodes, accepted in one record.
pub const MAX_NODES: usize = 4_000_000;

/// Most attributes accepted on one XML element.
pub const MAX_ATTRIBUTES: usize = 256;

/// Most identifying values (identifier, telecom, address and contact-name values) that one
/// redaction will remove and then search the rest of the record for.
pub const MAX_IDENTIFYING_VALUES: usize = 100_000;

/// Most character comparisons spent looking for identifying values in the kept parts of a
/// record. Real records need a few per character; only a record built to be pathological
/// gets near this.
pub const MAX_MATCH_STEPS: u64 = 1 << 31;

/// Refuses input over [`MAX_INPUT_BYTES`].
pub(crate) fn check_size(bytes: &[u8]) -> Result<(), FhirError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(FhirError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// Counts nodes as a parser creates them and refuses the record past [`MAX_NODES`].
#[derive(Debug, Default)]
pub(crate) struct NodeBudget {
    used: usize,
}

impl NodeBudget {
    /// Accounts for one more node.
    pub(crate) fn take(&mut self, what: &'static str) -> Result<(), FhirError> {
        self.used += 1;
        if self.used > MAX_NODES {
            return Err(FhirError::TooMany {
                what,
                limit: MAX_NODES,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limit_is_inclusive() {
        assert!(check_size(&vec![b' '; MAX_INPUT_BYTES]).is_ok());
        let err = check_size(&vec![b' '; MAX_INPUT_BYTES + 1]).unwrap_err();
        assert!(matches!(err, FhirError::TooLarge { .. }));
    }

    #[test]
    fn node_budget_stops_past_the_limit() {
        let mut budget = NodeBudget {
            used: MAX_NODES - 1,
        };
        assert!(budget.take("nodes").is_ok());
        assert!(budget.take("nodes").is_err());
    }
}
