//! Output conventions: with `--json`, exactly one JSON document on stdout and human text on
//! stderr; without it, human text on stdout. Errors always go to stderr.

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
            eprintln!("{}", line.as_ref());
        } else {
            println!("{}", line.as_ref());
        }
    }

    /// The JSON document, when `--json` was given.
    pub fn json(&self, value: &serde_json::Value) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
            );
        }
    }
}

/// Prints an error for a person (and as JSON on stderr when `--json` was given).
pub fn report_error(e: &NodeError, json: bool) {
    if json {
        let doc = serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_class() as u8 });
        eprintln!("{doc}");
    } else {
        eprintln!("error: {e}");
    }
}
