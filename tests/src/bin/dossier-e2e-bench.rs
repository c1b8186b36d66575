//! End-to-end benchmark on loopback with the real release binaries, in one run:
//!
//! 1. raw quinn: one QUIC stream carrying N bytes client→server (self-signed certificate,
//!    rustls with ring, TLS 1.3, default transport settings), as a ceiling;
//! 2. end to end: an N-byte file sealed and queued by `dossier send`, uploaded by
//!    `dossier sync` through `dossier-relay serve`, downloaded and verified by `dossier sync`
//!    at the recipient; MB/s and peak RSS of each process, and the ratio to raw quinn;
//! 3. many small (4 KiB) bundles sent one `dossier send` after another while the recipient
//!    runs `dossier sync --watch`: bundles/s and p50/p99 send-to-inbox latency.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/dossier-e2e-bench [--size 1G] [--small 2000] [--repeat 3]
//! ```
//!
//! Peak RSS of a short-lived command comes from `getrusage(RUSAGE_CHILDREN)` in a fresh copy
//! of this program that runs only that command (`--measure`); the relay's comes from
//! `VmHWM` in `/proc/<pid>/status` read just before it is stopped.

// A benchmark reports on stdout by design.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dossier_tests::measure::{Measurement, measure, measure_child};
use dossier_tests::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure") {
        measure_child(&args[2..]);
        return;
    }
    // Point the test helpers at the binaries beside this one (skipping their staleness check,
    // which compares source mtimes meant for debug test runs). Environment changes need a
    // fresh process, so re-run self with them set.
    if std::env::var_os(DOSSIER_BIN_ENV).is_none() {
        let me = std::env::current_exe().expect("own path");
        let dir = me.parent().expect("own directory").to_path_buf();
        let status = Command::new(&me)
            .args(&args[1..])
            .env(DOSSIER_BIN_ENV, dir.join("dossier"))
            .env(DOSSIER_RELAY_BIN_ENV, dir.join("dossier-relay"))
            .status()
            .expect("re-running self");
        std::process::exit(status.code().unwrap_or(1));
    }
    let mut size: u64 = 1 << 30;
    let mut small: usize = 2000;
    let mut repeat: usize = 3;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => {
                size = it
                    .next()
                    .and_then(|s| parse_size(s))
                    .unwrap_or_else(|| usage("--size needs a value such as 1G or 256M"))
            }
            "--small" => {
                small = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage("--small needs a number"))
            }
            "--repeat" => {
                repeat = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--repeat needs a number of rounds (1 or more)"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    println!(
        "dossier end-to-end benchmark: size {} ({size} bytes), {small} small bundles of 4 KiB",
        human(size)
    );
    println!("dossier: {}", dossier_bin().display());
    println!("relay:   {}", relay_bin().display());
    println!("cpu:     {}", cpu_model());
    println!();

    // Raw quinn on this machine varies a lot from one run to the next (scheduling of the
    // two endpoints on two cores), so both sides are measured `repeat` times, interleaved,
    // and the medians compared.
    let mut raws = Vec::new();
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for round in 1..=repeat {
        println!("--- round {round} of {repeat}");
        let raw = raw_quinn(size);
        let e2e = end_to_end(size);
        report_round(size, raw, &e2e);
        raws.push(mb_per_s(size, raw));
        ups.push(mb_per_s(e2e.length, e2e.upload.seconds));
        downs.push(mb_per_s(e2e.length, e2e.download.seconds));
        println!();
    }
    let (raw, up, down) = (median(&mut raws), median(&mut ups), median(&mut downs));
    println!(
        "median of {repeat}: raw quinn {raw:.1} MB/s, upload {up:.1} MB/s ({:.2}x), download+verify {down:.1} MB/s ({:.2}x)",
        up / raw,
        down / raw
    );

    if small > 0 {
        println!();
        small_bundles(small);
    }
}

