//! `relay.json`: the relay's listen address and the limits an operator may tune.
//!
//! The file is closed JSON (unknown members are refused, so a typo such as
//! `"retention_day"` is reported instead of silently ignored); members left out take their
//! defaults. Retention is given in days because that is how operators think about it; it is
//! a number, so a fraction (e.g. `0.0001`, about 9 seconds) works for tests and
//! demonstrations.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RelayError;
use crate::store::{DAY_SECS, Limits};

/// The `format` member of every configuration this version writes and reads.
pub const CONFIG_FORMAT: &str = "dossier-relay-config/v1";
/// Default cap on simultaneous node connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 128;
/// Default seconds between two retention passes.
pub const DEFAULT_EXPIRY_CHECK_SECS: u64 = 60;
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Always [`CONFIG_FORMAT`].
    pub format: String,
    /// UDP address to bind (`0.0.0.0:4433`; port 0 picks a free port at each start).
    pub listen: SocketAddr,
    /// Size, quota, retention and connection limits.
    #[serde(default)]
    pub limits: ConfigLimits,
    /// Seconds between retention passes (expiring undelivered bundles).
    #[serde(default = "default_expiry_check_secs")]
    pub expiry_check_secs: u64,
}

/// The limits section of `relay.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigLimits {
    /// Largest bundle (ciphertext bytes) accepted.
    pub max_bundle_bytes: u64,
    /// Bytes one sending facility may have held at the relay at once.
    pub quota_bytes_per_facility: u64,
    /// Days undelivered ciphertext is kept before it expires (default 14).
    pub retention_days: f64,
    /// Days receipts and expiry notices are kept (default 365).
    pub receipt_retention_days: f64,
    /// Most simultaneous node connections; more are refused at the handshake.
    pub max_connections: u32,
}

fn default_expiry_check_secs() -> u64 {
    DEFAULT_EXPIRY_CHECK_SECS
}

impl Default for ConfigLimits {
    fn default() -> Self {
        let store = Limits::default();
        Self {
            max_bundle_bytes: store.max_bundle_bytes,
            quota_bytes_per_facility: store.quota_bytes_per_facility,
            retention_days: (store.retention_secs / DAY_SECS) as f64,
            receipt_retention_days: (store.receipt_retention_secs / DAY_SECS) as f64,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl RelayConfig {
    /// A configuration with default limits.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            format: CONFIG_FORMAT.to_owned(),
            listen,
            limits: ConfigLimits::default(),
            expiry_check_secs: DEFAULT_EXPIRY_CHECK_SECS,
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, RelayError> {
        let bad = |problem: String| RelayError::Config {
            path: path.to_path_buf(),
            problem,
        };
        let meta = std::fs::metadata(path).map_err(RelayError::io("reading", path))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(bad(format!("larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let bytes = std::fs::read(path).map_err(RelayError::io("reading", path))?;
        let config: RelayConfig = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        config.check().map_err(bad)?;
        Ok(config)
    }

    /// The file's bytes (pretty JSON and a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Checks every setting; the error says which and what is allowed.
    pub fn check(&self) -> Result<(), String> {
        if self.format != CONFIG_FORMAT {
            return Err(format!(
                "format is {:?}, expected {CONFIG_FORMAT:?} (a newer dossier-relay wrote it?)",
                self.format
            ));
        }
        let l = &self.limits;
        if l.max_bundle_bytes == 0 || l.quota_bytes_per_facility == 0 {
            return Err("max_bundle_bytes and quota_bytes_per_facility must be positive".into());
        }
        for (name, days) in [
            ("retention_days", l.retention_days),
            ("receipt_retention_days", l.receipt_retention_days),
        ] {
            if days_to_secs(days).is_none() {
                return Err(format!(
                    "{name} must be a number of days of at least one second and at most 100 years"
                ));
            }
        }
        if l.max_connections == 0 || l.max_connections > 65_536 {
            return Err("max_connections must be between 1 and 65536".into());
        }
        if self.expiry_check_secs == 0 || self.expiry_check_secs > 86_400 {
            return Err("expiry_check_secs must be between 1 and 86400".into());
        }
        Ok(())
    }

    /// The limits the store enforces. Call after [`check`](Self::check).
    pub fn store_limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_bundle_bytes: l.max_bundle_bytes,
            quota_bytes_per_facility: l.quota_bytes_per_facility,
            retention_secs: days_to_secs(l.retention_days).unwrap_or(14 * DAY_SECS),
            receipt_retention_secs: days_to_secs(l.receipt_retention_days)
                .unwrap_or(365 * DAY_SECS),
        }
    }
}

/// Days → whole seconds, if between 1 second and 100 years.
fn days_to_secs(days: f64) -> Option<i64> {
    let secs = (days * DAY_SECS as f64).round();
    (secs.is_finite() && (1.0..=(36_525 * DAY_SECS) as f64).contains(&secs)).then_some(secs as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_match_the_store() {
        let c = RelayConfig::new("127.0.0.1:4433".parse().unwrap());
        let back: RelayConfig = serde_json::from_slice(&c.to_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.store_limits(), Limits::default());
    }

    #[test]
    fn missing_members_default_and_unknown_ones_are_refused() {
        let c: RelayConfig = serde_json::from_str(
            r#"{"format":"dossier-relay-config/v1","listen":"0.0.0.0:1","limits":{"retention_days":0.0001}}"#,
        )
        .unwrap();
        assert_eq!(c.store_limits().retention_secs, 9);
        assert_eq!(c.limits.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert!(
            serde_json::from_str::<RelayConfig>(
                r#"{"format":"dossier-relay-config/v1","listen":"0.0.0.0:1","limits":{"retention_day":1}}"#,
            )
            .is_err()
        );
    }

    #[test]
    fn bad_settings_say_which() {
        let mut c = RelayConfig::new("127.0.0.1:1".parse().unwrap());
        c.limits.retention_days = 0.0;
        assert!(c.check().unwrap_err().contains("retention_days"));
        c.limits.retention_days = f64::NAN;
        assert!(c.check().is_err());
        c.limits.retention_days = 14.0;
        c.limits.max_connections = 0;
        assert!(c.check().unwrap_err().contains("max_connections"));
        c.limits.max_connections = 10;
        c.format = "dossier-relay-config/v9".into();
        assert!(c.check().unwrap_err().contains("format"));
    }
}
