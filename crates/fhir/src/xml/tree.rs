//! An element tree for FHIR XML and narrative XHTML, read with quick-xml's namespace-aware
//! reader.
//!
//! Redaction needs two passes over a record (collect the removed values, then rewrite ids
//! and references everywhere and search what is kept), so the document is held as a tree
//! of elements, attributes and text. Each element records the namespace its name resolves
//! to, so FHIR elements (`http://hl7.org/fhir`) and narrative (`http://www.w3.org/1999/xhtml`)
//! are told apart whatever prefixes the document uses; names and namespace declarations
//! are written back exactly as read.
//!
//! What FHIR XML forbids is refused rather than passed through: a DOCTYPE (no DTDs, so no
//! entity expansion), entities other than the five predefined ones and character
//! references, unbound prefixes, and content outside the root element. Comments and
//! processing instructions are dropped: they are not part of a FHIR resource and could
//! carry identifiers past redaction. Depth, node and attribute counts are bounded.

use quick_xml::NsReader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;

use crate::FhirError;
use crate::limits::{MAX_ATTRIBUTES, MAX_XML_DEPTH, NodeBudget};

/// The FHIR namespace.
pub(crate) const FHIR_NS: &str = "http://hl7.org/fhir";
/// The XHTML namespace used by narratives.
pub(crate) const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// The namespace an element's name resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    Fhir,
    Xhtml,
    Other,
    None,
}

/// An attribute: its name as written and its value with references resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Element(Element),
    /// Character data with references resolved (CDATA sections are folded in).
    Text(String),
}

/// An element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The qualified name as written (`Patient`, `f:Patient`, `xhtml:div`).
    pub(crate) name: String,
    pub(crate) ns: Ns,
    pub(crate) attrs: Vec<Attr>,
    pub(crate) children: Vec<Node>,
}

/// A whole document: an optional XML declaration and the root element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    pub(crate) declaration: bool,
    pub(crate) root: Element,
}

impl Element {
    /// A new element with no attributes or children.
    pub(crate) fn new(name: String, ns: Ns) -> Self {
        Self {
            name,
            ns,
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The local part of the name.
    pub(crate) fn local(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// The prefix of the name, with its colon (`"f:"`), or `""`.
    pub(crate) fn prefix(&self) -> &str {
        match self.name.rfind(':') {
            Some(i) => &self.name[..=i],
            None => "",
        }
    }

    /// Whether this is the FHIR element `local`.
    pub(crate) fn is_fhir(&self, local: &str) -> bool {
        self.ns == Ns::Fhir && self.local() == local
    }

    /// Whether this element is a FHIR resource: FHIR element names start lower-case,
    /// resource type names upper-case.
    pub(crate) fn is_resource(&self) -> bool {
        self.ns == Ns::Fhir && self.local().starts_with(|c: char| c.is_ascii_uppercase())
    }

    /// The value of attribute `name`.
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Sets attribute `name`, adding it if missing.
    pub(crate) fn set_attr(&mut self, name: &str, value: String) {
        match self.attrs.iter_mut().find(|a| a.name == name) {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// The child elements.
    pub(crate) fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The child elements, mutably.
    pub(crate) fn elements_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first FHIR child element named `local`.
    pub(crate) fn child(&self, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.is_fhir(local))
    }

    /// The `value` attribute of the first FHIR child element named `local`.
    pub(crate) fn child_value(&self, local: &str) -> Option<&str> {
        self.child(local).and_then(|e| e.attr("value"))
    }
}

/// Parses a document (UTF-8 already checked by the caller).
pub(crate) fn parse(text: &str) -> Result<Document, FhirError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut budget = NodeBudget::default();
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut declaration = false;
    let bad = |reader: &NsReader<&[u8]>, problem: &'static str| FhirError::InvalidXml {
        problem,
        offset: usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX),
    };
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (classify(&ns), event),
            Err(_) => {
                return Err(FhirError::InvalidXml {
                    problem: "malformed markup",
                    offset: usize::try_from(reader.error_position()).unwrap_or(usize::MAX),
                });
            }
        };
        let ns = match ns {
            Ok(ns) => ns,
            Err(()) => return Err(bad(&reader, "element prefix bound to no namespace")),
        };
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(bad(&reader, "more than one root element"));
                }
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(FhirError::TooDeep {
                        limit: MAX_XML_DEPTH,
                        offset,
                    });
                }
                budget.take("XML nodes")?;
                let element = element(&start, ns).map_err(|problem| bad(&reader, problem))?;
                stack.push(element);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err(bad(&reader, "more than one root element"));
                }
                budget.take("XML nodes")?;
                let element = element(&start, ns).map_err(|problem| bad(&reader, problem))?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => match stack.pop() {
                Some(element) => close(element, &mut stack, &mut root),
                None => return Err(bad(&reader, "end tag without a start tag")),
            },
            Event::Text(t) => {
                let content = t
                    .xml10_content()
                    .map_err(|_| bad(&reader, "undecodable text"))?;
                text_into(&content, &mut stack, &mut budget, offset)?;
            }
            Event::CData(t) => {
                let content = t
                    .xml10_content()
                    .map_err(|_| bad(&reader, "undecodable text"))?;
                if stack.is_empty() {
                    return Err(bad(&reader, "CDATA outside the root element"));
                }
                text_into(&content, &mut stack, &mut budget, offset)?;
            }
            Event::GeneralRef(r) => {
                let c = resolve_reference(&r)
                    .ok_or_else(|| bad(&reader, "entity other than the five predefined ones"))?;
                if stack.is_empty() {
                    return Err(bad(&reader, "text outside the root element"));
                }
                let mut buf = [0u8; 4];
                text_into(c.encode_utf8(&mut buf), &mut stack, &mut budget, offset)?;
            }
            Event::Decl(_) => declaration = true,
            Event::DocType(_) => return Err(bad(&reader, "DOCTYPE declarations are not allowed")),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(bad(&reader, "unclosed element at the end of the document"));
    }
    let root = root.ok_or_else(|| bad(&reader, "no root element"))?;
    Ok(Document { declaration, root })
}

