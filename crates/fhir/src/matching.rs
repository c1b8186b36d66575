//! Finding removed identifying values in text that is kept.
//!
//! Redaction removes a value from its own element, but the same value may be repeated in a
//! narrative (`<td>07 853 9191</td>`), in a resource id, or in free text. This module
//! answers "does this text still contain any removed value?" and rewrites narrative text
//! to `[redacted]` where it does.
//!
//! Matching is on *skeletons*: letters and digits only, lower-cased, so `tel:+64 7 853
//! 2279`, `+6478532279` and `+64-7-853-2279` are the same value; a leading `tel:`,
//! `mailto:`, `fax:`, `sms:`, `urn:uuid:` or `urn:oid:` is dropped from removed values. A match must start and end
//! on a word boundary of the text, so the postal code `3210` is found in `Hamilton 3210`
//! but not inside `13210` or `a3210b`. Values are stored in a character trie and the text
//! is walked once per word, so the work is bounded by
//! [`crate::limits::MAX_MATCH_STEPS`] whatever the input.

use std::cell::Cell;
use std::collections::HashSet;
use std::ops::Range;

use crate::FhirError;
use crate::limits::{MAX_IDENTIFYING_VALUES, MAX_MATCH_STEPS};

/// What a removed value was, which decides where its survival is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// An identifier or telecom value: must not survive anywhere.
    Strong = 1,
    /// An address line, postal code, district or address text: must not survive in text
    /// fields (coincidences with codes and generated ids are ignored).
    Address = 2,
    /// A name of a removed contact or related person: scrubbed from narratives only, since
    /// it may legitimately equal a kept name (a mother and daughter both called Martha).
    Name = 4,
}

/// Which removed values a search looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    kinds: u8,
    min_len: usize,
}

impl Want {
    /// Values of any of `kinds` whose skeleton has at least `min_len` characters.
    pub(crate) fn kinds(kinds: &[Kind], min_len: usize) -> Self {
        Self {
            kinds: kinds.iter().fold(0, |m, k| m | *k as u8),
            min_len,
        }
    }
}

/// Text inserted where a removed value was found in a narrative.
pub(crate) const REDACTED: &str = "[redacted]";

#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(char, u32)>,
    /// Bit set of [`Kind`]s of the values ending here.
    kinds: u8,
    /// Skeleton length of the value ending here.
    depth: usize,
}

/// The removed values of one redaction, ready to be searched for.
#[derive(Debug)]
pub(crate) struct Identifying {
    nodes: Vec<TrieNode>,
    seen: HashSet<(u8, String)>,
    steps: Cell<u64>,
}

impl Default for Identifying {
    fn default() -> Self {
        Self {
            nodes: vec![TrieNode::default()],
            seen: HashSet::new(),
            steps: Cell::new(0),
        }
    }
}

struct Token {
    bytes: Range<usize>,
    chars: Range<usize>,
}

/// The words of a text: letters and digits, lower-cased, with their byte ranges.
fn tokenize(text: &str) -> (Vec<char>, Vec<Token>) {
    let mut chars = Vec::new();
    let mut tokens: Vec<Token> = Vec::new();
    let mut open: Option<(usize, usize)> = None;
    for (at, c) in text.char_indices() {
        if c.is_alphanumeric() {
            let start = *open.get_or_insert((at, chars.len()));
            chars.extend(c.to_lowercase());
            open = Some(start);
        } else if let Some((b, c0)) = open.take() {
            tokens.push(Token {
                bytes: b..at,
                chars: c0..chars.len(),
            });
        }
    }
    if let Some((b, c0)) = open {
        tokens.push(Token {
            bytes: b..text.len(),
            chars: c0..chars.len(),
        });
    }
    (chars, tokens)
}

/// URI schemes dropped from the front of removed values: the value is what follows.
const SCHEMES: &[&str] = &["tel:", "mailto:", "fax:", "sms:", "urn:uuid:", "urn:oid:"];

/// The skeleton of a removed value: its words joined, without a leading URI scheme.
pub(crate) fn skeleton(value: &str) -> String {
    let trimmed = value.trim_start();
    let rest = SCHEMES
        .iter()
        .find(|scheme| {
            trimmed
                .as_bytes()
                .get(..scheme.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(scheme.as_bytes()))
        })
        .map_or(trimmed, |scheme| &trimmed[scheme.len()..]);
    let (chars, _) = tokenize(rest);
    chars.into_iter().collect()
}

