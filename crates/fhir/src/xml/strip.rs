//! Pass 1 of XML redaction: strip the Patient, RelatedPerson and Person resources of what
//! [`crate::policy`] removes, record and collect as in [`crate::json`], and put the
//! pseudonym into each Patient.
//!
//! Removed elements take the white space before them along, so the output keeps the
//! input's indentation; the pseudonymous identifier is inserted where the first removed
//! identifier was (or after `text`/`contained`/`extension`), which keeps the element order
//! the FHIR schema requires.

use std::collections::HashMap;

use super::tree::{Element, Node, Ns};
use super::write::element_to_string;
use super::{drop_indent, is_blank, label, pseudonym_children, push_child, sibling_indexes};
use crate::FhirError;
use crate::error::Location;
use crate::matching::skeleton;
use crate::policy::{
    ADDRESS_PARTS, BEFORE_IDENTIFIER, Field, NAME_PARTS, PSEUDONYM_SYSTEM, PersonKind,
};
use crate::redaction::Removals;

/// Collects the name parts that stay in the record (Patient and Person names).
pub(super) fn kept_names(e: &Element, removals: &mut Removals) {
    let keeps_name = e.is_resource()
        && PersonKind::of(e.local())
            .is_some_and(|k| !k.removed().iter().any(|(n, _)| *n == "name"));
    if keeps_name {
        for name in e.elements().filter(|c| c.is_fhir("name")) {
            for part in NAME_PARTS {
                removals.kept_names.extend(values(name, part).map(skeleton));
            }
        }
    }
    e.elements().for_each(|c| kept_names(c, removals));
}

pub(super) fn strip(
    e: &mut Element,
    at: &mut Location,
    pseudonym: &str,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    if e.is_resource() {
        if let Some(kind) = PersonKind::of(e.local()) {
            let label = label(e, at);
            strip_person(e, kind, &label, pseudonym, removals)?;
        }
    }
    let indexes = sibling_indexes(e);
    for (child, index) in e.elements_mut().zip(indexes) {
        let mark = push_child(at, child, index);
        strip(child, at, pseudonym, removals)?;
        at.truncate(mark);
    }
    Ok(())
}

fn strip_person(
    e: &mut Element,
    kind: PersonKind,
    label: &str,
    pseudonym: &str,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    let field_of = |name: &str| {
        kind.removed()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    };
    let mut kept = Vec::with_capacity(e.children.len());
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut identifier_at = None;
    for node in std::mem::take(&mut e.children) {
        let child = match node {
            Node::Element(child) if child.ns == Ns::Fhir => child,
            other => {
                kept.push(other);
                continue;
            }
        };
        let local = child.local().to_owned();
        let count = counts.entry(local.clone()).or_default();
        let index = *count;
        *count += 1;
        if let Some(field) = field_of(&local) {
            drop_indent(&mut kept);
            if local == "identifier" {
                identifier_at.get_or_insert(kept.len());
                // The pseudonym an earlier redaction with the same pseudonym inserted is
                // re-inserted below, not recorded as removed: redacting twice is stable.
                let own = child.child_value("system") == Some(PSEUDONYM_SYSTEM)
                    && child.child_value("value") == Some(pseudonym);
                if own {
                    continue;
                }
            }
            removals.record(
                label,
                format!("{local}[{index}]"),
                element_to_string(&child),
            );
            collect(field, &child, kind == PersonKind::Patient, removals)?;
        } else if local == "address" {
            match strip_address(child, &format!("address[{index}]"), label, removals)? {
                Some(address) => kept.push(Node::Element(address)),
                None => drop_indent(&mut kept),
            }
        } else {
            kept.push(Node::Element(child));
        }
    }
    if kind == PersonKind::Patient {
        let at = identifier_at.unwrap_or_else(|| {
            kept.iter()
                .position(|n| match n {
                    Node::Element(c) => !BEFORE_IDENTIFIER.contains(&c.local()),
                    Node::Text(_) => false,
                })
                .map_or(kept.len(), |p| {
                    if p > 0 && is_blank(&kept[p - 1]) {
                        p - 1
                    } else {
                        p
                    }
                })
        });
        let mut identifier = Element::new(format!("{}identifier", e.prefix()), Ns::Fhir);
        identifier.children = pseudonym_children(e.prefix(), pseudonym);
        // Repeat the indentation on whichever side of the new element has no text, so
        // the layout is kept and no two text nodes touch (they would merge when read
        // back, and a second redaction would lay the record out differently).
        let before = at.checked_sub(1).and_then(|p| kept.get(p));
        let after = kept.get(at);
        let is_text = |n: Option<&Node>| matches!(n, Some(Node::Text(_)));
        let indent = match (before, after) {
            (_, Some(n)) if is_blank(n) && !is_text(before) => Some((n.clone(), at)),
            (Some(n), _) if is_blank(n) && !is_text(after) => Some((n.clone(), at + 1)),
            _ => None,
        };
        kept.insert(at, Node::Element(identifier));
        if let Some((indent, place)) = indent {
            kept.insert(place, indent);
        }
    }
    e.children = kept;
    Ok(())
}

/// The `value` attributes of the FHIR children named `local`.
fn values<'a>(e: &'a Element, local: &'a str) -> impl Iterator<Item = &'a str> {
    e.elements()
        .filter(move |c| c.is_fhir(local))
        .filter_map(|c| c.attr("value"))
}

/// Adds the searchable values of a removed element.
fn collect(
    field: Field,
    e: &Element,
    of_patient: bool,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    match field {
        Field::Identifier | Field::Telecom => {
            for v in values(e, "value") {
                removals.add_value(field, v, of_patient)?;
            }
        }
        Field::Name => {
            for part in NAME_PARTS {
                for v in values(e, part) {
                    removals.add_value(Field::Name, v, false)?;
                }
            }
        }
        Field::Contact => {
            for c in e.elements().filter(|c| c.ns == Ns::Fhir) {
                match c.local() {
                    "name" => collect(Field::Name, c, false, removals)?,
                    "telecom" => collect(Field::Telecom, c, false, removals)?,
                    "address" => address_values(c, removals)?,
                    _ => {}
                }
            }
        }
        Field::Photo => {}
    }
    Ok(())
}

fn address_values(address: &Element, removals: &mut Removals) -> Result<(), FhirError> {
    for (part, kind) in ADDRESS_PARTS {
        if let Some(kind) = kind {
            for v in values(address, part) {
                removals.values.add(*kind, v)?;
            }
        }
    }
    Ok(())
}

/// Removes the identifying parts of a person's address; `None` if nothing is left.
fn strip_address(
    mut address: Element,
    path: &str,
    label: &str,
    removals: &mut Removals,
) -> Result<Option<Element>, FhirError> {
    address_values(&address, removals)?;
    let mut kept = Vec::with_capacity(address.children.len());
    let mut lines = 0;
    for node in std::mem::take(&mut address.children) {
        match node {
            Node::Element(part)
                if part.ns == Ns::Fhir && ADDRESS_PARTS.iter().any(|(p, _)| *p == part.local()) =>
            {
                drop_indent(&mut kept);
                let place = if part.local() == "line" {
                    lines += 1;
                    format!("{path}.line[{}]", lines - 1)
                } else {
                    format!("{path}.{}", part.local())
                };
                removals.record(label, place, element_to_string(&part));
            }
            other => kept.push(other),
        }
    }
    if !kept.iter().any(|n| matches!(n, Node::Element(_))) {
        return Ok(None);
    }
    address.children = kept;
    Ok(Some(address))
}