fn report_round(size: u64, raw: f64, e2e: &EndToEnd) {
    println!(
        "raw quinn, one stream, {}: {:.2} s, {:.1} MB/s",
        human(size),
        raw,
        mb_per_s(size, raw)
    );

    println!();
    println!("end to end, {} bundle:", human(size));
    println!(
        "  {:<44} {:>9} {:>10} {:>12} {:>9} {:>10}",
        "step", "seconds", "MB/s", "peak RSS", "CPU s", "relay CPU"
    );
    let row = |name: &str, m: &Measurement, bytes: u64, relay_cpu: f64| {
        println!(
            "  {:<44} {:>9.2} {:>10.1} {:>8} MiB {:>9.2} {:>10.2}",
            name,
            m.seconds,
            mb_per_s(bytes, m.seconds),
            m.max_rss_kib / 1024,
            m.cpu_seconds,
            relay_cpu,
        );
    };
    row(
        "dossier send (seal + queue, relay down)",
        &e2e.send,
        e2e.input,
        0.0,
    );
    row(
        "dossier sync at sender (upload)",
        &e2e.upload,
        e2e.length,
        e2e.relay_cpu_upload,
    );
    row(
        "dossier sync at recipient (download+verify)",
        &e2e.download,
        e2e.length,
        e2e.relay_cpu_download,
    );
    println!(
        "  {:<44} {:>9} {:>10} {:>9} MiB",
        "dossier-relay serve (whole run)",
        "-",
        "-",
        e2e.relay_hwm_kib / 1024
    );
    println!("  bundle length on the wire: {} bytes", e2e.length);
    println!(
        "  ratio to raw quinn: upload {:.2}x, download+verify {:.2}x",
        mb_per_s(e2e.length, e2e.upload.seconds) / mb_per_s(size, raw),
        mb_per_s(e2e.length, e2e.download.seconds) / mb_per_s(size, raw)
    );
    println!("  (the send row includes the node's 1 s connect time-out to a relay that is down)");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Results of the large transfer.
struct EndToEnd {
    input: u64,
    length: u64,
    send: Measurement,
    upload: Measurement,
    download: Measurement,
    relay_hwm_kib: u64,
    /// Relay CPU seconds while the sender uploaded.
    relay_cpu_upload: f64,
    /// Relay CPU seconds while the recipient downloaded.
    relay_cpu_download: f64,
}

// ---------------------------------------------------------------------------------------------
// Raw quinn

/// Seconds for one stream to carry `size` bytes client→server, until the server has read
/// them all and said so.
fn raw_quinn(size: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["bench.local".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let cert_der = cert.der().clone();
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );

        let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key_der)
            .expect("server certificate");
        server_tls.alpn_protocols = vec![b"bench".to_vec()];
        let server_quic =
            quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).expect("QUIC server");
        let server_config = quinn::ServerConfig::with_crypto(Arc::new(server_quic));
        let server = quinn::Endpoint::server(
            server_config,
            "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
        )
        .expect("server endpoint");
        let server_addr = server.local_addr().expect("server address");

        let server_task = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("connection");
            let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
            let mut buf = vec![0u8; 1 << 20];
            let mut got: u64 = 0;
            while let Some(n) = recv.read(&mut buf).await.expect("read") {
                got += n as u64;
            }
            send.write_all(&got.to_be_bytes()).await.expect("answer");
            send.finish().expect("finish");
            let _ = send.stopped().await;
            conn.closed().await;
        });

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert_der).expect("root");
        let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client_tls.alpn_protocols = vec![b"bench".to_vec()];
        let client_quic =
            quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).expect("QUIC client");
        let mut client =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(client_quic)));

        let started = Instant::now();
        let conn = client
            .connect(server_addr, "bench.local")
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        let chunk = pseudo_random_bytes(7, 1 << 20);
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            send.write_all(&chunk[..n]).await.expect("write");
            left -= n as u64;
        }
        send.finish().expect("finish");
        let answer = recv.read_to_end(16).await.expect("answer");
        let secs = started.elapsed().as_secs_f64();
        let got = u64::from_be_bytes(answer.try_into().expect("8 bytes"));
        assert_eq!(got, size, "the server received everything");
        conn.close(0u32.into(), b"done");
        let _ = server_task.await;
        client.wait_idle().await;
        secs
    })
}

// ---------------------------------------------------------------------------------------------
// End to end

fn end_to_end(size: u64) -> EndToEnd {
    let lab = Lab::new();
    let sender = lab.coordinator();
    let recipient = lab.clinic();
    sender.pin_both_ways(&recipient);
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut relay = RelayProcess::init_on(&lab, &addr);
    relay.enroll(&sender);
    relay.enroll(&recipient);
    for n in [&sender, &recipient] {
        n.relay_set(&addr, &relay.pin).ok();
    }
    sender.set_connect_timeout(1);

    let input = lab.fresh_dir("in").join("imaging-series.bin");
    write_pseudo_random(&input, size);

    // Seal and queue with the relay down, so the upload can be timed on its own.
    let input_arg = input.to_str().expect("UTF-8 path");
    let send = measure(&mut sender.command(&["send", "--to", CLINIC_ID, "--json", input_arg]));
    let outbox = sender.outbox();
    let length = outbox[0]["length"].as_u64().expect("outbox length");

    relay.start();
    let relay_pid = relay.pid().expect("relay running");
    let cpu_before_upload = cpu_seconds_of(relay_pid);
    let upload = measure(&mut sender.command(&["sync", "--json"]));
    let cpu_after_upload = cpu_seconds_of(relay_pid);
    let state = &sender.outbox()[0]["state"];
    assert!(
        state == "accepted" || state == "delivered",
        "the bundle was accepted: {state}"
    );
    let download = measure(&mut recipient.command(&["sync", "--json"]));
    let cpu_after_download = cpu_seconds_of(relay_pid);
    assert_eq!(recipient.inbox().len(), 1, "the bundle arrived");
    let relay_hwm_kib = relay.pid().map(vm_hwm_kib).unwrap_or(0);
    relay.stop();
    EndToEnd {
        input: size,
        length,
        send,
        upload,
        download,
        relay_hwm_kib,
        relay_cpu_upload: cpu_after_upload - cpu_before_upload,
        relay_cpu_download: cpu_after_download - cpu_after_upload,
    }
}

