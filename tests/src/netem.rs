//! A small UDP "network emulator" proxy for the bad-network tests (`dossier-netem`).
//!
//! This kernel has no `tc netem`, so delay and reordering come from user space: the proxy
//! listens on one UDP address, forwards every datagram to an upstream address (the relay)
//! and every reply back to the client that sent the datagram it answers, holding each one
//! for a configurable time. Packet loss is best left to nftables in the test's network
//! namespace (it happens in the kernel, where real loss happens), but the proxy can drop at
//! random too.
//!
//! # What it does to traffic
//!
//! - **Delay**: every datagram waits `delay_up` (client → upstream) or `delay_down`
//!   (upstream → client) before it is sent on. With a constant delay order is preserved and
//!   throughput is not limited: a datagram whose time has come is sent at once.
//! - **Reordering**: a fraction (`reorder_percent`) of the datagrams in each direction waits
//!   `reorder_extra` longer, in a second lane, so datagrams received after it overtake it.
//! - **Random drop**: `drop_percent` of the datagrams in each direction are discarded.
//! - **Cut**: on the control command `cut MS` every datagram in either direction is dropped
//!   for MS milliseconds (`cut 0`: until `heal`), including those already waiting in a
//!   delay lane when their time comes — a blackholed path, as when a route flaps or a laptop
//!   leaves the Wi-Fi. Neither side is told; QUIC notices only through its idle time-out.
//!
//! # Bounded memory
//!
//! Each lane is a bounded channel of `queue_packets` datagrams (as a router's queue), and
//! all lanes together hold at most [`MAX_QUEUED_BYTES`]: a datagram that would exceed
//! either is dropped and counted (QUIC's ~1,200-byte datagrams fill 8,192 slots with about
//! 10 MB). At most [`MAX_FLOWS`] clients are tracked, each with a thread and a 64 KiB
//! buffer; a client silent for [`FLOW_IDLE`] is forgotten (its next datagram opens a new
//! flow, which the upstream sees as a new source port — QUIC connection migration).
//!
//! # Control (stdin) and output (stdout)
//!
//! The proxy prints `listening ADDR` once bound, then reads commands from stdin, one per
//! line: `cut MS`, `heal`, `stats` (prints one line: `stats key=value ...` with the
//! counters of [`Stats`]). At end of input it exits, so it never outlives the test that
//! started it with a piped stdin. Threads and blocking sockets only: `std::thread::sleep`
//! keeps sub-millisecond precision for the delay lanes, and nothing here needs a runtime.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most clients (source addresses) tracked at once; datagrams from more are dropped.
pub const MAX_FLOWS: usize = 1024;
/// A flow with no datagram either way for this long is forgotten.
pub const FLOW_IDLE: Duration = Duration::from_secs(120);
/// Most bytes waiting in all delay lanes together.
pub const MAX_QUEUED_BYTES: u64 = 64 << 20;
/// Largest datagram forwarded (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

/// How the proxy treats traffic (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct NetemConfig {
    /// Where clients send to.
    pub listen: SocketAddr,
    /// Where datagrams are forwarded (the relay).
    pub upstream: SocketAddr,
    /// Client → upstream delay.
    pub delay_up: Duration,
    /// Upstream → client delay.
    pub delay_down: Duration,
    /// Percentage (0–100) of datagrams held `reorder_extra` longer, each direction.
    pub reorder_percent: f64,
    /// Extra wait of a reordered datagram.
    pub reorder_extra: Duration,
    /// Percentage (0–100) of datagrams dropped at random, each direction.
    pub drop_percent: f64,
    /// Capacity of each delay lane, in datagrams.
    pub queue_packets: usize,
    /// Seed of the random choices (drop, reorder).
    pub seed: u64,
}

/// Command-line usage of `dossier-netem`.
pub const USAGE: &str = "usage: dossier-netem --upstream ADDR [--listen ADDR] [--delay-ms MS] \
[--delay-up-ms MS] [--delay-down-ms MS] [--reorder-percent P] [--reorder-extra-ms MS] \
[--drop-percent P] [--queue-packets N] [--seed S]\n\
stdin commands: `cut MS` (0: until heal), `heal`, `stats`; end of input stops the proxy";

