//! Who runs a command: the named person every audit entry records.

use std::fmt;

use crate::error::NodeError;

/// Environment variable naming the operator when `--operator` is not given.
pub const OPERATOR_ENV: &str = "DOSSIER_OPERATOR";

/// Longest operator name, in characters.
pub const MAX_OPERATOR_CHARS: usize = 64;

/// The person running a command, as recorded in the audit trail.
///
/// 1 to 64 characters, no control characters, no leading or trailing whitespace. It names
/// staff, never patients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operator(String);

impl Operator {
    /// Checks a name given explicitly.
    pub fn new(name: &str) -> Result<Self, NodeError> {
        let n = name.chars().count();
        let problem = if n == 0 {
            Some("is empty")
        } else if n > MAX_OPERATOR_CHARS {
            Some("is longer than 64 characters")
        } else if name.chars().any(char::is_control) {
            Some("contains control characters")
        } else if name.trim() != name {
            Some("starts or ends with whitespace")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(NodeError::BadOperator { problem }),
            None => Ok(Self(name.to_owned())),
        }
    }

    /// `--operator NAME`, else `$DOSSIER_OPERATOR`, else the OS user (`$USER`, `$LOGNAME`),
    /// else `uid:N` from the kernel. Empty environment values count as unset.
    pub fn resolve(explicit: Option<&str>) -> Result<Self, NodeError> {
        resolve_with(explicit, |k| std::env::var(k).ok(), read_uid)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// [`Operator::resolve`] with the environment and the uid lookup passed in (for tests;
/// editing the real environment is unsafe in a threaded test run).
fn resolve_with(
    explicit: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    uid: impl FnOnce() -> Option<u32>,
) -> Result<Operator, NodeError> {
    if let Some(name) = explicit {
        return Operator::new(name);
    }
    for key in [OPERATOR_ENV, "USER", "LOGNAME"] {
        if let Some(v) = env(key).filter(|v| !v.is_empty()) {
            return Operator::new(&v);
        }
    }
    match uid() {
        Some(n) => Operator::new(&format!("uid:{n}")),
        None => Err(NodeError::BadOperator {
            problem: "could not be determined",
        }),
    }
}

/// The real uid of this process, from `/proc/self/status` (no `unsafe` libc call).
fn read_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_uid(&status)
}

fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitClass;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn resolution_order() {
        let env = env_of(&[
            (OPERATOR_ENV, "nurse.ann"),
            ("USER", "svc"),
            ("LOGNAME", "x"),
        ]);
        let got = |e: Option<&str>| resolve_with(e, &env, || Some(7)).unwrap();
        assert_eq!(got(Some("dr.lee")).as_str(), "dr.lee");
        assert_eq!(got(None).as_str(), "nurse.ann");
        let env = env_of(&[(OPERATOR_ENV, ""), ("USER", "svc")]);
        assert_eq!(resolve_with(None, env, || Some(7)).unwrap().as_str(), "svc");
        let env = env_of(&[("LOGNAME", "lg")]);
        assert_eq!(resolve_with(None, env, || Some(7)).unwrap().as_str(), "lg");
        assert_eq!(
            resolve_with(None, env_of(&[]), || Some(1000))
                .unwrap()
                .as_str(),
            "uid:1000"
        );
        let err = resolve_with(None, env_of(&[]), || None).unwrap_err();
        assert_eq!(err.exit_class(), ExitClass::Usage);
        assert!(err.to_string().contains("--operator"));
    }

    #[test]
    fn bad_names_are_refused_with_usage() {
        for bad in ["", " lead", "trail ", "a\nb", "tab\there", &"x".repeat(65)] {
            let err = Operator::new(bad).unwrap_err();
            assert_eq!(err.exit_class(), ExitClass::Usage, "{bad:?}");
            assert!(err.to_string().contains("$DOSSIER_OPERATOR"));
        }
        assert!(Operator::new(&"é".repeat(64)).is_ok());
        assert!(Operator::new("Dr. Somchai Jaidee").is_ok());
        // An explicit bad name is not replaced by the environment.
        assert!(resolve_with(Some(""), env_of(&[("USER", "u")]), || Some(1)).is_err());
    }

    #[test]
    fn uid_is_read_from_proc_status() {
        assert_eq!(
            parse_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\n"),
            Some(1000)
        );
        assert_eq!(parse_uid("Name:\tx\n"), None);
        assert!(read_uid().is_some());
    }
}
