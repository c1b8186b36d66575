//! Seal/open throughput and peak memory of the real `dossier` binary, side by side with
//! Debian's Go `age` and `rage` encrypting and decrypting the same file in the same run.
//!
//! Build and run (release):
//!
//! ```sh
//! cargo build --release -p dossier -p dossier-tests
//! target/release/dossier-bench                    # 1 MiB, 100 MiB, 1 GiB
//! target/release/dossier-bench --sizes 1M,100M     # a quicker run
//! target/release/dossier-bench --repeat 5          # median of 5 runs (default 3)
//! ```
//!
//! Every command runs as a child of a fresh copy of this program (`--measure`), which waits
//! for it and reads `getrusage(RUSAGE_CHILDREN)`: the peak RSS of exactly that command.
//! Inputs are pseudo-random (incompressible) and in the page cache for every tool alike.
//! dossier fsyncs its output before renaming it into place; age and rage do not — that cost
//! is included in dossier's figures on purpose, because it is what a user gets.

// A benchmark reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use dossier_tests::measure::{Measurement, measure, measure_child};

const PASSPHRASE: &str = "benchmark passphrase";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure") {
        measure_child(&args[2..]);
        return;
    }
    let mut sizes = vec![1 << 20, 100 << 20, 1 << 30];
    let mut work: Option<PathBuf> = None;
    let mut repeat = 3usize;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = it
                    .next()
                    .map(|s| parse_sizes(s))
                    .unwrap_or_else(|| usage("--sizes needs a value"))
            }
            "--work" => work = it.next().map(PathBuf::from),
            "--repeat" => {
                repeat = it
                    .next()
                    .and_then(|r| r.parse().ok())
                    .filter(|r| *r > 0)
                    .unwrap_or_else(|| usage("--repeat needs a positive number"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let bin_dir = std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let dossier = bin_dir.join("dossier");
    if !dossier.exists() {
        usage(&format!(
            "{} not found: run `cargo build --release -p dossier -p dossier-tests` first",
            dossier.display()
        ));
    }
    let tmp = match &work {
        Some(w) => tempfile::tempdir_in(w),
        None => tempfile::tempdir(),
    }
    .expect("work dir");
    let root = tmp.path();
    let peers = Peers::find();

    let sender = root.join("sender");
    let recipient = root.join("recipient");
    run_ok(
        &dossier,
        &sender,
        &[
            "init",
            "--id",
            "us-bench-sender",
            "--name",
            "Bench Sender",
            "--country",
            "US",
        ],
    );
    run_ok(
        &dossier,
        &recipient,
        &[
            "init",
            "--id",
            "th-bench-recipient",
            "--name",
            "Bench Recipient",
            "--country",
            "TH",
        ],
    );
    for (me, other) in [(&sender, &recipient), (&recipient, &sender)] {
        let card = root.join("card.tmp");
        let _ = std::fs::remove_file(&card);
        run_ok(
            &dossier,
            other,
            &["card", "-o", card.to_str().expect("utf8")],
        );
        // Verified, as the disclosure policy requires before anything is sealed to it.
        let card_json: serde_json::Value =
            serde_json::from_slice(&run_ok(&dossier, other, &["card", "--json"]))
                .expect("card --json");
        let fingerprint = card_json["fingerprint"].as_str().expect("a fingerprint");
        run_ok(
            &dossier,
            me,
            &[
                "contacts",
                "add",
                card.to_str().expect("utf8"),
                "--verified",
                fingerprint,
            ],
        );
    }
    let age_id = root.join("recipient-age-identity.txt");
    run_ok(
        &dossier,
        &recipient,
        &[
            "key",
            "export-age",
            "--yes",
            "-o",
            age_id.to_str().expect("utf8"),
        ],
    );
    let age_recipient = age_recipient_of(&age_id);

    println!(
        "# dossier-bench on {} ({} cores)",
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "# peers: age {} | rage {}",
        peers.age_version(),
        peers.rage_version()
    );
    println!(
        "{:<8} {:<22} {:>10} {:>10} {:>12}",
        "size", "operation", "seconds", "MB/s", "peak RSS MiB"
    );

    for size in sizes {
        let input = root.join(format!("input-{size}.bin"));
        write_pseudo_random(&input, size);
        let label = human(size);
        let report = |name: &str, m: Measurement| {
            println!(
                "{:<8} {:<22} {:>10.3} {:>10.1} {:>12.1}",
                label,
                name,
                m.seconds,
                size as f64 / 1e6 / m.seconds,
                m.max_rss_kib as f64 / 1024.0
            );
            m
        };
        let sealed = root.join("bundle.dossier");
        let opened = root.join("opened");
        let seal_cmd = || {
            let _ = std::fs::remove_file(&sealed);
            let mut c = Command::new(&dossier);
            c.env("DOSSIER_HOME", &sender)
                .env("DOSSIER_PASSPHRASE", PASSPHRASE)
                .args(["seal", "--to", "th-bench-recipient", "-o"])
                .arg(&sealed)
                .arg(&input);
            c
        };
        let open_cmd = || {
            let _ = std::fs::remove_dir_all(&opened);
            let mut c = Command::new(&dossier);
            c.env("DOSSIER_HOME", &recipient)
                .env("DOSSIER_PASSPHRASE", PASSPHRASE)
                .arg("open")
                .arg(&sealed)
                .arg("-o")
                .arg(&opened);
            c
        };
        let seal = report("dossier seal", median_of(repeat, seal_cmd));
        let open = report("dossier open", median_of(repeat, open_cmd));
        let _ = std::fs::remove_dir_all(&opened);
        let mut ratios = Vec::new();
        for (name, bin) in [("age", peers.age.as_ref()), ("rage", peers.rage.as_ref())] {
            let Some(bin) = bin else { continue };
            let out = root.join(format!("{name}.age"));
            let enc_cmd = || {
                let _ = std::fs::remove_file(&out);
                let mut c = Command::new(bin);
                c.args(["-r", &age_recipient, "-o"]).arg(&out).arg(&input);
                c
            };
            let enc = report(&format!("{name} encrypt"), median_of(repeat, enc_cmd));
            // The same, then fsync of the output as dossier does before renaming it into place.
            let enc_sync_cmd = || {
                let _ = std::fs::remove_file(&out);
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(r#""$0" -r "$1" -o "$2" "$3" && sync "$2""#)
                    .arg(bin)
                    .arg(&age_recipient)
                    .arg(&out)
                    .arg(&input);
                c
            };
            let enc_sync = report(
                &format!("{name} encrypt+fsync"),
                median_of(repeat, enc_sync_cmd),
            );
            let dec_cmd = || {
                let mut c = Command::new(bin);
                c.args(["-d", "-i"])
                    .arg(&age_id)
                    .arg("-o")
                    .arg("/dev/null")
                    .arg(&out);
                c
            };
            let dec = report(&format!("{name} decrypt"), median_of(repeat, dec_cmd));
            ratios.push(format!(
                "seal vs {name}: {:.2}x ({:.2}x vs {name}+fsync); open vs {name} decrypt: {:.2}x",
                enc.seconds / seal.seconds,
                enc_sync.seconds / seal.seconds,
                dec.seconds / open.seconds
            ));
            let _ = std::fs::remove_file(&out);
        }
        for r in ratios {
            println!("{label:<8} ratio (throughput)  {r}");
        }
        let _ = std::fs::remove_file(&sealed);
        let _ = std::fs::remove_file(&input);
    }
}

/// Runs the command `repeat` times (each from a fresh `make`), returns the median run.
fn median_of(repeat: usize, make: impl Fn() -> Command) -> Measurement {
    let mut runs: Vec<Measurement> = (0..repeat).map(|_| measure(&mut make())).collect();
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs.swap_remove(runs.len() / 2)
}

struct Peers {
    age: Option<PathBuf>,
    rage: Option<PathBuf>,
}

impl Peers {
    fn find() -> Self {
        let which = |name: &str| -> Option<PathBuf> {
            let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default();
            if let Some(h) = std::env::var_os("HOME") {
                dirs.push(Path::new(&h).join(".cargo/bin"));
            }
            dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
        };
        Self {
            age: which("age"),
            rage: which("rage"),
        }
    }
    fn version(bin: &Option<PathBuf>) -> String {
        bin.as_ref()
            .and_then(|b| Command::new(b).arg("--version").output().ok())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "not installed (apt-get install -y age / cargo install rage)".into())
    }
    fn age_version(&self) -> String {
        Self::version(&self.age)
    }
    fn rage_version(&self) -> String {
        Self::version(&self.rage)
    }
}

fn run_ok(dossier: &Path, home: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(dossier)
        .env("DOSSIER_HOME", home)
        .env("DOSSIER_PASSPHRASE", PASSPHRASE)
        .args(args)
        .output()
        .expect("run dossier");
    assert!(
        out.status.success(),
        "dossier {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn age_recipient_of(identity_file: &Path) -> String {
    let text = std::fs::read_to_string(identity_file).expect("identity file");
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_owned)
        .expect("export-age writes a public key comment")
}

fn write_pseudo_random(path: &Path, size: u64) {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).expect("create input"),
    );
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write input");
        left -= n as u64;
    }
    f.flush().expect("flush input");
}

fn parse_sizes(s: &str) -> Vec<u64> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            let (num, mult) = match p.chars().last() {
                Some('K') => (&p[..p.len() - 1], 1u64 << 10),
                Some('M') => (&p[..p.len() - 1], 1 << 20),
                Some('G') => (&p[..p.len() - 1], 1 << 30),
                _ => (p, 1),
            };
            num.parse::<u64>()
                .map(|n| n * mult)
                .unwrap_or_else(|_| usage(&format!("bad size {p}")))
        })
        .collect()
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{}G", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}M", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}K", n >> 10),
        n => n.to_string(),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("dossier-bench: {msg}");
    }
    eprintln!("usage: dossier-bench [--sizes 1M,100M,1G] [--repeat 3] [--work DIR]");
    std::process::exit(2);
}
