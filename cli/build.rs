//! Embeds the HL7 IPS sample bundle used by `dossier demo` when the shared sample data sits
//! beside the repository (as on the team's machines and in CI). Without it, the demo looks
//! for the file at run time and says where it looked.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let sample = manifest_dir.join("../../shared/data/fhir/ips-bundle-minimal.json");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("demo-ips.json");
    let bytes = std::fs::read(&sample).unwrap_or_default();
    std::fs::write(&out, bytes).expect("OUT_DIR is writable");
    println!("cargo::rerun-if-changed={}", sample.display());
}
