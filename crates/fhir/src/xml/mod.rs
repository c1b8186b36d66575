//! FHIR XML: the element tree, its writer, and the FHIR-specific walks over it.
//!
//! An element in the FHIR namespace whose name starts with a capital letter is a resource
//! (FHIR element names start lower-case, resource type names upper-case); resources are
//! found that way wherever they sit (root, `entry/resource`, `contained`, nested bundles).

pub(crate) mod redact;
mod strip;
pub(crate) mod tree;
pub(crate) mod write;

use std::collections::HashMap;

use crate::error::Location;
use crate::policy::PSEUDONYM_SYSTEM;
use crate::{FhirDate, FhirError};
use tree::{Document, Element, Node, Ns};

/// Parses a record and checks that its root element is a FHIR resource.
pub(crate) fn parse_resource(text: &str) -> Result<Document, FhirError> {
    let doc = tree::parse(text)?;
    if !doc.root.is_resource() {
        return Err(FhirError::NotFhir {
            problem: "the root element is not a resource in the FHIR namespace",
        });
    }
    Ok(doc)
}

/// For each child element, in order: the element and its index among same-named
/// siblings, or `None` if it is the only one of its name.
pub(crate) fn sibling_indexes(e: &Element) -> Vec<Option<usize>> {
    let mut totals: HashMap<&str, usize> = HashMap::new();
    for c in e.elements() {
        *totals.entry(c.local()).or_default() += 1;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    e.elements()
        .map(|c| {
            let n = seen.entry(c.local()).or_default();
            let index = *n;
            *n += 1;
            (totals[c.local()] > 1).then_some(index)
        })
        .collect()
}

/// Pushes a child's name (and index, if it has same-named siblings) onto a path.
pub(crate) fn push_child(at: &mut Location, child: &Element, index: Option<usize>) -> usize {
    let mark = at.push_name(child.local());
    if let Some(i) = index {
        at.push_index(i);
    }
    mark
}

/// `Type/id`, or `Type@path` for a resource without an id.
pub(crate) fn label(resource: &Element, at: &Location) -> String {
    match resource.child_value("id") {
        Some(id) => format!("{}/{id}", resource.local()),
        None => format!("{}@{}", resource.local(), at.render()),
    }
}

pub(crate) fn value_element(name: String, value: &str) -> Element {
    let mut e = Element::new(name, Ns::Fhir);
    e.set_attr("value", value.to_owned());
    e
}

/// `<identifier><system value="urn:dossier:pseudonym"/><value value="…"/></identifier>`
/// with the FHIR prefix the document uses.
pub(crate) fn pseudonym_children(prefix: &str, pseudonym: &str) -> Vec<Node> {
    vec![
        Node::Element(value_element(format!("{prefix}system"), PSEUDONYM_SYSTEM)),
        Node::Element(value_element(format!("{prefix}value"), pseudonym)),
    ]
}

pub(crate) fn is_blank(node: &Node) -> bool {
    matches!(node, Node::Text(t) if t.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')))
}

/// Drops the white space that indented a removed element.
pub(crate) fn drop_indent(kept: &mut Vec<Node>) {
    if kept.last().is_some_and(is_blank) {
        kept.pop();
    }
}

/// The birth date of every Patient, in document order; `None` for a Patient without one.
pub(crate) fn patient_birth_dates(doc: &Document) -> Result<Vec<Option<FhirDate>>, FhirError> {
    let mut out = Vec::new();
    let mut at = Location::default();
    at.push_name(doc.root.local());
    walk_dates(&doc.root, &mut at, &mut out)?;
    Ok(out)
}

fn walk_dates(
    e: &Element,
    at: &mut Location,
    out: &mut Vec<Option<FhirDate>>,
) -> Result<(), FhirError> {
    if e.is_resource() && e.local() == "Patient" {
        let date = match e.child("birthDate").and_then(|b| b.attr("value")) {
            None => None,
            Some(text) => Some(FhirDate::parse(text).map_err(|_| {
                let mark = at.push_name("birthDate");
                let location = at.render();
                at.truncate(mark);
                FhirError::InvalidBirthDate { location }
            })?),
        };
        out.push(date);
    }
    for (child, index) in e.elements().zip(sibling_indexes(e)) {
        let mark = push_child(at, child, index);
        walk_dates(child, at, out)?;
        at.truncate(mark);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_patients_anywhere_and_reports_bad_dates_by_place() {
        let text = r#"<Bundle xmlns="http://hl7.org/fhir">
            <entry><resource><Patient><birthDate value="2008"/></Patient></resource></entry>
            <entry><resource><Observation><contained><Patient/></contained></Observation></resource></entry>
            <entry><resource><Patient><birthDate value="1985-04-31"/></Patient></resource></entry>
        </Bundle>"#;
        let doc = parse_resource(text).unwrap();
        let err = patient_birth_dates(&doc).unwrap_err();
        assert_eq!(
            err,
            FhirError::InvalidBirthDate {
                location: "Bundle.entry[2].resource.Patient.birthDate".into()
            }
        );
        let fixed = text.replace("1985-04-31", "1985-04-30");
        let dates: Vec<_> = patient_birth_dates(&parse_resource(&fixed).unwrap())
            .unwrap()
            .into_iter()
            .map(|d| d.map(|d| d.to_string()))
            .collect();
        assert_eq!(
            dates,
            vec![Some("2008".into()), None, Some("1985-04-30".into())]
        );
    }

    #[test]
    fn root_must_be_a_fhir_resource() {
        for text in ["<Patient/>", "<entry xmlns=\"http://hl7.org/fhir\"/>"] {
            assert!(matches!(
                parse_resource(text),
                Err(FhirError::NotFhir { .. })
            ));
        }
    }
}
