//! Where the identity passphrase comes from: `$DOSSIER_PASSPHRASE` (for scripts), else a
//! prompt on the terminal. It is held in a `SecretString` and never echoed or logged.

use dossier_node::NodeError;
use secrecy::{ExposeSecret, SecretString};

/// Environment variable scripts set instead of answering the prompt.
pub const PASSPHRASE_ENV: &str = "DOSSIER_PASSPHRASE";

/// The passphrase to unlock an existing keyring.
pub fn existing() -> Result<SecretString, NodeError> {
    from_env().map_or_else(|| prompt("Passphrase for this node's keys: "), Ok)
}

/// A new passphrase (asked twice when prompting).
pub fn new() -> Result<SecretString, NodeError> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    let first = prompt("New passphrase (at least 12 characters): ")?;
    let again = prompt("Repeat the passphrase: ")?;
    if first.expose_secret() != again.expose_secret() {
        return Err(NodeError::Passphrase(
            "the two passphrases differ; run the command again".into(),
        ));
    }
    Ok(first)
}

fn from_env() -> Option<SecretString> {
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}

fn prompt(text: &str) -> Result<SecretString, NodeError> {
    rpassword::prompt_password(text).map(SecretString::from).map_err(|_| {
        NodeError::Passphrase(format!(
            "no passphrase: run in a terminal to be asked for it, or set ${PASSPHRASE_ENV} for scripts"
        ))
    })
}
