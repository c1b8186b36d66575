//! Scrubbing removed values out of narratives (`text.div`).
//!
//! A generated narrative repeats the resource's data as XHTML for people to read, so a
//! phone number removed from `Patient.contact` may still be printed in a table. Every
//! text node and attribute of a narrative is searched for the removed values (see
//! [`crate::matching`]) and each occurrence becomes `[redacted]`. Then the narrative's
//! text is searched again *as a whole* — joined without and with spaces between nodes — so
//! a value split over elements (`<b>3</b> Worcester Drive`) is caught too. If anything
//! still matches, or a JSON narrative is not well-formed XHTML, the whole narrative is
//! replaced by a short placeholder saying it was removed, and its status becomes
//! `generated`: losing a narrative is acceptable, leaking an identifier is not.

use crate::FhirError;
use crate::matching::{Identifying, Kind, Want};
use crate::xml::tree::{self, Attr, Element, Node, Ns, XHTML_NS};
use crate::xml::write::element_to_string;

/// Text of the placeholder narrative.
pub(crate) const PLACEHOLDER_TEXT: &str =
    "Narrative removed before sending: it contained details that identify the patient.";

/// What happened to a narrative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It held no removed value.
    Unchanged,
    /// Occurrences were replaced by `[redacted]`.
    Scrubbed,
    /// It was replaced by the placeholder.
    Replaced,
}

/// The removed values searched for in narratives: all kinds, two characters or more.
fn want() -> Want {
    Want::kinds(&[Kind::Strong, Kind::Address, Kind::Name], 2)
}

/// Scrubs a narrative `div` in place.
pub(crate) fn scrub_div(div: &mut Element, ids: &Identifying) -> Result<Outcome, FhirError> {
    if ids.is_empty() || !holds_removed_value(div, ids)? {
        return Ok(Outcome::Unchanged);
    }
    scrub_nodes(div, ids)?;
    if holds_removed_value(div, ids)? {
        *div = placeholder(div);
        return Ok(Outcome::Replaced);
    }
    Ok(Outcome::Scrubbed)
}

/// A JSON narrative after scrubbing: unchanged, or its new text.
pub(crate) fn scrub_json_div(
    div: &str,
    ids: &Identifying,
) -> Result<(Outcome, Option<String>), FhirError> {
    if ids.is_empty() {
        return Ok((Outcome::Unchanged, None));
    }
    let parsed = tree::parse(div)
        .ok()
        .filter(|doc| doc.root.local() == "div" && doc.root.ns == Ns::Xhtml);
    let Some(mut doc) = parsed else {
        // Not XHTML we can edit safely: keep it only if neither its markup nor a loose
        // decoding of its entities shows a removed value.
        if ids.occurs_in(div, want())? || ids.occurs_in(&loose_decode(div), want())? {
            let text = element_to_string(&placeholder(&canonical_div()));
            return Ok((Outcome::Replaced, Some(text)));
        }
        return Ok((Outcome::Unchanged, None));
    };
    match scrub_div(&mut doc.root, ids)? {
        Outcome::Unchanged => Ok((Outcome::Unchanged, None)),
        outcome => Ok((outcome, Some(element_to_string(&doc.root)))),
    }
}

/// Whether any text node, the joined text, or any attribute value holds a removed value.
fn holds_removed_value(div: &Element, ids: &Identifying) -> Result<bool, FhirError> {
    let mut texts = Vec::new();
    let mut attrs = Vec::new();
    collect(div, &mut texts, &mut attrs);
    for t in texts.iter().chain(attrs.iter()) {
        if ids.occurs_in(t, want())? {
            return Ok(true);
        }
    }
    Ok(ids.occurs_in(&texts.concat(), want())? || ids.occurs_in(&texts.join(" "), want())?)
}

fn collect<'a>(e: &'a Element, texts: &mut Vec<&'a str>, attrs: &mut Vec<&'a str>) {
    attrs.extend(
        e.attrs
            .iter()
            .filter(|a| !is_namespace_declaration(a))
            .map(|a| a.value.as_str()),
    );
    for child in &e.children {
        match child {
            Node::Text(t) => texts.push(t),
            Node::Element(c) => collect(c, texts, attrs),
        }
    }
}

fn scrub_nodes(e: &mut Element, ids: &Identifying) -> Result<(), FhirError> {
    for attr in e.attrs.iter_mut().filter(|a| !is_namespace_declaration(a)) {
        if let Some(clean) = ids.scrub(&attr.value, want())? {
            attr.value = clean;
        }
    }
    for child in &mut e.children {
        match child {
            Node::Text(t) => {
                if let Some(clean) = ids.scrub(t, want())? {
                    *t = clean;
                }
            }
            Node::Element(c) => scrub_nodes(c, ids)?,
        }
    }
    Ok(())
}

