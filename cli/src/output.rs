//! Output conventions: with `--json`, exactly one JSON document on stdout and human text on
//! stderr; without it, human text on stdout. Errors always go to stderr.
//!
//! Output that cannot be written (`dossier inbox | head -1` closes the pipe early) is
//! dropped instead of panicking: the operation the command is carrying out (a sync, a
//! purge) must finish and leave its state whole whatever happens to its reader; the exit
//! code still tells how it went.

use std::io::Write;

use dossier_node::NodeError;

/// Where human-readable lines go for this command.
#[derive(Clone, Copy)]
pub struct Out {
    json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// A human line: stdout normally, stderr when JSON owns stdout.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.json {
            to_stderr(line.as_ref());
        } else {
            to_stdout(line.as_ref());
        }
    }

    /// The JSON document, when `--json` was given.
    pub fn json(&self, value: &serde_json::Value) {
        if self.json {
            to_stdout(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into()));
        }
    }
}

/// Prints an error for a person (and as JSON on stderr when `--json` was given).
pub fn report_error(e: &NodeError, json: bool) {
    if json {
        let doc = serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_class() as u8 });
        to_stderr(&doc.to_string());
    } else {
        to_stderr(&format!("error: {e}"));
    }
}

/// Writes `text` and a newline to stdout; a closed or failing stdout is ignored.
pub fn to_stdout(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Writes `text` and a newline to stderr; a closed or failing stderr is ignored.
pub fn to_stderr(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