impl NetemConfig {
    /// Defaults: listen on `127.0.0.1:0`, 150 ms each way, 1 % of datagrams 5 ms late, no
    /// random drop, 8,192 datagrams per lane.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            delay_up: Duration::from_millis(150),
            delay_down: Duration::from_millis(150),
            reorder_percent: 1.0,
            reorder_extra: Duration::from_millis(5),
            drop_percent: 0.0,
            queue_packets: 8192,
            seed: 0x5EED,
        }
    }

    /// Parses the command line (without the program name); the error is for the user.
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let mut upstream = None;
        let mut rest = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            if flag == "--upstream" {
                upstream = Some(parse::<SocketAddr>(flag, value)?);
            } else {
                rest.push((flag.as_str(), value.as_str()));
            }
        }
        let upstream = upstream.ok_or_else(|| format!("--upstream is required\n{USAGE}"))?;
        let mut c = Self::new(upstream);
        for (flag, value) in rest {
            let ms = || parse::<u64>(flag, value).map(Duration::from_millis);
            match flag {
                "--listen" => c.listen = parse(flag, value)?,
                "--delay-ms" => {
                    c.delay_up = ms()?;
                    c.delay_down = c.delay_up;
                }
                "--delay-up-ms" => c.delay_up = ms()?,
                "--delay-down-ms" => c.delay_down = ms()?,
                "--reorder-percent" => c.reorder_percent = percent(flag, value)?,
                "--reorder-extra-ms" => c.reorder_extra = ms()?,
                "--drop-percent" => c.drop_percent = percent(flag, value)?,
                "--queue-packets" => c.queue_packets = parse::<usize>(flag, value)?.max(1),
                "--seed" => c.seed = parse(flag, value)?,
                other => return Err(format!("unknown option {other}\n{USAGE}")),
            }
        }
        Ok(c)
    }
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: cannot parse {value:?}\n{USAGE}"))
}

fn percent(flag: &str, value: &str) -> Result<f64, String> {
    let p: f64 = parse(flag, value)?;
    if (0.0..=100.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{flag} must be between 0 and 100\n{USAGE}"))
    }
}

/// Counters, all since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams sent on to the upstream.
    pub up_packets: AtomicU64,
    /// Bytes sent on to the upstream.
    pub up_bytes: AtomicU64,
    /// Datagrams sent back to clients.
    pub down_packets: AtomicU64,
    /// Bytes sent back to clients.
    pub down_bytes: AtomicU64,
    /// Datagrams held back for reordering.
    pub reordered: AtomicU64,
    /// Datagrams dropped at random.
    pub dropped_random: AtomicU64,
    /// Datagrams dropped because the path was cut.
    pub dropped_cut: AtomicU64,
    /// Datagrams dropped because a lane was full (or too many flows).
    pub dropped_queue: AtomicU64,
    /// Flows (client addresses) opened.
    pub flows: AtomicU64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        write!(
            f,
            "stats up_packets={} up_bytes={} down_packets={} down_bytes={} reordered={} \
             dropped_random={} dropped_cut={} dropped_queue={} flows={}",
            g(&self.up_packets),
            g(&self.up_bytes),
            g(&self.down_packets),
            g(&self.down_bytes),
            g(&self.reordered),
            g(&self.dropped_random),
            g(&self.dropped_cut),
            g(&self.dropped_queue),
            g(&self.flows),
        )
    }
}

/// Parses a `stats ...` line printed by the proxy into `key → value`.
pub fn parse_stats(line: &str) -> HashMap<String, u64> {
    line.trim()
        .strip_prefix("stats ")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// State shared by every thread.
struct Shared {
    config: NetemConfig,
    started: Instant,
    /// Milliseconds since `started` until which the path is cut; 0 none, `u64::MAX` until
    /// `heal`.
    cut_until_ms: AtomicU64,
    stats: Stats,
    /// Bytes in the delay lanes now.
    queued_bytes: AtomicU64,
}

impl Shared {
    fn is_cut(&self) -> bool {
        let until = self.cut_until_ms.load(Ordering::Relaxed);
        until != 0 && (until == u64::MAX || (self.started.elapsed().as_millis() as u64) < until)
    }

    fn cut(&self, ms: u64) {
        let until = if ms == 0 {
            u64::MAX
        } else {
            (self.started.elapsed().as_millis() as u64).saturating_add(ms)
        };
        self.cut_until_ms.store(until, Ordering::Relaxed);
    }
}

/// Where a delayed datagram goes.
enum Target {
    Upstream(Arc<UdpSocket>),
    Client(SocketAddr),
}

struct Datagram {
    due: Instant,
    target: Target,
    data: Vec<u8>,
}

/// One direction's two delay lanes (in order, and late).
#[derive(Clone)]
struct Direction {
    on_time: SyncSender<Datagram>,
    late: SyncSender<Datagram>,
    delay: Duration,
}

/// Per-thread random choices (xorshift64*, seeded; not for anything secret).
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// True with probability `percent` / 100.
    fn roll(&mut self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (r as f64 / (1u64 << 53) as f64) * 100.0 < percent
    }
}

