//! Renaming resources whose id carries a removed identifier, and keeping references whole.
//!
//! Hospital systems often use the patient's record number as the Patient's id
//! (`Patient/AAA1234` where AAA1234 is the national health index number). Removing the
//! identifier is then not enough: the id, the Bundle entry's `fullUrl` and every reference
//! repeat it. Such ids are renamed — the first Patient to the pseudonym itself, any other
//! resource to `<pseudonym>-<n>` — and every reference, `fullUrl`, `request.url` and
//! `response.location` that pointed at the old name is rewritten, so the bundle stays
//! referentially intact.

use std::collections::{HashMap, HashSet};

use crate::FhirError;
use crate::matching::{Identifying, Kind, Want};
use crate::policy::is_resource_type;

/// Old → new names for ids and full URLs.
#[derive(Debug, Default)]
pub(crate) struct Renames {
    pub(crate) ids: HashMap<String, String>,
    pub(crate) full_urls: HashMap<String, String>,
}

/// Whether an id or URL carries a removed identifier or telecom value: equal to one, or
/// holding one of at least [`MIN_CONTAINED`] characters as a word.
fn carries(ids: &Identifying, text: &str) -> Result<bool, FhirError> {
    Ok(ids.is_exactly(Kind::Strong, text)
        || ids.occurs_in(text, Want::kinds(&[Kind::Strong], MIN_CONTAINED))?)
}

/// Shortest identifier or telecom value looked for *inside* ids and URLs; shorter ones
/// (a one-digit identifier) would rename every id that holds the digit.
const MIN_CONTAINED: usize = crate::redaction::GUARD_MIN_STRONG;

/// A resource as the renaming plan sees it.
#[derive(Debug)]
pub(crate) struct ResourceName {
    pub(crate) resource_type: String,
    pub(crate) id: Option<String>,
    /// The `fullUrl` of the Bundle entry holding it, if any.
    pub(crate) full_url: Option<String>,
}

impl Renames {
    /// Decides new ids and full URLs for resources whose id or full URL holds a removed
    /// identifier or telecom value.
    pub(crate) fn plan(
        resources: &[ResourceName],
        ids: &Identifying,
        pseudonym: &str,
    ) -> Result<Self, FhirError> {
        let mut plan = Renames::default();
        if ids.is_empty() {
            return Ok(plan);
        }
        let mut taken: HashSet<String> = resources.iter().filter_map(|r| r.id.clone()).collect();
        let mut next = 1u32;
        let patients_first = resources
            .iter()
            .filter(|r| r.resource_type == "Patient")
            .chain(resources.iter().filter(|r| r.resource_type != "Patient"));
        for resource in patients_first {
            let Some(id) = &resource.id else { continue };
            if plan.ids.contains_key(id) || !carries(ids, id)? {
                continue;
            }
            let new = if resource.resource_type == "Patient" && !taken.contains(pseudonym) {
                pseudonym.to_owned()
            } else {
                loop {
                    let candidate = format!("{pseudonym}-{next}");
                    next += 1;
                    if !taken.contains(&candidate) {
                        break candidate;
                    }
                }
            };
            taken.insert(new.clone());
            plan.ids.insert(id.clone(), new);
        }
        let mut urls_taken: HashSet<String> = resources
            .iter()
            .filter_map(|r| r.full_url.clone())
            .collect();
        let mut minted = 0u64;
        for resource in resources {
            let Some(url) = &resource.full_url else {
                continue;
            };
            if plan.full_urls.contains_key(url) {
                continue;
            }
            let renamed = resource
                .id
                .as_ref()
                .and_then(|old| Some((old, plan.ids.get(old)?)))
                .and_then(|(old, new)| {
                    let base = url.strip_suffix(old.as_str())?;
                    base.ends_with('/').then(|| format!("{base}{new}"))
                });
            let new = match renamed {
                Some(new) if !carries(ids, &new)? => Some(new),
                _ if carries(ids, url)? => loop {
                    minted += 1;
                    let candidate = minted_urn(pseudonym, minted);
                    if !urls_taken.contains(&candidate) {
                        break Some(candidate);
                    }
                },
                _ => None,
            };
            if let Some(new) = new {
                urls_taken.insert(new.clone());
                plan.full_urls.insert(url.clone(), new);
            }
        }
        Ok(plan)
    }

