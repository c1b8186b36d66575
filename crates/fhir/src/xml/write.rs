//! Writing the element tree back out with quick-xml's writer.
//!
//! Names and namespace declarations are written as they were read. Escaping is done here
//! rather than left to the writer, so that attribute values keep line breaks and tabs
//! (`&#10;`, `&#9;`) instead of having them turned into spaces by the next reader.

use std::borrow::Cow;

use quick_xml::Writer;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;

use super::tree::{Document, Element, Node};

/// Serialises a document, with an XML declaration if it had one.
pub(crate) fn document_to_bytes(doc: &Document) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new());
    if doc.declaration {
        let decl = BytesDecl::new("1.0", Some("UTF-8"), None);
        // Writing into a Vec cannot fail.
        let _ = writer.write_event(Event::Decl(decl));
        writer.get_mut().push(b'\n');
    }
    write_element(&mut writer, &doc.root);
    writer.into_inner()
}

/// Serialises one element as a fragment.
pub(crate) fn element_to_string(element: &Element) -> String {
    let mut writer = Writer::new(Vec::new());
    write_element(&mut writer, element);
    // Only valid UTF-8 is ever written.
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

fn write_element(writer: &mut Writer<Vec<u8>>, element: &Element) {
    let mut start = BytesStart::new(element.name.as_str());
    for attr in &element.attrs {
        start.push_attribute(Attribute {
            key: QName(attr.name.as_bytes()),
            value: Cow::Owned(escape(&attr.value, true).into_bytes()),
        });
    }
    if element.children.is_empty() {
        let _ = writer.write_event(Event::Empty(start));
        return;
    }
    let _ = writer.write_event(Event::Start(start));
    for child in &element.children {
        match child {
            Node::Element(e) => write_element(writer, e),
            Node::Text(t) => {
                let _ = writer.write_event(Event::Text(BytesText::from_escaped(escape(t, false))));
            }
        }
    }
    let _ = writer.write_event(Event::End(BytesEnd::new(element.name.as_str())));
}

/// Escapes text content, or an attribute value (which also needs quotes and white space
/// other than spaces escaped).
fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tree::parse;
    use super::*;

    #[test]
    fn round_trips_names_attributes_and_text() {
        let text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<f:Patient xmlns:f=\"http://hl7.org/fhir\">\
                    <f:id value=\"a&amp;&quot;b&#10;c&#9;d\"/><f:x>1 &lt; 2 &amp; 3 &gt; 0</f:x></f:Patient>";
        let doc = parse(text).unwrap();
        let out = document_to_bytes(&doc);
        assert_eq!(String::from_utf8(out.clone()).unwrap(), text);
        assert_eq!(parse(std::str::from_utf8(&out).unwrap()).unwrap(), doc);
    }
}
