//! Pass 1 of JSON redaction: strip the Patient, RelatedPerson and Person resources of
//! what [`crate::policy`] removes, record each removed fragment for re-linking, collect
//! the removed values to search for later, and put the pseudonym into each Patient.

use super::value::Json;
use super::write::to_text;
use super::{label, pseudonym_identifier, resource_type};
use crate::FhirError;
use crate::error::Location;
use crate::matching::{Kind, skeleton};
use crate::policy::{
    ADDRESS_PARTS, BEFORE_IDENTIFIER, Field, NAME_PARTS, PSEUDONYM_SYSTEM, PersonKind,
};
use crate::redaction::Removals;

/// Collects the name parts that stay in the record (Patient and Person names).
pub(super) fn kept_names(v: &Json, removals: &mut Removals) {
    let keeps_name = v
        .resource_type()
        .and_then(PersonKind::of)
        .is_some_and(|k| !k.removed().iter().any(|(n, _)| *n == "name"));
    if keeps_name {
        for name in v.get("name").map(iter_items).unwrap_or_default() {
            for part in NAME_PARTS {
                let _ = strings(name.get(part), &mut |s| {
                    removals.kept_names.insert(skeleton(s));
                    Ok(())
                });
            }
        }
    }
    match v {
        Json::Object(members) => members.iter().for_each(|(_, c)| kept_names(c, removals)),
        Json::Array(items) => items.iter().for_each(|c| kept_names(c, removals)),
        _ => {}
    }
}

pub(super) fn strip(
    v: &mut Json,
    at: &mut Location,
    pseudonym: &str,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    let person = resource_type(v, at)?.and_then(|t| Some((PersonKind::of(t)?, t.to_owned())));
    if let Some((kind, resource_type)) = person {
        let label = label(v, &resource_type, at);
        strip_person(v, kind, &label, pseudonym, removals)?;
    }
    match v {
        Json::Object(members) => {
            for (name, child) in members {
                let mark = at.push_name(name);
                strip(child, at, pseudonym, removals)?;
                at.truncate(mark);
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                let mark = at.push_index(i);
                strip(child, at, pseudonym, removals)?;
                at.truncate(mark);
            }
        }
        _ => {}
    }
    Ok(())
}

fn strip_person(
    v: &mut Json,
    kind: PersonKind,
    label: &str,
    pseudonym: &str,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    let Json::Object(members) = v else {
        return Ok(());
    };
    let field_of = |name: &str| {
        kind.removed()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    };
    let mut kept = Vec::with_capacity(members.len());
    let mut identifier_at = None;
    for (name, value) in members.drain(..) {
        if let Some(field) = field_of(&name) {
            if name == "identifier" {
                identifier_at.get_or_insert(kept.len());
            }
            let value = without_own_pseudonym(value, pseudonym);
            remove_field(&name, &value, Some(field), kind, label, removals)?;
        } else if name.strip_prefix('_').and_then(field_of).is_some() {
            remove_field(&name, &value, None, kind, label, removals)?;
        } else if name == "address" {
            if let Some(value) = strip_addresses(value, label, removals)? {
                kept.push((name, value));
            }
        } else {
            kept.push((name, value));
        }
    }
    if kind == PersonKind::Patient {
        let at = identifier_at.unwrap_or_else(|| {
            kept.iter()
                .position(|(n, _)| !BEFORE_IDENTIFIER.contains(&n.trim_start_matches('_')))
                .unwrap_or(kept.len())
        });
        let identifier = Json::Array(vec![pseudonym_identifier(pseudonym)]);
        kept.insert(at, ("identifier".into(), identifier));
    }
    *members = kept;
    Ok(())
}

/// Drops the pseudonym identifier an earlier redaction with the same pseudonym inserted,
/// so redacting twice gives the same record (it is re-inserted, not recorded as removed).
fn without_own_pseudonym(value: Json, pseudonym: &str) -> Json {
    let own = |v: &Json| {
        v.get("system").and_then(Json::as_str) == Some(PSEUDONYM_SYSTEM)
            && v.get("value").and_then(Json::as_str) == Some(pseudonym)
    };
    match value {
        Json::Array(items) => Json::Array(items.into_iter().filter(|v| !own(v)).collect()),
        v if own(&v) => Json::Array(Vec::new()),
        v => v,
    }
}

