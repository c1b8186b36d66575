//! The node's own identity: creating it, unlocking its keyring, rotating and exporting keys.
//!
//! The keyring never exists in plaintext on disk: it is written through age's scrypt
//! passphrase encryption straight into a 0600 temporary file that is renamed into place.

use std::fs;
use std::path::Path;

use dossier_bundle::card::CardDetails;
use dossier_bundle::{FacilityCard, FacilityKeys, KeyId, Keyring, Timestamp};
use secrecy::{ExposeSecret, SecretString};

use crate::error::NodeError;
use crate::fsutil::{create_private_dir, write_atomic};
use crate::home::NodeHome;

/// Shortest passphrase accepted for a new keyring.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Checks a new passphrase is long enough.
pub fn check_new_passphrase(p: &SecretString) -> Result<(), NodeError> {
    let n = p.expose_secret().chars().count();
    if n < MIN_PASSPHRASE_CHARS {
        return Err(NodeError::Passphrase(format!(
            "the passphrase has {n} characters; use at least {MIN_PASSPHRASE_CHARS} (a few unrelated words work well)"
        )));
    }
    Ok(())
}

/// Creates a new identity in `home`: keys, encrypted keyring, self-signed card.
pub fn init(
    home: &NodeHome,
    details: &CardDetails,
    passphrase: &SecretString,
    now: Timestamp,
) -> Result<FacilityCard, NodeError> {
    if home.is_initialised() {
        return Err(NodeError::AlreadyInitialised(home.root().to_path_buf()));
    }
    check_new_passphrase(passphrase)?;
    create_private_dir(home.root())
        .map_err(NodeError::io(format!("creating {}", home.root().display())))?;
    let keys = FacilityKeys::generate()?;
    let card = FacilityCard::issue(&keys, details, now, None, None)?;
    let ring = Keyring::new(keys);
    save_keyring(home, &ring, passphrase)?;
    write_atomic(&home.card_path(), &card.to_file_bytes())
        .map_err(NodeError::io("writing card.json"))?;
    Ok(card)
}

/// Writes the keyring, encrypted to `passphrase`, atomically.
pub fn save_keyring(
    home: &NodeHome,
    ring: &Keyring,
    passphrase: &SecretString,
) -> Result<(), NodeError> {
    // Encrypt in memory (the keyring is a few hundred bytes of ciphertext), then write.
    let mut ciphertext = Vec::new();
    ring.write_encrypted(passphrase, &mut ciphertext)?;
    write_atomic(&home.keyring_path(), &ciphertext).map_err(NodeError::io("writing keyring.age"))
}

/// Decrypts the keyring with `passphrase`.
pub fn unlock(home: &NodeHome, passphrase: &SecretString) -> Result<Keyring, NodeError> {
    require_init(home)?;
    let f = fs::File::open(home.keyring_path()).map_err(NodeError::io("reading keyring.age"))?;
    Ok(Keyring::read_encrypted(
        std::io::BufReader::new(f),
        passphrase,
    )?)
}

/// This node's current card.
pub fn my_card(home: &NodeHome) -> Result<FacilityCard, NodeError> {
    require_init(home)?;
    read_card_file(&home.card_path())
}

/// This node's earlier cards (from before each `key rotate`).
pub fn my_retired_cards(home: &NodeHome) -> Result<Vec<FacilityCard>, NodeError> {
    let dir = home.retired_cards_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io("reading cards/")(e)),
    };
    let mut cards = Vec::new();
    for entry in entries {
        let path = entry.map_err(NodeError::io("reading cards/"))?.path();
        if path.extension().is_some_and(|e| e == "json") {
            cards.push(read_card_file(&path)?);
        }
    }
    Ok(cards)
}

/// Reads and checks a card file from disk.
pub fn read_card_file(path: &Path) -> Result<FacilityCard, NodeError> {
    let bytes = read_bounded(path, dossier_bundle::limits::MAX_CARD_BYTES)?;
    Ok(FacilityCard::parse(&bytes)?)
}

/// Reads a file of at most `max` bytes (a larger one is refused without reading it all).
pub fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>, NodeError> {
    use std::io::Read;
    let f = fs::File::open(path).map_err(|e| NodeError::Input {
        arg: path.to_path_buf(),
        problem: format!("cannot be read: {e}"),
    })?;
    let mut buf = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(NodeError::io(format!("reading {}", path.display())))?;
    if buf.len() > max {
        return Err(NodeError::Card(dossier_bundle::CardError::TooLarge));
    }
    Ok(buf)
}

/// `dossier key rotate`: new keys; the new card is signed by the old key; the old keys stay
/// in the keyring (to open bundles sealed to them) and the old card in `cards/`.
pub fn rotate(
    home: &NodeHome,
    passphrase: &SecretString,
    now: Timestamp,
) -> Result<(FacilityCard, KeyId), NodeError> {
    let mut ring = unlock(home, passphrase)?;
    let old_card = my_card(home)?;
    // Contacts must hear of a revocation before they see the card that replaces the key.
    crate::revocation::require_none_pending(home)?;
    let new_keys = FacilityKeys::generate()?;
    let new_card = FacilityCard::issue(
        &new_keys,
        &old_card.details(),
        now,
        None,
        Some(ring.current()),
    )?;
    let old_id = old_card.key_id();
    create_private_dir(&home.retired_cards_dir()).map_err(NodeError::io("creating cards/"))?;
    write_atomic(
        &home
            .retired_cards_dir()
            .join(format!("{}.json", old_id.to_hex())),
        &old_card.to_file_bytes(),
    )
    .map_err(NodeError::io("saving the retired card"))?;
    ring.rotate(new_keys, now);
    // Keyring first: if we crash before card.json is replaced, the old card still names
    // keys the keyring holds (as retired), and `key rotate` can simply be run again.
    save_keyring(home, &ring, passphrase)?;
    write_atomic(&home.card_path(), &new_card.to_file_bytes())
        .map_err(NodeError::io("writing card.json"))?;
    Ok((new_card, old_id))
}

/// `dossier key export-age`: the current X25519 identity as a standard age identity file.
pub fn export_age(
    home: &NodeHome,
    passphrase: &SecretString,
    out: &Path,
    confirmed: bool,
    now: Timestamp,
) -> Result<(), NodeError> {
    if !confirmed {
        return Err(NodeError::NeedsConfirmation(
            "this writes your private decryption key in plain text; anyone holding the file can read every \
             bundle sent to you. Re-run with --yes if you mean it, and keep the file offline",
        ));
    }
    if out.exists() {
        return Err(NodeError::OutputExists(out.to_path_buf()));
    }
    let ring = unlock(home, passphrase)?;
    let card = my_card(home)?;
    let mut text = zeroize::Zeroizing::new(format!(
        "# dossier identity of {} exported {now}\n# public key: {}\n",
        card.id(),
        ring.current().age_recipient()
    ));
    for (i, keys) in ring.all().enumerate() {
        if i > 0 {
            text.push_str("# retired key (for bundles sealed before a rotation)\n");
        }
        text.push_str(keys.export_age_identity().expose_secret());
        text.push('\n');
    }
    write_atomic(out, text.as_bytes()).map_err(NodeError::io(format!("writing {}", out.display())))
}

fn require_init(home: &NodeHome) -> Result<(), NodeError> {
    if home.is_initialised() {
        Ok(())
    } else {
        Err(NodeError::NotInitialised(home.root().to_path_buf()))
    }
}
