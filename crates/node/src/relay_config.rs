//! Which relay this node uses, and the pin its TLS key must match (docs/protocol.md §15.1).
//!
//! `HOME/relay.json` is written by `dossier relay set ADDR --pin PIN`. The pin is checked for
//! form when it is typed, so a typo is caught at once rather than at the first connection.
//! The file also holds the node's delivery-monitoring window: a sent bundle with no delivery
//! receipt after `overdue_after_secs` (default one hour) is flagged overdue.

use std::path::PathBuf;

use crate::error::NodeError;
use crate::fsutil::write_atomic;
use crate::home::NodeHome;

const RELAY_CONFIG_FORMAT: &str = "dossier-relay-config/v1";
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Default window after which a sent bundle without a delivery receipt is overdue.
pub const DEFAULT_OVERDUE_AFTER_SECS: u64 = 3600;
/// Default time allowed to reach the relay and finish the handshake.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;

/// The relay this node talks to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    format: String,
    /// `host:port` of the relay (UDP).
    pub address: String,
    /// `sha256:` + 64 hex digits: the SHA-256 of the relay certificate's public key.
    pub pin: String,
    /// Seconds after queueing when a bundle without a delivery receipt is flagged overdue.
    #[serde(default = "default_overdue")]
    pub overdue_after_secs: u64,
    /// Seconds allowed to reach the relay before a send is left queued.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

fn default_overdue() -> u64 {
    DEFAULT_OVERDUE_AFTER_SECS
}

fn default_connect_timeout() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_SECS
}

impl RelayConfig {
    /// A configuration for `address` pinned to `pin` (both checked for form).
    pub fn new(address: &str, pin: &str) -> Result<Self, NodeError> {
        let address = check_address(address)?;
        let pin = dossier_wire::pin::parse_pin(pin).map_err(|e| NodeError::BadRelaySetting {
            what: "pin",
            problem: e.to_string(),
        })?;
        Ok(Self {
            format: RELAY_CONFIG_FORMAT.to_owned(),
            address,
            pin,
            overdue_after_secs: DEFAULT_OVERDUE_AFTER_SECS,
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT_SECS,
        })
    }

    /// Where the configuration lives.
    pub fn path(home: &NodeHome) -> PathBuf {
        home.root().join("relay.json")
    }

    /// The configuration, or `None` if `relay set` never ran.
    pub fn load(home: &NodeHome) -> Result<Option<Self>, NodeError> {
        let path = Self::path(home);
        if !path.exists() {
            return Ok(None);
        }
        let corrupt = |why| NodeError::CorruptState(path.clone(), why);
        let bytes = crate::identity::read_bounded(&path, MAX_CONFIG_BYTES)
            .map_err(|_| corrupt("unreadable or too large"))?;
        let cfg: Self = serde_json::from_slice(&bytes).map_err(|_| corrupt("not valid JSON"))?;
        if cfg.format != RELAY_CONFIG_FORMAT {
            return Err(corrupt("unknown format version"));
        }
        dossier_wire::pin::parse_pin(&cfg.pin).map_err(|_| corrupt("the pin is malformed"))?;
        Ok(Some(cfg))
    }

    /// The configuration, or an error telling the user to run `dossier relay set`.
    pub fn require(home: &NodeHome) -> Result<Self, NodeError> {
        Self::load(home)?.ok_or(NodeError::NoRelay)
    }

    /// Writes `relay.json` atomically (mode 0600).
    pub fn save(&self, home: &NodeHome) -> Result<(), NodeError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| NodeError::io("encoding relay.json")(e.into()))?;
        write_atomic(&Self::path(home), &bytes).map_err(NodeError::io("writing relay.json"))
    }
}

/// `dossier relay set`: pins `address` to `pin`, keeping any tuned windows already set.
pub fn set(
    home: &NodeHome,
    address: &str,
    pin: &str,
    overdue_after_secs: Option<u64>,
) -> Result<RelayConfig, NodeError> {
    crate::identity::my_card(home)?;
    let mut cfg = RelayConfig::new(address, pin)?;
    if let Some(old) = RelayConfig::load(home)? {
        cfg.overdue_after_secs = old.overdue_after_secs;
        cfg.connect_timeout_secs = old.connect_timeout_secs;
    }
    if let Some(secs) = overdue_after_secs {
        cfg.overdue_after_secs = secs;
    }
    cfg.save(home)?;
    Ok(cfg)
}

/// Checks `host:port`: a port number after the last colon and a non-empty host.
fn check_address(address: &str) -> Result<String, NodeError> {
    let a = address.trim();
    let bad = || NodeError::BadRelaySetting {
        what: "address",
        problem: format!(
            "{a:?} is not HOST:PORT (for example relay.example.org:4433 or 127.0.0.1:4433)"
        ),
    };
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
        || port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad());
    }
    Ok(a.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn addresses_and_pins_are_checked() {
        assert!(RelayConfig::new("127.0.0.1:4433", PIN).is_ok());
        assert!(RelayConfig::new("[::1]:4433", PIN).is_ok());
        assert!(RelayConfig::new("relay.example.org:1", PIN).is_ok());
        for bad in [
            "",
            "host",
            "host:",
            ":4433",
            "host:0",
            "host:99999",
            "a b:1",
        ] {
            assert!(RelayConfig::new(bad, PIN).is_err(), "{bad}");
        }
        assert!(RelayConfig::new("h:1", "sha256:abc").is_err());
        assert!(RelayConfig::new("h:1", &PIN.to_uppercase()).is_err());
    }

    #[test]
    fn save_load_round_trip_keeps_windows() {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        assert_eq!(RelayConfig::load(&home).unwrap(), None);
        let mut cfg = RelayConfig::new("127.0.0.1:9", PIN).unwrap();
        cfg.overdue_after_secs = 60;
        cfg.save(&home).unwrap();
        let back = RelayConfig::load(&home).unwrap().unwrap();
        assert_eq!(back, cfg);
        // An older file without the optional fields still loads, with defaults.
        std::fs::write(
            RelayConfig::path(&home),
            format!(r#"{{"format":"{RELAY_CONFIG_FORMAT}","address":"h:1","pin":"{PIN}"}}"#),
        )
        .unwrap();
        let back = RelayConfig::load(&home).unwrap().unwrap();
        assert_eq!(back.overdue_after_secs, DEFAULT_OVERDUE_AFTER_SECS);
    }
}