/// Records a removed element (each item of an array separately) and collects its values.
fn remove_field(
    name: &str,
    value: &Json,
    field: Option<Field>,
    kind: PersonKind,
    label: &str,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    let one = |path: String, item: &Json, removals: &mut Removals| {
        removals.record(label, path, to_text(item));
        match field {
            Some(field) => collect(field, item, kind == PersonKind::Patient, removals),
            None => Ok(()),
        }
    };
    match value {
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                one(format!("{name}[{i}]"), item, removals)?;
            }
            Ok(())
        }
        _ => one(name.to_owned(), value, removals),
    }
}

/// Adds the searchable values of a removed element.
fn collect(
    field: Field,
    value: &Json,
    of_patient: bool,
    removals: &mut Removals,
) -> Result<(), FhirError> {
    match (field, value) {
        (_, Json::Array(items)) => {
            for item in items {
                collect(field, item, of_patient, removals)?;
            }
        }
        (Field::Identifier | Field::Telecom, Json::Object(_)) => {
            if let Some(s) = value.get("value").and_then(Json::as_str) {
                removals.add_value(field, s, of_patient)?;
            }
        }
        (Field::Name, Json::Object(_)) => {
            for part in NAME_PARTS {
                strings(value.get(part), &mut |s| {
                    removals.add_value(Field::Name, s, false)
                })?;
            }
        }
        (Field::Contact, Json::Object(_)) => {
            if let Some(name) = value.get("name") {
                collect(Field::Name, name, false, removals)?;
            }
            if let Some(telecom) = value.get("telecom") {
                collect(Field::Telecom, telecom, false, removals)?;
            }
            if let Some(address) = value.get("address") {
                address_values(address, removals)?;
            }
        }
        (Field::Photo, _) => {}
        (_, Json::String(s)) => removals.add_value(field, s, of_patient)?,
        _ => {}
    }
    Ok(())
}

/// The items of an array, or the value itself.
fn iter_items(v: &Json) -> &[Json] {
    match v {
        Json::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// Calls `f` on a string, or on each string of an array.
fn strings(
    v: Option<&Json>,
    f: &mut dyn FnMut(&str) -> Result<(), FhirError>,
) -> Result<(), FhirError> {
    match v {
        Some(Json::String(s)) => f(s),
        Some(Json::Array(items)) => {
            for item in items {
                if let Json::String(s) = item {
                    f(s)?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Adds the removable parts of an address (or array of them) to the search set.
fn address_values(address: &Json, removals: &mut Removals) -> Result<(), FhirError> {
    match address {
        Json::Array(items) => items.iter().try_for_each(|a| address_values(a, removals)),
        Json::String(s) => removals.values.add(Kind::Address, s),
        _ => {
            for (part, kind) in ADDRESS_PARTS {
                if let Some(kind) = kind {
                    strings(address.get(part), &mut |s| removals.values.add(*kind, s))?;
                }
            }
            Ok(())
        }
    }
}

/// Removes the identifying parts of a person's addresses; `None` if nothing is left.
fn strip_addresses(
    value: Json,
    label: &str,
    removals: &mut Removals,
) -> Result<Option<Json>, FhirError> {
    match value {
        Json::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if let Some(kept) = strip_address(item, &format!("address[{i}]"), label, removals)?
                {
                    out.push(kept);
                }
            }
            Ok((!out.is_empty()).then_some(Json::Array(out)))
        }
        other => strip_address(other, "address", label, removals),
    }
}

fn strip_address(
    value: Json,
    path: &str,
    label: &str,
    removals: &mut Removals,
) -> Result<Option<Json>, FhirError> {
    let Json::Object(members) = value else {
        // Not an Address at all: drop it whole rather than guess what it holds.
        removals.record(label, path.to_owned(), to_text(&value));
        address_values(&value, removals)?;
        return Ok(None);
    };
    let removed = |name: &str| {
        let base = name.strip_prefix('_').unwrap_or(name);
        ADDRESS_PARTS.iter().any(|(p, _)| *p == base)
    };
    let mut kept = Vec::new();
    for (name, part) in members {
        if !removed(&name) {
            kept.push((name, part));
            continue;
        }
        match &part {
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    removals.record(label, format!("{path}.{name}[{i}]"), to_text(item));
                }
            }
            _ => removals.record(label, format!("{path}.{name}"), to_text(&part)),
        }
        let kind = ADDRESS_PARTS
            .iter()
            .find(|(p, _)| *p == name)
            .and_then(|(_, k)| *k);
        if let Some(kind) = kind {
            strings(Some(&part), &mut |s| removals.values.add(kind, s))?;
        }
    }
    Ok((!kept.is_empty()).then_some(Json::Object(kept)))
}
