//! Redaction of FHIR XML: the same four passes as [`crate::json::redact`], over elements
//! (pass 1 is [`super::strip`]).

use super::strip::{kept_names, strip};
use super::tree::{Element, Node};
use super::write::{document_to_bytes, element_to_string};
use super::{
    label, parse_resource, pseudonym_children, push_child, sibling_indexes, value_element,
};
use crate::FhirError;
use crate::error::Location;
use crate::narrative::{Outcome, scrub_div};
use crate::policy::PersonKind;
use crate::redaction::{Redaction, Removals, survives_in};
use crate::renames::{Renames, ResourceName};

/// Redacts a FHIR XML record (UTF-8 and size already checked).
pub(crate) fn redact(text: &str, pseudonym: &str) -> Result<Redaction, FhirError> {
    let mut doc = parse_resource(text)?;
    let mut removals = Removals::default();
    kept_names(&doc.root, &mut removals);
    let mut at = Location::default();
    at.push_name(doc.root.local());
    strip(&mut doc.root, &mut at, pseudonym, &mut removals)?;
    removals.check_pseudonym_is_clean(pseudonym)?;

    let mut names = Vec::new();
    collect_names(&doc.root, None, &mut names);
    let renames = Renames::plan(&names, &removals.values, pseudonym)?;
    let mut relink = Relink {
        renames: &renames,
        removals: &mut removals,
        pseudonym,
    };
    let mut at = Location::default();
    at.push_name(doc.root.local());
    relink.walk(&mut doc.root, &mut Frame::default(), &mut at)?;

    narratives(&mut doc.root, &removals)?;
    let mut at = Location::default();
    at.push_name(doc.root.local());
    guard(&doc.root, &mut at, &removals)?;
    Ok(Redaction {
        output: document_to_bytes(&doc),
        relink: removals.items,
    })
}

// ---- pass 2: rename ids, rewrite references ---------------------------------------------

fn collect_names(e: &Element, full_url: Option<&str>, out: &mut Vec<ResourceName>) {
    if e.is_resource() {
        out.push(ResourceName {
            resource_type: e.local().to_owned(),
            id: e.child_value("id").map(str::to_owned),
            full_url: full_url.map(str::to_owned),
        });
    }
    let entry_url = e.child_value("fullUrl");
    for child in e.elements() {
        if child.is_fhir("resource") {
            for resource in child.elements() {
                collect_names(resource, entry_url, out);
            }
        } else {
            collect_names(child, None, out);
        }
    }
}

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
        e: &mut Element,
        frame: &mut Frame,
        at: &mut Location,
    ) -> Result<(), FhirError> {
        let mut own;
        let frame = if e.is_resource() {
            own = Frame {
                label: label(e, at),
                person: PersonKind::of(e.local()).is_some(),
                path: Location::default(),
            };
            if let Some(id) = child_value_mut(e, "id") {
                if let Some(new) = self.renames.ids.get(id.as_str()) {
                    let old = std::mem::replace(id, new.clone());
                    let was = value_element(format!("{}id", e.prefix()), &old);
                    self.removals
                        .record(&own.label, "id".into(), element_to_string(&was));
                }
            }
            &mut own
        } else {
            frame
        };
        if e.is_fhir("entry") {
            self.full_url(e, at);
        } else if e.is_fhir("reference") {
            self.rewrite(
                e.attrs
                    .iter_mut()
                    .find(|a| a.name == "value")
                    .map(|a| &mut a.value),
            );
        } else if e.is_fhir("request") {
            self.rewrite(child_value_mut(e, "url"));
        } else if e.is_fhir("response") {
            self.rewrite(child_value_mut(e, "location"));
        } else if e.is_fhir("identifier") && !frame.person {
            self.identifier(e, frame);
        }
        let indexes = sibling_indexes(e);
        for (child, index) in e.elements_mut().zip(indexes) {
            let mark = push_child(at, child, index);
            let inner = push_child(&mut frame.path, child, index);
            self.walk(child, frame, at)?;
            frame.path.truncate(inner);
            at.truncate(mark);
        }
        Ok(())
    }

    fn rewrite(&self, value: Option<&mut String>) {
        if let Some(value) = value {
            if let Some(new) = self.renames.reference(value) {
                *value = new;
            }
        }
    }

    /// Renames an entry's `fullUrl`, recording it against the entry's resource.
    fn full_url(&mut self, entry: &mut Element, at: &mut Location) {
        let resource_label = entry
            .child("resource")
            .and_then(|r| r.elements().next())
            .map(|r| {
                let mark = at.push_name("resource");
                let mark2 = at.push_name(r.local());
                let l = label(r, at);
                at.truncate(mark2);
                at.truncate(mark);
                l
            });
        let prefix = entry.prefix().to_owned();
        let Some(url) = child_value_mut(entry, "fullUrl") else {
            return;
        };
        if let Some(new) = self.renames.full_urls.get(url.as_str()) {
            let old = std::mem::replace(url, new.clone());
            let was = value_element(format!("{prefix}fullUrl"), &old);
            let label = resource_label.unwrap_or_else(|| format!("entry@{}", at.render()));
            self.removals
                .record(&label, "fullUrl".into(), element_to_string(&was));
        }
    }

    /// Replaces an Identifier holding a removed Patient identifier by the pseudonym.
    fn identifier(&mut self, e: &mut Element, frame: &Frame) {
        let holds = e
            .child_value("value")
            .is_some_and(|v| self.removals.is_patient_identifier(v));
        if holds {
            let old = element_to_string(e);
            e.children = pseudonym_children(e.prefix(), self.pseudonym);
            self.removals.record(&frame.label, frame.path.render(), old);
        }
    }
}