fn is_namespace_declaration(a: &Attr) -> bool {
    a.name == "xmlns" || a.name.starts_with("xmlns:")
}

/// `<div xmlns="http://www.w3.org/1999/xhtml"/>`.
fn canonical_div() -> Element {
    let mut div = Element::new("div".to_owned(), Ns::Xhtml);
    div.set_attr("xmlns", XHTML_NS.to_owned());
    div
}

/// The placeholder narrative, named like `like` and keeping its namespace declarations.
pub(crate) fn placeholder(like: &Element) -> Element {
    let mut div = Element::new(like.name.clone(), like.ns);
    div.attrs = like
        .attrs
        .iter()
        .filter(|a| is_namespace_declaration(a))
        .cloned()
        .collect();
    let mut p = Element::new(format!("{}p", like.prefix()), like.ns);
    p.children.push(Node::Text(PLACEHOLDER_TEXT.to_owned()));
    div.children.push(Node::Element(p));
    div
}

/// Markup with the common entity and character references decoded, for searching only.
fn loose_decode(markup: &str) -> String {
    let mut out = String::with_capacity(markup.len());
    let mut rest = markup;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        // `;` is ASCII, so the index found is a character boundary.
        let Some(end) = rest.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let name = &rest[1..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(values: &[(Kind, &str)]) -> Identifying {
        let mut ids = Identifying::default();
        for (k, v) in values {
            ids.add(*k, v).unwrap();
        }
        ids
    }

    #[test]
    fn scrubs_text_and_attributes_and_keeps_the_rest() {
        let ids = ids(&[
            (Kind::Strong, "tel:+6478532279"),
            (Kind::Name, "Peter Rabbit"),
        ]);
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Call <a href=\"tel:+64-7-853-2279\">\
                   +64 7 853 2279</a> or Peter Rabbit &amp; co</p></div>";
        let (outcome, text) = scrub_json_div(div, &ids).unwrap();
        assert_eq!(outcome, Outcome::Scrubbed);
        assert_eq!(
            text.unwrap(),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Call <a href=\"tel:[redacted]\">\
             [redacted]</a> or [redacted] &amp; co</p></div>"
        );
    }

    #[test]
    fn leaves_narratives_without_removed_values_alone() {
        let ids = ids(&[(Kind::Strong, "AAA1234")]);
        let div = "<div xmlns='http://www.w3.org/1999/xhtml'>Name: James Judge</div>";
        assert_eq!(
            scrub_json_div(div, &ids).unwrap(),
            (Outcome::Unchanged, None)
        );
    }

    #[test]
    fn values_split_over_elements_replace_the_whole_narrative() {
        let ids = ids(&[(Kind::Address, "3 Worcester Drive")]);
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>3</b> Worcester Drive</div>";
        let (outcome, text) = scrub_json_div(div, &ids).unwrap();
        assert_eq!(outcome, Outcome::Replaced);
        let text = text.unwrap();
        assert!(text.contains(PLACEHOLDER_TEXT));
        assert!(!text.contains("Worcester"));
        assert!(tree::parse(&text).is_ok());
    }

    #[test]
    fn unparseable_narratives_with_removed_values_are_replaced() {
        let ids = ids(&[(Kind::Address, "A&B Street")]);
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\">A&amp;B&nbsp;Street</div>";
        let (outcome, text) = scrub_json_div(div, &ids).unwrap();
        assert_eq!(outcome, Outcome::Replaced);
        assert!(!text.unwrap().contains("Street"));
        let clean = "<div xmlns=\"http://www.w3.org/1999/xhtml\">fine&nbsp;text</div>";
        assert_eq!(
            scrub_json_div(clean, &ids).unwrap(),
            (Outcome::Unchanged, None)
        );
    }

    #[test]
    fn placeholder_keeps_the_prefix_and_declarations() {
        let doc = tree::parse(
            "<h:div xmlns:h=\"http://www.w3.org/1999/xhtml\" class=\"x\">07 853 9191</h:div>",
        )
        .unwrap();
        let mut div = doc.root;
        let ids = ids(&[(Kind::Strong, "07 853 9191")]);
        // A single node scrubs cleanly.
        assert_eq!(
            scrub_div(&mut div.clone(), &ids).unwrap(),
            Outcome::Scrubbed
        );
        let p = placeholder(&div);
        div = p;
        assert_eq!(
            element_to_string(&div),
            format!(
                "<h:div xmlns:h=\"http://www.w3.org/1999/xhtml\"><h:p>{PLACEHOLDER_TEXT}</h:p></h:div>"
            )
        );
    }

    #[test]
    fn loose_decode_handles_references() {
        assert_eq!(
            loose_decode("a&amp;b&#65;&#x42;&nbsp;&bogus;&"),
            "a&bAB &bogus;&"
        );
        assert_eq!(loose_decode("&ééééééé;"), "&ééééééé;");
    }
}