    /// The rewritten form of a reference (`Patient/AAA1234`, `#p1`, a full URL, an
    /// absolute URL ending in `Type/id` or `Type/id/_history/n`), if it changes.
    pub(crate) fn reference(&self, reference: &str) -> Option<String> {
        if let Some(new) = self.full_urls.get(reference) {
            return Some(new.clone());
        }
        if let Some(local) = reference.strip_prefix('#') {
            return self.ids.get(local).map(|new| format!("#{new}"));
        }
        if reference.contains('?') {
            return None;
        }
        let mut parts: Vec<&str> = reference.split('/').collect();
        let at = match parts.len() {
            n if n >= 4 && parts[n - 2] == "_history" => n - 3,
            n if n >= 2 => n - 1,
            _ => return None,
        };
        if at == 0 || !is_resource_type(parts[at - 1]) {
            return None;
        }
        let new = self.ids.get(parts[at])?;
        parts[at] = new;
        Some(parts.join("/"))
    }
}

/// A stable, valid `urn:uuid:` for the `n`-th full URL minted from a pseudonym (FNV-1a of
/// the pseudonym, then the counter; only uniqueness within the bundle matters).
fn minted_urn(pseudonym: &str, n: u64) -> String {
    let hash = pseudonym.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "urn:uuid:{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        hash >> 32,
        (hash >> 16) & 0xffff,
        (hash >> 4) & 0xfff,
        hash & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(t: &str, id: &str, url: Option<&str>) -> ResourceName {
        ResourceName {
            resource_type: t.into(),
            id: Some(id.into()),
            full_url: url.map(Into::into),
        }
    }

    fn ids(values: &[&str]) -> Identifying {
        let mut ids = Identifying::default();
        for v in values {
            ids.add(Kind::Strong, v).unwrap();
        }
        ids
    }

    #[test]
    fn renames_ids_that_hold_identifiers_and_their_references() {
        let resources = [
            res(
                "Condition",
                "c1",
                Some("https://x.example/fhir/Condition/c1"),
            ),
            res(
                "Patient",
                "AAA1234",
                Some("https://x.example/fhir/Patient/AAA1234"),
            ),
            res("RelatedPerson", "rp-555", None),
        ];
        let plan = Renames::plan(&resources, &ids(&["AAA1234", "555"]), "px1").unwrap();
        assert_eq!(plan.ids["AAA1234"], "px1");
        assert_eq!(plan.ids["rp-555"], "px1-1");
        assert_eq!(plan.ids.len(), 2);
        assert_eq!(
            plan.full_urls["https://x.example/fhir/Patient/AAA1234"],
            "https://x.example/fhir/Patient/px1"
        );
        assert_eq!(
            plan.reference("Patient/AAA1234").as_deref(),
            Some("Patient/px1")
        );
        assert_eq!(
            plan.reference("https://y.example/Patient/AAA1234/_history/2")
                .as_deref(),
            Some("https://y.example/Patient/px1/_history/2")
        );
        assert_eq!(plan.reference("#AAA1234").as_deref(), Some("#px1"));
        assert_eq!(
            plan.reference("https://x.example/fhir/Patient/AAA1234")
                .as_deref(),
            Some("https://x.example/fhir/Patient/px1")
        );
        assert_eq!(plan.reference("Condition/c1"), None);
        assert_eq!(plan.reference("AAA1234"), None);
        assert_eq!(plan.reference("Patient?identifier=AAA1234"), None);
    }

    #[test]
    fn short_identifiers_rename_only_ids_equal_to_them() {
        let resources = [res("Patient", "7", None), res("Observation", "obs-7", None)];
        let plan = Renames::plan(&resources, &ids(&["7"]), "px1").unwrap();
        assert_eq!(plan.ids.len(), 1);
        assert_eq!(plan.ids["7"], "px1");
    }

    #[test]
    fn full_urls_holding_identifiers_get_fresh_urns() {
        let resources = [res("Patient", "p1", Some("urn:uuid:AAA1234"))];
        let plan = Renames::plan(&resources, &ids(&["AAA1234"]), "px1").unwrap();
        let new = &plan.full_urls["urn:uuid:AAA1234"];
        assert!(new.starts_with("urn:uuid:") && new.len() == 45, "{new}");
        assert!(plan.ids.is_empty());
    }

    #[test]
    fn an_existing_id_equal_to_the_pseudonym_is_not_reused() {
        let resources = [
            res("Patient", "AAA1234", None),
            res("Observation", "px1", None),
        ];
        let plan = Renames::plan(&resources, &ids(&["AAA1234"]), "px1").unwrap();
        assert_eq!(plan.ids["AAA1234"], "px1-1");
    }
}
