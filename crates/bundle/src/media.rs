//! Media types for parts, so a recipient knows a FHIR document from a PDF or a DICOM image
//! without opening it (docs/protocol.md §8.3).
//!
//! The guess uses the file extension and, for JSON and XML, the first bytes: a FHIR resource
//! is labelled `application/fhir+json` / `application/fhir+xml` as FHIR R4 §3.1.0.1.7 asks.

/// How many leading bytes [`guess`] looks at.
pub const SNIFF_BYTES: usize = 4096;

/// A media type for a part named `name` whose content starts with `head`.
pub fn guess(name: &str, head: &[u8]) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    match ext.as_str() {
        "json" if contains(b"\"resourceType\"") => "application/fhir+json",
        "json" => "application/json",
        "xml" if contains(b"http://hl7.org/fhir") => "application/fhir+xml",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "dcm" | "dicom" => "application/dicom",
        "txt" | "text" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "tif" | "tiff" => "image/tiff",
        "zip" => "application/zip",
        _ if head.len() >= 132 && &head[128..132] == b"DICM" => "application/dicom",
        _ if head.starts_with(b"%PDF-") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::guess;

    #[test]
    fn guesses() {
        assert_eq!(
            guess("ips.json", br#"{"resourceType":"Bundle"}"#),
            "application/fhir+json"
        );
        assert_eq!(guess("x.JSON", b"{}"), "application/json");
        assert_eq!(
            guess("p.xml", br#"<Bundle xmlns="http://hl7.org/fhir">"#),
            "application/fhir+xml"
        );
        assert_eq!(guess("scan.pdf", b""), "application/pdf");
        assert_eq!(guess("noext", b"%PDF-1.7"), "application/pdf");
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM");
        assert_eq!(guess("IM0001", &dicom), "application/dicom");
        assert_eq!(guess("blob.bin", b"\0\0"), "application/octet-stream");
    }
}