/// Maps a resolved namespace to [`Ns`]; an unknown prefix is an error.
fn classify(ns: &ResolveResult<'_>) -> Result<Ns, ()> {
    match ns {
        ResolveResult::Bound(n) if n.as_ref() == FHIR_NS.as_bytes() => Ok(Ns::Fhir),
        ResolveResult::Bound(n) if n.as_ref() == XHTML_NS.as_bytes() => Ok(Ns::Xhtml),
        ResolveResult::Bound(_) => Ok(Ns::Other),
        ResolveResult::Unbound => Ok(Ns::None),
        ResolveResult::Unknown(_) => Err(()),
    }
}

fn element(start: &BytesStart<'_>, ns: Ns) -> Result<Element, &'static str> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|_| "undecodable name")?
        .to_owned();
    let mut out = Element::new(name, ns);
    for (i, attr) in start.attributes().enumerate() {
        if i >= MAX_ATTRIBUTES {
            return Err("too many attributes on one element");
        }
        let attr = attr.map_err(|_| "malformed or repeated attribute")?;
        let name = std::str::from_utf8(attr.key.as_ref())
            .map_err(|_| "undecodable name")?
            .to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| "malformed attribute value")?
            .into_owned();
        out.attrs.push(Attr { name, value });
    }
    Ok(out)
}

fn close(element: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

/// Appends text to the open element, merging with a preceding text node. Text outside
/// the root may only be white space.
fn text_into(
    text: &str,
    stack: &mut [Element],
    budget: &mut NodeBudget,
    offset: usize,
) -> Result<(), FhirError> {
    let Some(parent) = stack.last_mut() else {
        if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
            return Ok(());
        }
        return Err(FhirError::InvalidXml {
            problem: "text outside the root element",
            offset,
        });
    };
    if let Some(Node::Text(last)) = parent.children.last_mut() {
        last.push_str(text);
    } else {
        budget.take("XML nodes")?;
        parent.children.push(Node::Text(text.to_owned()));
    }
    Ok(())
}

/// The character an entity or character reference stands for, if XML predefines it.
fn resolve_reference(r: &BytesRef<'_>) -> Option<char> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        return Some(c);
    }
    match r.decode().ok()?.as_ref() {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_namespaces_attributes_and_text() {
        let doc = parse(
            "<?xml version=\"1.0\"?>\n<!-- c --><f:Patient xmlns:f=\"http://hl7.org/fhir\">\
             <f:id value=\"a&amp;b&#10;c\"/><f:text><div xmlns=\"http://www.w3.org/1999/xhtml\">\
             x &lt; y<![CDATA[ & z]]></div></f:text></f:Patient>",
        )
        .unwrap();
        assert!(doc.declaration);
        let root = &doc.root;
        assert!(root.is_resource());
        assert_eq!(root.local(), "Patient");
        assert_eq!(root.prefix(), "f:");
        assert_eq!(root.child_value("id"), Some("a&b\nc"));
        let div = root.child("text").unwrap().elements().next().unwrap();
        assert_eq!(div.ns, Ns::Xhtml);
        assert_eq!(div.children, vec![Node::Text("x < y & z".into())]);
    }

    #[test]
    fn refuses_what_fhir_xml_forbids() {
        for bad in [
            "<!DOCTYPE p [<!ENTITY x \"y\">]><Patient xmlns=\"http://hl7.org/fhir\">&x;</Patient>",
            "<Patient xmlns=\"http://hl7.org/fhir\">&nbsp;</Patient>",
            "<Patient xmlns=\"http://hl7.org/fhir\"><a></b></Patient>",
            "<Patient xmlns=\"http://hl7.org/fhir\">",
            "<Patient xmlns=\"http://hl7.org/fhir\"/><Patient xmlns=\"http://hl7.org/fhir\"/>",
            "<x:Patient/>",
            "<a b=\"1\" b=\"2\"/>",
            "text<a/>",
            "",
        ] {
            assert!(
                matches!(parse(bad), Err(FhirError::InvalidXml { .. })),
                "{bad:?}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn depth_limit_is_enforced() {
        let nest = |n: usize| "<a>".repeat(n) + &"</a>".repeat(n);
        assert!(parse(&nest(MAX_XML_DEPTH)).is_ok());
        assert!(matches!(
            parse(&nest(MAX_XML_DEPTH + 1)),
            Err(FhirError::TooDeep { .. })
        ));
    }

    #[test]
    fn attribute_count_is_bounded() {
        let attrs: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        assert!(matches!(
            parse(&format!("<a{attrs}/>")),
            Err(FhirError::InvalidXml { .. })
        ));
    }
}