impl Identifying {
    /// Adds a removed value. Values without letters or digits cannot be searched for and
    /// are skipped.
    pub(crate) fn add(&mut self, kind: Kind, value: &str) -> Result<(), FhirError> {
        let skel = skeleton(value);
        if skel.is_empty() || !self.seen.insert((kind as u8, skel.clone())) {
            return Ok(());
        }
        if self.seen.len() > MAX_IDENTIFYING_VALUES {
            return Err(FhirError::TooMany {
                what: "identifying values to remove",
                limit: MAX_IDENTIFYING_VALUES,
            });
        }
        let mut node = 0usize;
        for (depth, c) in skel.chars().enumerate() {
            node = match self.child(node, c) {
                Some(next) => next,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(TrieNode {
                        depth: depth + 1,
                        ..TrieNode::default()
                    });
                    // Bounded by the input size, itself far below u32::MAX.
                    let id = u32::try_from(next).unwrap_or(u32::MAX);
                    let children = &mut self.nodes[node].children;
                    let at = children.partition_point(|(k, _)| *k < c);
                    children.insert(at, (c, id));
                    next
                }
            };
        }
        self.nodes[node].kinds |= kind as u8;
        Ok(())
    }

    /// The child of trie node `node` for character `c` (children are kept sorted).
    fn child(&self, node: usize, c: char) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&c, |(k, _)| *k)
            .ok()
            .map(|i| children[i].1 as usize)
    }

    /// Whether a value of `kind` with exactly this skeleton was added.
    pub(crate) fn is_exactly(&self, kind: Kind, text: &str) -> bool {
        self.seen.contains(&(kind as u8, skeleton(text)))
    }

    /// Whether any of the wanted values could ever match (lets callers skip work).
    pub(crate) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Byte ranges of `text` holding wanted values, longest match first at each word,
    /// not overlapping.
    pub(crate) fn find_all(&self, text: &str, want: Want) -> Result<Vec<Range<usize>>, FhirError> {
        let mut found = Vec::new();
        if self.is_empty() || text.is_empty() {
            return Ok(found);
        }
        let (chars, tokens) = tokenize(text);
        let mut i = 0;
        while i < tokens.len() {
            match self.longest_from(text, &chars, &tokens[i..], want)? {
                Some(words) => {
                    // A phone number's leading `+` goes with it.
                    let mut start = tokens[i].bytes.start;
                    if start > 0 && text.as_bytes()[start - 1] == b'+' {
                        start -= 1;
                    }
                    found.push(start..tokens[i + words - 1].bytes.end);
                    i += words;
                }
                None => i += 1,
            }
        }
        Ok(found)
    }

    /// Whether `text` holds any wanted value.
    pub(crate) fn occurs_in(&self, text: &str, want: Want) -> Result<bool, FhirError> {
        Ok(!self.find_all(text, want)?.is_empty())
    }

    /// `text` with every wanted value replaced by [`REDACTED`], or `None` if it holds none.
    pub(crate) fn scrub(&self, text: &str, want: Want) -> Result<Option<String>, FhirError> {
        let found = self.find_all(text, want)?;
        if found.is_empty() {
            return Ok(None);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for range in found {
            out.push_str(&text[at..range.start]);
            out.push_str(REDACTED);
            at = range.end;
        }
        out.push_str(&text[at..]);
        Ok(Some(out))
    }

    /// How many of the words starting at `tokens[0]` the longest wanted value spans.
    fn longest_from(
        &self,
        text: &str,
        chars: &[char],
        tokens: &[Token],
        want: Want,
    ) -> Result<Option<usize>, FhirError> {
        let mut node = 0usize;
        let mut best = None;
        'words: for (n, token) in tokens.iter().enumerate() {
            for &c in &chars[token.chars.clone()] {
                let steps = self.steps.get() + 1;
                self.steps.set(steps);
                if steps > MAX_MATCH_STEPS {
                    return Err(FhirError::TooMany {
                        what: "comparisons while searching for removed identifiers",
                        limit: usize::try_from(MAX_MATCH_STEPS).unwrap_or(usize::MAX),
                    });
                }
                match self.child(node, c) {
                    Some(next) => node = next,
                    None => break 'words,
                }
            }
            let here = &self.nodes[node];
            let kinds = here.kinds & want.kinds;
            if kinds == 0 || here.depth < want.min_len {
                continue;
            }
            // An address value that is a bare number (a postal code, a house number) is
            // not taken to match inside a date, time or dotted number: `2010` in
            // `2010-05-01` is a year, not the postal code 2010.
            let only_address = kinds == Kind::Address as u8;
            if only_address && n == 0 && in_number_context(text, &tokens[0].bytes) {
                continue;
            }
            best = Some(n + 1);
        }
        Ok(best)
    }
}