/// The `value` attribute of the first FHIR child element named `local`, mutably.
fn child_value_mut<'a>(e: &'a mut Element, local: &str) -> Option<&'a mut String> {
    e.elements_mut()
        .find(|c| c.is_fhir(local))?
        .attrs
        .iter_mut()
        .find(|a| a.name == "value")
        .map(|a| &mut a.value)
}

// ---- pass 3: narratives -----------------------------------------------------------------

fn narratives(e: &mut Element, removals: &Removals) -> Result<(), FhirError> {
    if e.is_fhir("text") {
        narrative(e, removals)?;
    }
    for child in e.elements_mut() {
        narratives(child, removals)?;
    }
    Ok(())
}

fn narrative(text: &mut Element, removals: &Removals) -> Result<(), FhirError> {
    let Some(div) = text.elements_mut().find(|c| c.local() == "div") else {
        return Ok(());
    };
    if scrub_div(div, &removals.values)? != Outcome::Replaced {
        return Ok(());
    }
    if let Some(status) = child_value_mut(text, "status") {
        *status = "generated".into();
        return Ok(());
    }
    let status = value_element(format!("{}status", text.prefix()), "generated");
    let at = text
        .children
        .iter()
        .position(|n| matches!(n, Node::Element(c) if c.local() == "div"))
        .unwrap_or(0);
    text.children.insert(at, Node::Element(status));
    Ok(())
}

// ---- pass 4: nothing removed survives ---------------------------------------------------

fn guard(e: &Element, at: &mut Location, removals: &Removals) -> Result<(), FhirError> {
    let survives = |element: &str, value: &str| survives_in(&removals.values, element, value);
    for attr in &e.attrs {
        if attr.name == "xmlns" || attr.name.starts_with("xmlns:") {
            continue;
        }
        let element = if attr.name == "value" {
            e.local()
        } else {
            attr.name.as_str()
        };
        if survives(element, &attr.value)? {
            return Err(FhirError::IdentifierSurvives {
                location: at.render(),
            });
        }
    }
    for child in &e.children {
        if let Node::Text(t) = child {
            if survives(e.local(), t)? {
                return Err(FhirError::IdentifierSurvives {
                    location: at.render(),
                });
            }
        }
    }
    let indexes = sibling_indexes(e);
    for (child, index) in e.elements().zip(indexes) {
        // Narratives were scrubbed and checked as XHTML text in pass 3.
        if e.is_fhir("text") && child.local() == "div" {
            continue;
        }
        let mark = push_child(at, child, index);
        guard(child, at, removals)?;
        at.truncate(mark);
    }
    Ok(())
}