impl Direction {
    /// Applies drop, cut and reordering to one received datagram and queues it.
    fn admit(&self, shared: &Shared, dice: &mut Dice, target: Target, data: Vec<u8>) {
        let stats = &shared.stats;
        if shared.is_cut() {
            stats.dropped_cut.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if dice.roll(shared.config.drop_percent) {
            stats.dropped_random.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        let (lane, due) = if dice.roll(shared.config.reorder_percent) {
            stats.reordered.fetch_add(1, Ordering::Relaxed);
            (&self.late, now + self.delay + shared.config.reorder_extra)
        } else {
            (&self.on_time, now + self.delay)
        };
        let len = data.len() as u64;
        if shared.queued_bytes.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match lane.try_send(Datagram { due, target, data }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A bound proxy, ready to [`Netem::run`].
pub struct Netem {
    shared: Arc<Shared>,
    listener: Arc<UdpSocket>,
}

impl Netem {
    /// Binds the listening socket.
    pub fn bind(config: NetemConfig) -> std::io::Result<Self> {
        let listener = Arc::new(UdpSocket::bind(config.listen)?);
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                started: Instant::now(),
                cut_until_ms: AtomicU64::new(0),
                queued_bytes: AtomicU64::new(0),
                stats: Stats::default(),
            }),
            listener,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts forwarding in background threads, then obeys the `control` commands (lines
    /// without their end), writing `stats` answers to `out`, until `control` ends.
    pub fn run(
        self,
        control: impl IntoIterator<Item = String>,
        mut out: impl Write,
    ) -> std::io::Result<()> {
        let cap = self.shared.config.queue_packets;
        let mut lanes = Vec::new();
        let mut direction = |delay: Duration| {
            let (on_time, rx1) = sync_channel(cap);
            let (late, rx2) = sync_channel(cap);
            lanes.push(rx1);
            lanes.push(rx2);
            Direction {
                on_time,
                late,
                delay,
            }
        };
        let up = direction(self.shared.config.delay_up);
        let down = direction(self.shared.config.delay_down);
        for rx in lanes {
            let shared = Arc::clone(&self.shared);
            let listener = Arc::clone(&self.listener);
            std::thread::spawn(move || send_lane(&shared, &listener, &rx));
        }
        {
            let shared = Arc::clone(&self.shared);
            let listener = Arc::clone(&self.listener);
            std::thread::spawn(move || receive_from_clients(&shared, &listener, &up, &down));
        }
        for line in control {
            let mut words = line.split_whitespace();
            match (words.next(), words.next().map(str::parse::<u64>)) {
                (Some("cut"), Some(Ok(ms))) => self.shared.cut(ms),
                (Some("heal"), None) => self.shared.cut_until_ms.store(0, Ordering::Relaxed),
                (Some("stats"), None) => {
                    writeln!(out, "{}", self.shared.stats)?;
                    out.flush()?;
                }
                (None, _) => {}
                _ => {
                    writeln!(out, "error unknown command {line:?}")?;
                    out.flush()?;
                }
            }
        }
        Ok(())
    }
}

/// Sends each datagram of one lane when its time comes (unless the path is cut by then).
fn send_lane(shared: &Shared, listener: &UdpSocket, rx: &Receiver<Datagram>) {
    while let Ok(d) = rx.recv() {
        let now = Instant::now();
        if d.due > now {
            std::thread::sleep(d.due - now);
        }
        let len = d.data.len() as u64;
        shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        if shared.is_cut() {
            shared.stats.dropped_cut.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (sent, packets, bytes) = match &d.target {
            Target::Upstream(sock) => (
                sock.send(&d.data),
                &shared.stats.up_packets,
                &shared.stats.up_bytes,
            ),
            Target::Client(addr) => (
                listener.send_to(&d.data, addr),
                &shared.stats.down_packets,
                &shared.stats.down_bytes,
            ),
        };
        // A send error (e.g. ICMP unreachable reported on a connected socket) is a lost
        // datagram, as on a real path.
        if sent.is_ok() {
            packets.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(len, Ordering::Relaxed);
        }
    }
}

/// One client's upstream socket and when it was last used.
struct Flow {
    socket: Arc<UdpSocket>,
    last_seen: Arc<Mutex<Instant>>,
}

/// Reads datagrams from clients, opening a flow (an upstream socket and a thread reading
/// its replies) for each new client address.
fn receive_from_clients(
    shared: &Arc<Shared>,
    listener: &UdpSocket,
    up: &Direction,
    down: &Direction,
) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Flow>>> = Arc::default();
    let mut dice = Dice::new(shared.config.seed);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut flow_no = 0u64;
    loop {
        let Ok((n, from)) = listener.recv_from(&mut buf) else {
            continue;
        };
        let socket = {
            let mut table = flows.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(flow) = table.get(&from) {
                *flow.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                Some(Arc::clone(&flow.socket))
            } else if table.len() < MAX_FLOWS {
                flow_no += 1;
                open_flow(shared, &flows, &mut table, from, down, flow_no)
            } else {
                None
            }
        };
        match socket {
            Some(s) => up.admit(shared, &mut dice, Target::Upstream(s), buf[..n].to_vec()),
            None => {
                shared.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open_flow(
    shared: &Arc<Shared>,
    flows: &Arc<Mutex<HashMap<SocketAddr, Flow>>>,
    table: &mut HashMap<SocketAddr, Flow>,
    client: SocketAddr,
    down: &Direction,
    flow_no: u64,
) -> Option<Arc<UdpSocket>> {
    let upstream = shared.config.upstream;
    let bind: SocketAddr = if upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(upstream).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let socket = Arc::new(socket);
    let last_seen = Arc::new(Mutex::new(Instant::now()));
    table.insert(
        client,
        Flow {
            socket: Arc::clone(&socket),
            last_seen: Arc::clone(&last_seen),
        },
    );
    shared.stats.flows.fetch_add(1, Ordering::Relaxed);
    let (shared, flows, down, reader) = (
        Arc::clone(shared),
        Arc::clone(flows),
        down.clone(),
        Arc::clone(&socket),
    );
    std::thread::spawn(move || {
        let mut dice = Dice::new(shared.config.seed ^ flow_no.rotate_left(32));
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match reader.recv(&mut buf) {
                Ok(n) => {
                    *last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    down.admit(
                        &shared,
                        &mut dice,
                        Target::Client(client),
                        buf[..n].to_vec(),
                    );
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let idle = last_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .elapsed();
                    if idle > FLOW_IDLE {
                        flows
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&client);
                        return;
                    }
                }
                // E.g. ECONNREFUSED after an ICMP port unreachable: the relay is down for
                // a moment. Keep the flow; it may come back.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Some(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_the_command_line() {
        let c = NetemConfig::from_args(&args(
            "--upstream 10.0.0.1:4433 --delay-ms 150 --delay-down-ms 20 --reorder-percent 2 \
             --drop-percent 5 --queue-packets 16 --seed 7",
        ))
        .unwrap();
        assert_eq!(c.upstream, "10.0.0.1:4433".parse().unwrap());
        assert_eq!(c.delay_up, Duration::from_millis(150));
        assert_eq!(c.delay_down, Duration::from_millis(20));
        assert_eq!((c.reorder_percent, c.drop_percent), (2.0, 5.0));
        assert_eq!((c.queue_packets, c.seed), (16, 7));
        assert!(NetemConfig::from_args(&args("--delay-ms 1")).is_err());
        assert!(NetemConfig::from_args(&args("--upstream 1.2.3.4:5 --drop-percent 101")).is_err());
        assert!(NetemConfig::from_args(&args("--upstream 1.2.3.4:5 --bogus 1")).is_err());
    }

    #[test]
    fn dice_roll_about_the_asked_percentage() {
        let mut d = Dice::new(42);
        let hits = (0..100_000).filter(|_| d.roll(5.0)).count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| d.roll(0.0)));
        assert!((0..1000).all(|_| d.roll(100.0)));
    }

    /// Forwards both ways with the configured delay, reorders, cuts and heals.
    #[test]
    fn forwards_delays_reorders_and_cuts() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        });
        let mut config = NetemConfig::new(echo_addr);
        config.delay_up = Duration::from_millis(40);
        config.delay_down = Duration::from_millis(40);
        config.reorder_percent = 0.0;
        let netem = Netem::bind(config).unwrap();
        let addr = netem.local_addr().unwrap();
        let shared = Arc::clone(&netem.shared);
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || netem.run(rx, std::io::sink()));

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let started = Instant::now();
        client.send_to(b"ping", addr).unwrap();
        let mut buf = [0u8; 16];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert!(
            started.elapsed() >= Duration::from_millis(80),
            "delayed both ways"
        );

        tx.send("cut 0".into()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        client.send_to(b"lost", addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(client.recv(&mut buf).is_err(), "nothing passes a cut");
        tx.send("heal".into()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        client.send_to(b"back", addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"back");
        assert!(shared.stats.dropped_cut.load(Ordering::Relaxed) >= 1);
        let line = shared.stats.to_string();
        assert_eq!(parse_stats(&line)["up_packets"], 2, "{line}");
    }
}
