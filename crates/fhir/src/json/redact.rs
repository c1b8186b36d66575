//! Redaction of FHIR JSON (see [`crate::policy`] for what is removed and why).
//!
//! Four passes over the tree: strip the person resources and collect the removed values
//! ([`super::strip`]); rename ids that carry an identifier and rewrite references to
//! them, putting the pseudonym where another resource identified the patient by a
//! removed identifier; scrub narratives; and finally check that no removed identifier
//! survives in any kept value, refusing the record if one does.

use super::strip::{kept_names, strip};
use super::value::Json;
use super::write::to_text;
use super::{label, parse_resource, pseudonym_identifier};
use crate::FhirError;
use crate::error::Location;
use crate::narrative::{Outcome, scrub_json_div};
use crate::policy::PersonKind;
use crate::redaction::{Redaction, Removals, survives_in};
use crate::renames::{Renames, ResourceName};

/// Redacts a FHIR JSON record (UTF-8 and size already checked).
pub(crate) fn redact(text: &str, pseudonym: &str) -> Result<Redaction, FhirError> {
    let mut root = parse_resource(text)?;
    let mut removals = Removals::default();
    kept_names(&root, &mut removals);
    strip(
        &mut root,
        &mut Location::default(),
        pseudonym,
        &mut removals,
    )?;
    removals.check_pseudonym_is_clean(pseudonym)?;

    let mut names = Vec::new();
    collect_names(&root, None, &mut names);
    let renames = Renames::plan(&names, &removals.values, pseudonym)?;
    let mut relink = Relink {
        renames: &renames,
        removals: &mut removals,
        pseudonym,
    };
    relink.walk(
        &mut root,
        &mut Frame::default(),
        &mut Location::default(),
        "",
    )?;

    narratives(&mut root, &removals)?;
    guard(&root, "", &mut Location::default(), &removals)?;
    Ok(Redaction {
        output: super::write::to_bytes(&root),
        relink: removals.items,
    })
}

// ---- pass 2: rename ids, rewrite references ---------------------------------------------

