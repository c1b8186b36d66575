//! FHIR JSON: the tree, its writer, and the FHIR-specific walks over it.
//!
//! A JSON object is a resource exactly when it has a `resourceType` member; resources are
//! found that way wherever they sit (top level, `Bundle.entry[].resource`, `contained[]`,
//! nested bundles, `Parameters.parameter[].resource`).

pub(crate) mod redact;
mod strip;
pub(crate) mod value;
pub(crate) mod write;

use crate::error::Location;
use crate::policy::{PSEUDONYM_SYSTEM, is_resource_type};
use crate::{FhirDate, FhirError};
use value::Json;

/// Parses a record and checks that its top level is a resource.
pub(crate) fn parse_resource(text: &str) -> Result<Json, FhirError> {
    let root = value::parse(text)?;
    match &root {
        Json::Object(_) if root.get("resourceType").is_some() => {
            resource_type(&root, &Location::default())?;
            Ok(root)
        }
        Json::Object(_) => Err(FhirError::NotFhir {
            problem: "the top-level object has no resourceType",
        }),
        _ => Err(FhirError::NotFhir {
            problem: "the top level is not a JSON object",
        }),
    }
}

/// The `resourceType` of `v` if it is a resource; an error if the member is malformed.
pub(crate) fn resource_type<'a>(v: &'a Json, at: &Location) -> Result<Option<&'a str>, FhirError> {
    match v.get("resourceType") {
        None => Ok(None),
        Some(Json::String(t)) if is_resource_type(t) => Ok(Some(t)),
        Some(_) => Err(FhirError::InvalidStructure {
            problem: "resourceType is not a resource type name",
            location: at.render(),
        }),
    }
}

/// `Type/id`, or `Type@path` for a resource without an id.
pub(crate) fn label(resource: &Json, resource_type: &str, at: &Location) -> String {
    match resource.get("id").and_then(Json::as_str) {
        Some(id) => format!("{resource_type}/{id}"),
        None => format!("{resource_type}@{}", at.render()),
    }
}

pub(crate) fn pseudonym_identifier(pseudonym: &str) -> Json {
    Json::Object(vec![
        ("system".into(), Json::String(PSEUDONYM_SYSTEM.into())),
        ("value".into(), Json::String(pseudonym.into())),
    ])
}

/// The birth date of every Patient, in document order; `None` for a Patient without one.
pub(crate) fn patient_birth_dates(root: &Json) -> Result<Vec<Option<FhirDate>>, FhirError> {
    let mut out = Vec::new();
    walk_dates(root, &mut Location::default(), &mut out)?;
    Ok(out)
}

fn walk_dates(
    v: &Json,
    at: &mut Location,
    out: &mut Vec<Option<FhirDate>>,
) -> Result<(), FhirError> {
    if resource_type(v, at)? == Some("Patient") {
        let bad = |at: &mut Location| {
            let mark = at.push_name("birthDate");
            let location = at.render();
            at.truncate(mark);
            FhirError::InvalidBirthDate { location }
        };
        out.push(match v.get("birthDate") {
            None => None,
            Some(Json::String(s)) => Some(FhirDate::parse(s).map_err(|_| bad(at))?),
            Some(_) => return Err(bad(at)),
        });
    }
    match v {
        Json::Object(members) => {
            for (name, child) in members {
                let mark = at.push_name(name);
                walk_dates(child, at, out)?;
                at.truncate(mark);
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mark = at.push_index(i);
                walk_dates(child, at, out)?;
                at.truncate(mark);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dates(text: &str) -> Result<Vec<Option<String>>, FhirError> {
        let root = parse_resource(text)?;
        Ok(patient_birth_dates(&root)?
            .into_iter()
            .map(|d| d.map(|d| d.to_string()))
            .collect())
    }

    #[test]
    fn finds_patients_anywhere() {
        let text = r#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Patient","birthDate":"2008"}},
            {"resource":{"resourceType":"Observation","contained":[
                {"resourceType":"Patient","birthDate":"2010-02"}]}},
            {"resource":{"resourceType":"Bundle","entry":[
                {"resource":{"resourceType":"Patient"}}]}}]}"#;
        assert_eq!(
            dates(text).unwrap(),
            vec![Some("2008".into()), Some("2010-02".into()), None]
        );
    }

    #[test]
    fn bad_birth_dates_are_errors_that_name_only_the_place() {
        let text = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","birthDate":"25/04/1985"}}]}"#;
        let err = dates(text).unwrap_err();
        assert_eq!(
            err,
            FhirError::InvalidBirthDate {
                location: "entry[0].resource.birthDate".into()
            }
        );
        assert!(!err.to_string().contains("1985"));
        let number = r#"{"resourceType":"Patient","birthDate":1985}"#;
        assert!(matches!(
            dates(number),
            Err(FhirError::InvalidBirthDate { .. })
        ));
    }

    #[test]
    fn top_level_must_be_a_resource() {
        assert!(matches!(dates("[]"), Err(FhirError::NotFhir { .. })));
        assert!(matches!(dates("{}"), Err(FhirError::NotFhir { .. })));
        assert!(matches!(
            dates(r#"{"resourceType":7}"#),
            Err(FhirError::InvalidStructure { .. })
        ));
    }
}
