//! `consent grant|revoke|list`: the patients' consents to records going to a country.
//!
//! The register names patients, so it stays on this node (HOME/consent.json, 0600); the
//! audit trail records each grant and revocation with the country only, never the patient
//! reference.

use dossier_bundle::{CountryCode, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent};
use dossier_node::policy::{ConsentGrant, ConsentRegister, Policy, parse_consent_date};
use dossier_node::{NodeError, NodeHome};
use serde_json::{Value, json};

use crate::cli::ConsentCommand;
use crate::output::Out;

pub fn run(home: &NodeHome, actor: &Actor, cmd: ConsentCommand) -> Result<(), NodeError> {
    let now = Timestamp::now();
    match cmd {
        ConsentCommand::Grant {
            patient,
            country,
            until,
            json,
        } => {
            let out = Out::new(json);
            let country = CountryCode::parse(&country)?;
            let until = until.as_deref().map(parse_consent_date).transpose()?;
            let grant =
                ConsentRegister::grant(home, &patient, country, until, actor.operator(), now)?;
            let detail = match until {
                Some(_) => format!("{country}, until {}", until_text(&grant)),
                None => format!("{country}, no end date"),
            };
            if let Err(e) = actor.record(AuditEvent::new(AuditAction::ConsentGrant).detail(detail))
            {
                // A consent the trail cannot show is withdrawn again (the safe side).
                let _ = ConsentRegister::revoke(home, &patient, country, actor.operator(), now);
                return Err(e);
            }
            out.say(format!(
                "Consent recorded: records of patient {patient} may go to {country} {}.",
                match until {
                    Some(_) => format!("until {} (inclusive, UTC)", until_text(&grant)),
                    None => "with no end date (until revoked)".to_owned(),
                }
            ));
            if !Policy::load(home)?.consent.required {
                out.say(
                    "Note: this node's policy does not require consent ([consent] required = \
                     false in policy.toml), so the register is kept but not enforced.",
                );
            }
            out.json(&grant_json(&grant, now));
        }
        ConsentCommand::Revoke {
            patient,
            country,
            json,
        } => {
            let out = Out::new(json);
            let country = CountryCode::parse(&country)?;
            let grant = ConsentRegister::revoke(home, &patient, country, actor.operator(), now)?;
            // The revocation stands even if it cannot be audited (the safe side); the
            // error still fails the command.
            actor.record(AuditEvent::new(AuditAction::ConsentRevoke).detail(country.as_str()))?;
            out.say(format!(
                "Consent of patient {patient} for {country} revoked; records for that patient \
                 no longer go to {country} while consent is required."
            ));
            out.json(&grant_json(&grant, now));
        }
        ConsentCommand::List {
            patient,
            country,
            json,
        } => {
            let out = Out::new(json);
            let country = country.as_deref().map(CountryCode::parse).transpose()?;
            let reg = ConsentRegister::load(home)?;
            let grants: Vec<&ConsentGrant> = reg
                .list(patient.as_deref())
                .into_iter()
                .filter(|g| country.is_none_or(|c| g.country == c))
                .collect();
            if grants.is_empty() {
                out.say("No consents recorded.");
            }
            for g in &grants {
                let state = if g.is_current(now) {
                    "current".to_owned()
                } else if let Some(end) = &g.ended {
                    format!(
                        "{} at {} by {}",
                        end_how(&grant_json(g, now)),
                        end.at,
                        end.by
                    )
                } else {
                    "expired".to_owned()
                };
                out.say(format!(
                    "  {}  {}  granted {} by {}, until {}  [{state}]",
                    g.patient,
                    g.country,
                    g.granted_at,
                    g.granted_by,
                    match g.until {
                        Some(_) => until_text(g),
                        None => "no end date".to_owned(),
                    }
                ));
            }
            out.json(&Value::Array(
                grants.iter().map(|g| grant_json(g, now)).collect(),
            ));
        }
    }
    Ok(())
}

/// A grant as JSON: every field (`until` and `ended` null when absent) and `current`.
fn grant_json(g: &ConsentGrant, now: Timestamp) -> Value {
    let mut v = serde_json::to_value(g).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.entry("until").or_insert(Value::Null);
        obj.entry("ended").or_insert(Value::Null);
        obj.insert("current".into(), Value::Bool(g.is_current(now)));
    }
    v
}

fn until_text(g: &ConsentGrant) -> String {
    let v = serde_json::to_value(g).unwrap_or_default();
    v["until"].as_str().unwrap_or("?").to_owned()
}

fn end_how(v: &Value) -> String {
    v["ended"]["how"].as_str().unwrap_or("ended").to_owned()
}