/// Whether the all-digit word at `range` is joined to other digits by `-`, `/`, `:` or `.`.
fn in_number_context(text: &str, range: &Range<usize>) -> bool {
    let word = &text[range.clone()];
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let joiner = |b: u8| matches!(b, b'-' | b'/' | b':' | b'.');
    let bytes = text.as_bytes();
    let before = range.start >= 2
        && joiner(bytes[range.start - 1])
        && bytes[range.start - 2].is_ascii_digit();
    let after = range.end + 1 < bytes.len()
        && joiner(bytes[range.end])
        && bytes[range.end + 1].is_ascii_digit();
    before || after
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(values: &[(Kind, &str)]) -> Identifying {
        let mut ids = Identifying::default();
        for (k, v) in values {
            ids.add(*k, v).unwrap();
        }
        ids
    }

    const ALL: [Kind; 3] = [Kind::Strong, Kind::Address, Kind::Name];

    #[test]
    fn phone_numbers_match_across_formatting() {
        let ids = set(&[(Kind::Strong, "tel:+6478532279")]);
        let want = Want::kinds(&ALL, 1);
        for text in [
            "call +64 7 853 2279 now",
            "tel:+6478532279",
            "+64-7-853-2279",
        ] {
            assert!(ids.occurs_in(text, want).unwrap(), "{text}");
        }
        assert!(!ids.occurs_in("+64785322790", want).unwrap());
    }

    #[test]
    fn matches_respect_word_boundaries() {
        let ids = set(&[(Kind::Address, "3210")]);
        let want = Want::kinds(&ALL, 1);
        assert!(ids.occurs_in("Hamilton 3210", want).unwrap());
        assert!(ids.occurs_in("x-3210-y", want).unwrap());
        assert!(!ids.occurs_in("13210", want).unwrap());
        assert!(!ids.occurs_in("a3210b", want).unwrap());
    }

    #[test]
    fn numeric_address_values_do_not_match_inside_dates() {
        let ids = set(&[(Kind::Address, "2010"), (Kind::Strong, "1985")]);
        let want = Want::kinds(&ALL, 1);
        assert!(!ids.occurs_in("given 2010-05-01 at 12:2010", want).unwrap());
        assert!(ids.occurs_in("Auckland 2010.", want).unwrap());
        // Identifier values have no such exception.
        assert!(ids.occurs_in("1985-04-25", want).unwrap());
    }

    #[test]
    fn scrub_prefers_the_longest_value_and_is_case_insensitive() {
        let ids = set(&[
            (Kind::Address, "Rototuna"),
            (Kind::Address, "Rototuna North"),
        ]);
        let out = ids
            .scrub(
                "Lives in ROTOTUNA north, near Rototuna.",
                Want::kinds(&ALL, 1),
            )
            .unwrap()
            .unwrap();
        assert_eq!(out, "Lives in [redacted], near [redacted].");
    }

    #[test]
    fn want_filters_by_kind_and_length() {
        let ids = set(&[(Kind::Name, "Peter"), (Kind::Strong, "AB")]);
        assert!(
            !ids.occurs_in("Peter", Want::kinds(&[Kind::Strong], 1))
                .unwrap()
        );
        assert!(
            ids.occurs_in("Peter", Want::kinds(&[Kind::Name], 1))
                .unwrap()
        );
        assert!(
            !ids.occurs_in("AB", Want::kinds(&[Kind::Strong], 3))
                .unwrap()
        );
    }

    #[test]
    fn values_without_letters_or_digits_are_ignored() {
        let ids = set(&[(Kind::Strong, " - ")]);
        assert!(ids.is_empty());
        assert_eq!(ids.scrub("a - b", Want::kinds(&ALL, 0)).unwrap(), None);
    }

    #[test]
    fn non_ascii_text_keeps_its_byte_ranges() {
        let ids = set(&[(Kind::Name, "Zoë")]);
        let out = ids
            .scrub("für ZOË Ünal", Want::kinds(&ALL, 1))
            .unwrap()
            .unwrap();
        assert_eq!(out, "für [redacted] Ünal");
    }
}