fn collect_names(v: &Json, full_url: Option<&str>, out: &mut Vec<ResourceName>) {
    if let Some(t) = v.resource_type() {
        out.push(ResourceName {
            resource_type: t.to_owned(),
            id: v.get("id").and_then(Json::as_str).map(str::to_owned),
            full_url: full_url.map(str::to_owned),
        });
    }
    match v {
        Json::Object(members) => {
            let entry_url = v.get("fullUrl").and_then(Json::as_str);
            for (name, child) in members {
                let url = if name == "resource" { entry_url } else { None };
                collect_names(child, url, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|c| collect_names(c, None, out)),
        _ => {}
    }
}

/// The resource a walk is inside: its label, whether it is a person resource, and the
/// path from it.
#[derive(Debug, Default)]
struct Frame {
    label: String,
    person: bool,
    path: Location,
}

struct Relink<'a> {
    renames: &'a Renames,
    removals: &'a mut Removals,
    pseudonym: &'a str,
}

impl Relink<'_> {
    fn walk(
        &mut self,
        v: &mut Json,
        frame: &mut Frame,
        at: &mut Location,
        parent: &str,
    ) -> Result<(), FhirError> {
        let mut own;
        let frame = match v.resource_type() {
            Some(t) => {
                own = Frame {
                    label: label(v, t, at),
                    person: PersonKind::of(t).is_some(),
                    path: Location::default(),
                };
                if let Some(Json::String(id)) = v.get_mut("id") {
                    if let Some(new) = self.renames.ids.get(id.as_str()) {
                        let old = std::mem::replace(id, new.clone());
                        self.removals
                            .record(&own.label, "id".into(), to_text(&Json::String(old)));
                    }
                }
                &mut own
            }
            None => frame,
        };
        match v {
            Json::Object(members) => {
                let entry_label = entry_resource_label(members, at);
                for (name, child) in members.iter_mut() {
                    let mark = at.push_name(name);
                    let inner = frame.path.push_name(name);
                    self.member(name, child, frame, parent, entry_label.as_deref())?;
                    self.walk(child, frame, at, name)?;
                    frame.path.truncate(inner);
                    at.truncate(mark);
                }
            }
            Json::Array(items) => {
                for (i, child) in items.iter_mut().enumerate() {
                    let mark = at.push_index(i);
                    let inner = frame.path.push_index(i);
                    if parent == "identifier" && !frame.person {
                        self.identifier(child, frame)?;
                    }
                    self.walk(child, frame, at, parent)?;
                    frame.path.truncate(inner);
                    at.truncate(mark);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Rewrites one member of an object if it is a reference, a full URL, or an
    /// identifier that held the patient's removed identifier.
    fn member(
        &mut self,
        name: &str,
        child: &mut Json,
        frame: &Frame,
        parent: &str,
        entry_label: Option<&str>,
    ) -> Result<(), FhirError> {
        match (name, &mut *child) {
            ("reference", Json::String(s)) => self.rewrite(s, |r, s| r.reference(s)),
            ("url", Json::String(s)) if parent == "request" => {
                self.rewrite(s, |r, s| r.reference(s))
            }
            ("location", Json::String(s)) if parent == "response" => {
                self.rewrite(s, |r, s| r.reference(s));
            }
            ("fullUrl", Json::String(s)) => {
                if let Some(new) = self.renames.full_urls.get(s.as_str()) {
                    let old = std::mem::replace(s, new.clone());
                    let label = entry_label.unwrap_or(&frame.label);
                    self.removals
                        .record(label, "fullUrl".into(), to_text(&Json::String(old)));
                }
            }
            ("identifier", Json::Object(_)) if !frame.person => self.identifier(child, frame)?,
            _ => {}
        }
        Ok(())
    }

    fn rewrite(&self, s: &mut String, f: impl Fn(&Renames, &str) -> Option<String>) {
        if let Some(new) = f(self.renames, s) {
            *s = new;
        }
    }

    /// Replaces an Identifier holding a removed Patient identifier by the pseudonym.
    fn identifier(&mut self, v: &mut Json, frame: &Frame) -> Result<(), FhirError> {
        let holds = v
            .get("value")
            .and_then(Json::as_str)
            .is_some_and(|s| self.removals.is_patient_identifier(s));
        if holds {
            let old = std::mem::replace(v, pseudonym_identifier(self.pseudonym));
            let path = frame.path.render();
            self.removals.record(&frame.label, path, to_text(&old));
        }
        Ok(())
    }
}

/// The label of the resource in a Bundle entry, for recording its renamed `fullUrl`.
fn entry_resource_label(members: &[(String, Json)], at: &mut Location) -> Option<String> {
    let resource = members
        .iter()
        .find(|(n, _)| n == "resource")
        .map(|(_, v)| v)?;
    let t = resource.resource_type()?;
    let mark = at.push_name("resource");
    let label = label(resource, t, at);
    at.truncate(mark);
    Some(label)
}

// ---- pass 3: narratives -----------------------------------------------------------------

fn narratives(v: &mut Json, removals: &Removals) -> Result<(), FhirError> {
    match v {
        Json::Object(members) => {
            for (name, child) in members.iter_mut() {
                if name == "text" {
                    narrative(child, removals)?;
                }
                narratives(child, removals)?;
            }
        }
        Json::Array(items) => {
            for child in items {
                narratives(child, removals)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn narrative(text: &mut Json, removals: &Removals) -> Result<(), FhirError> {
    let Some(Json::String(div)) = text.get_mut("div") else {
        return Ok(());
    };
    let (outcome, new) = scrub_json_div(div, &removals.values)?;
    if let Some(new) = new {
        *div = new;
    }
    if outcome == Outcome::Replaced {
        if let Some(status) = text.get_mut("status") {
            *status = Json::String("generated".into());
        } else if let Json::Object(members) = text {
            let at = members.iter().position(|(n, _)| n == "div").unwrap_or(0);
            members.insert(at, ("status".into(), Json::String("generated".into())));
        }
    }
    Ok(())
}

// ---- pass 4: nothing removed survives ---------------------------------------------------

fn guard(v: &Json, element: &str, at: &mut Location, removals: &Removals) -> Result<(), FhirError> {
    match v {
        Json::String(s) if survives_in(&removals.values, element, s)? => {
            return Err(FhirError::IdentifierSurvives {
                location: at.render(),
            });
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mark = at.push_index(i);
                guard(child, element, at, removals)?;
                at.truncate(mark);
            }
        }
        Json::Object(members) => {
            for (name, child) in members {
                // Narratives were scrubbed and checked as XHTML text in pass 3.
                if element == "text" && name == "div" {
                    continue;
                }
                let mark = at.push_name(name);
                guard(child, name, at, removals)?;
                at.truncate(mark);
            }
        }
        _ => {}
    }
    Ok(())
}