// ---------------------------------------------------------------------------------------------
// Small bundles

fn small_bundles(count: usize) {
    let lab = Lab::new();
    let sender = lab.coordinator();
    let recipient = lab.clinic();
    sender.pin_both_ways(&recipient);
    let mut relay = RelayProcess::init(&lab);
    relay.enroll(&sender);
    relay.enroll(&recipient);
    relay.start();
    sender.use_relay(&relay);
    recipient.use_relay(&relay);

    let mut watch = recipient
        .command(&["sync", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting sync --watch");
    // Let the watcher connect before the clock starts.
    std::thread::sleep(Duration::from_secs(2));

    let dir = lab.fresh_dir("small");
    let inputs: Vec<PathBuf> = (0..count)
        .map(|i| {
            let p = dir.join(format!("note-{i:05}.bin"));
            write_file(&p, &pseudo_random_bytes(i as u64 + 1, 4096));
            p
        })
        .collect();

    // A poller notes when each bundle id first shows up in the recipient's inbox directory.
    let inbox_dir = recipient.home.join("inbox");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let poller = std::thread::spawn(move || {
        let mut seen: HashMap<String, Instant> = HashMap::new();
        loop {
            let now = Instant::now();
            for name in names_under(&inbox_dir) {
                seen.entry(name).or_insert(now);
            }
            if stop_rx.try_recv().is_ok() {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let t0 = Instant::now();
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(count);
    for p in &inputs {
        let at = Instant::now();
        let doc = sender.send(&[CLINIC_ID], &[], &[p.as_path()]);
        let id = doc["bundle_id"].as_str().expect("bundle id").to_owned();
        sent.push((id, at));
    }
    let sends_done = t0.elapsed().as_secs_f64();

    // Wait until every id has been seen (or give up after a minute without progress).
    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox_dir = recipient.home.join("inbox");
    loop {
        let names = names_under(&inbox_dir);
        let missing = sent
            .iter()
            .filter(|(id, _)| !names.iter().any(|n| n.contains(id.as_str())))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(20));
    let _ = stop_tx.send(());
    let seen = poller.join().expect("poller");
    let _ = watch.kill();
    let _ = watch.wait();
    let relay_hwm_kib = relay.pid().map(vm_hwm_kib).unwrap_or(0);
    relay.stop();

    let mut latencies: Vec<f64> = Vec::new();
    let mut last_arrival = t0;
    for (id, at) in &sent {
        let first = seen
            .iter()
            .filter(|(name, _)| name.contains(id.as_str()))
            .map(|(_, t)| *t)
            .min();
        if let Some(t) = first {
            latencies.push(t.saturating_duration_since(*at).as_secs_f64() * 1000.0);
            last_arrival = last_arrival.max(t);
        }
    }
    let inbox_count = recipient.inbox().len();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i]
    };
    let total = last_arrival.duration_since(t0).as_secs_f64();
    println!("{count} small bundles (4 KiB each), recipient online with `sync --watch`:");
    println!(
        "  arrived {} of {count} (inbox --json lists {inbox_count})",
        latencies.len()
    );
    println!(
        "  sends took {sends_done:.2} s ({:.1} sends/s, one `dossier send` process each)",
        count as f64 / sends_done
    );
    println!(
        "  first send to last arrival {total:.2} s: {:.1} bundles/s",
        latencies.len() as f64 / total
    );
    println!(
        "  send-to-inbox latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "  (from just before each `send` to the first 2 ms poll of the recipient's inbox \
         directory that shows the bundle; resolution about 2 ms plus directory-listing time)"
    );
    println!("  relay peak RSS: {} MiB", relay_hwm_kib / 1024);
}

/// Every file and directory name under `dir`, recursively (missing directory: none).
fn names_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "incoming" {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
            out.push(name);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// `VmHWM` (peak resident set) of a running process, in KiB (0 if unreadable).
/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`.
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn write_pseudo_random(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create input"));
    let chunk = pseudo_random_bytes(0xE2E, 1 << 20);
    let mut left = size;
    let mut round: u8 = 0;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        // Vary each MiB a little so no two are identical.
        let mut block = chunk[..n].to_vec();
        block[0] = round;
        round = round.wrapping_add(1);
        f.write_all(&block).expect("write input");
        left -= n as u64;
    }
    f.flush().expect("flush input");
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult).filter(|n| *n > 0)
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn human(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 {
        format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} B")
    }
}

fn cpu_model() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

fn usage(msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("dossier-e2e-bench: {msg}");
    }
    eprintln!("usage: dossier-e2e-bench [--size 1G] [--small 2000] [--repeat 3]");
    std::process::exit(2);
}
