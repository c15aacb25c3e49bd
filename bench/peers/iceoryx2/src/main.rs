//! iceoryx2 peer for xproc's comparison harness (`bench/`).
//!
//! ```text
//! xproc-bench-iceoryx2 throughput --size BYTES --count N  -> {"msgs_per_s": X}
//! xproc-bench-iceoryx2 in-place   --size BYTES --count N  -> {"msgs_per_s": X, "mib_per_s": Y}
//! xproc-bench-iceoryx2 pingpong   --size BYTES --count N  -> {"p50_us": A, "p99_us": B}
//! xproc-bench-iceoryx2 --version                          -> {"iceoryx2": "0.10.0"}
//! ```
//!
//! `--depth D` overrides the subscriber buffer in messages (default: see `default_depth`;
//! 1 for pingpong).
//!
//! Each run prints one line of JSON on stdout and exits 0, or prints one line on stderr and
//! exits 1. This process publishes; it runs itself again (hidden first argument `__subscriber`)
//! as the subscribing process, which reports "ready" and, for the streaming modes, the
//! `CLOCK_MONOTONIC` stamp of its receipt of the last message over its stdout pipe.
//!
//! Every message is `[u8]` of `--size` bytes: a little-endian u64 sequence number, then
//! `'x'` (throughput, pingpong) or `seq as u8` (in-place) in every other byte, written whole
//! into a loaned sample each time.

use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::port::{BackpressureAction, BackpressureInfo, DegradationAction, SendError};
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::port_factory::publish_subscribe;

/// Single-threaded inter-process services (no per-port mutex).
type Svc = ipc::Service;
type Bytes = [u8];
type PubSub = publish_subscribe::PortFactory<Svc, Bytes, ()>;

/// Ping-pong round trips before the timed ones.
const WARMUP: u64 = 1000;
/// A publisher blocked this long on a full subscriber buffer gives up (a subscriber that was
/// killed never drains its buffer, and a blocked send would otherwise wait forever).
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// Empty polls between checks that the other process is still there.
const LIVENESS_POLLS: u32 = 1 << 16;

type Result<T> = std::result::Result<T, String>;

/// Attaches what was being done to any iceoryx2 (or other) error.
trait Context<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Debug> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| format!("{what}: {e:?}"))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Throughput,
    InPlace,
    PingPong,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        match s {
            "throughput" => Ok(Mode::Throughput),
            "in-place" => Ok(Mode::InPlace),
            "pingpong" => Ok(Mode::PingPong),
            _ => Err(format!(
                "unknown mode '{s}' (throughput, in-place, pingpong, --version)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::InPlace => "in-place",
            Mode::PingPong => "pingpong",
        }
    }
}

struct Args {
    mode: Mode,
    size: usize,
    count: u64,
    depth: usize,
    /// Subscriber role only: the services' base name and the publishing parent's pid.
    service: String,
    parent: u32,
}

impl Args {
    fn parse(mode: &str, rest: &[String]) -> Result<Args> {
        let mode = Mode::parse(mode)?;
        let (mut size, mut count, mut depth, mut service, mut parent) = (None, None, None, None, 0);
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--size" => size = Some(number()? as usize),
                "--count" => count = Some(number()?),
                "--depth" => depth = Some(number()? as usize),
                "--service" => service = Some(value.clone()),
                "--parent" => parent = number()? as u32,
                _ => return Err(format!("unknown argument {flag}")),
            }
        }
        let size = size.ok_or("--size BYTES is required")?;
        let count = count.ok_or("--count N is required")?;
        if size < 16 {
            return Err(format!("--size must be at least 16, got {size}"));
        }
        if count == 0 {
            return Err("--count must be at least 1".into());
        }
        let depth = match (mode, depth) {
            (_, Some(d)) if d >= 1 => d,
            (_, Some(_)) => return Err("--depth must be at least 1".into()),
            // One message in flight each way: a deeper buffer would never be used.
            (Mode::PingPong, None) => 1,
            (_, None) => default_depth(size),
        };
        Ok(Args {
            mode,
            size,
            count,
            depth,
            service: service.unwrap_or_default(),
            parent,
        })
    }
}

/// Subscriber buffer in messages: about 8 MiB of payload, at least 4 and at most 1024
/// messages (64 B: 1024, 64 KiB: 128, 1 MiB: 8, 8 MiB: 4), like the 8 MiB / 4-message
/// minimum of xproc's own ring in these benchmarks. The publisher preallocates this many
/// samples plus a few (borrowed and loaned ones) in shared memory.
fn default_depth(size: usize) -> usize {
    ((8 << 20) / size).clamp(4, 1024)
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to. CLOCK_MONOTONIC is system-wide, so the
    // two processes' stamps can be subtracted.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes a whole message in place: the sequence number, then `fill` in every other byte.
fn write_message(buf: &mut [MaybeUninit<u8>], seq: u64, fill: u8) {
    assert!(buf.len() >= 8);
    let p = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `p` points to `buf.len()` writable bytes and both writes stay inside them;
    // write_bytes is a memset.
    unsafe {
        p.cast::<[u8; 8]>().write_unaligned(seq.to_le_bytes());
        std::ptr::write_bytes(p.add(8), fill, buf.len() - 8);
    }
}

fn read_seq(msg: &[u8]) -> u64 {
    u64::from_le_bytes(msg[..8].try_into().unwrap())
}

fn node() -> Result<Node<Svc>> {
    NodeBuilder::new()
        // Built-in defaults rather than whichever iceoryx2.toml the lookup finds
        // (./config/, ~/.config/iceoryx2/, /etc/iceoryx2/): both processes agree, always.
        .config(&Config::default())
        // No SIGINT/SIGTERM handler: the busy loops never look at it, so a handler would
        // only keep the harness from stopping a run.
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .ctx("creating iceoryx2 node")
}

/// Creates (publisher side) or opens (subscriber side) one publish-subscribe service.
fn service(node: &Node<Svc>, name: &str, depth: usize, create: bool) -> Result<PubSub> {
    let builder = node
        .service_builder(&ServiceName::new(name).ctx("service name")?)
        .publish_subscribe::<Bytes>()
        // Safe overflow would let a publisher overwrite the oldest unread sample of a full
        // subscriber buffer: messages lost. Off, a full buffer makes the publisher wait
        // (the publisher's backpressure strategy), so every message is delivered.
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(depth)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .max_nodes(2);
    if create {
        builder.create().ctx(&format!("creating service {name}"))
    } else {
        builder.open().ctx(&format!("opening service {name}"))
    }
}

fn publisher(service: &PubSub, size: usize) -> Result<Publisher<Svc, Bytes, ()>> {
    service
        .publisher_builder()
        .initial_max_slice_len(size)
        // Wait while the subscriber's buffer is full (instead of dropping the sample)...
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        // ...but not forever: fail once one send has waited STALL_LIMIT.
        .set_backpressure_handler(|info: &BackpressureInfo| {
            if info.elapsed_time < STALL_LIMIT {
                BackpressureAction::Retry
            } else {
                BackpressureAction::DiscardDataAndFail
            }
        })
        // A connection that cannot be set up or is corrupted is an error, not a warning.
        .set_degradation_handler(|_, _| DegradationAction::DegradeAndFail)
        .create()
        .ctx("creating publisher")
}

fn subscriber(service: &PubSub, depth: usize) -> Result<Subscriber<Svc, Bytes, ()>> {
    service
        .subscriber_builder()
        .buffer_size(depth)
        .set_degradation_handler(|_, _| DegradationAction::DegradeAndFail)
        .create()
        .ctx("creating subscriber")
}

/// Loans a sample, lets `write` fill all of it in place, sends it; the one subscriber must get it.
fn send(
    publisher: &Publisher<Svc, Bytes, ()>,
    size: usize,
    write: impl FnOnce(&mut [MaybeUninit<u8>]),
) -> Result<()> {
    let mut sample = publisher.loan_slice_uninit(size).ctx("loaning a sample")?;
    write(sample.payload_mut());
    // SAFETY: `write` initialised every byte of the payload.
    let sample = unsafe { sample.assume_init() };
    match sample.send() {
        Ok(1) => Ok(()),
        Ok(_) => Err("a sample was not delivered: the subscriber is gone".into()),
        Err(SendError::UnableToDeliver) => Err(format!(
            "the subscriber took no message for {STALL_LIMIT:?}"
        )),
        Err(e) => Err(format!("sending: {e:?}")),
    }
}

/// Busy-polls for the next sample, as iceoryx2's own benchmarks do: no WaitSet (its wake-up
/// would be a syscall on each side) and no sleeps, so the figures are the transport's.
/// Every LIVENESS_POLLS empty polls, `alive` checks that the other process is still there.
fn receive(
    subscriber: &Subscriber<Svc, Bytes, ()>,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<Sample<Svc, Bytes, ()>> {
    let mut idle = 0u32;
    loop {
        if let Some(sample) = subscriber.receive().ctx("receiving")? {
            return Ok(sample);
        }
        idle = idle.wrapping_add(1);
        if idle.is_multiple_of(LIVENESS_POLLS) {
            alive()?;
        }
    }
}

/// The subscriber process; killed (SIGKILL) and reaped if the publisher side fails first.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(args: &Args, service: &str) -> Result<Peer> {
        let exe = std::env::current_exe().ctx("locating this executable")?;
        let mut child = Command::new(exe)
            .arg("__subscriber")
            .arg(args.mode.name())
            .args([
                "--size",
                &args.size.to_string(),
                "--count",
                &args.count.to_string(),
            ])
            .args(["--depth", &args.depth.to_string(), "--service", service])
            .args(["--parent", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .ctx("starting the subscriber process")?;
        let out = BufReader::new(child.stdout.take().unwrap());
        Ok(Peer { child, out })
    }

    /// The next line the subscriber reports (its stdout pipe).
    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self
            .out
            .read_line(&mut line)
            .ctx("reading from the subscriber")?
            == 0
        {
            let status = self.child.wait().ctx("waiting for the subscriber")?;
            return Err(format!("subscriber process ended early ({status})"));
        }
        Ok(line.trim_end().to_owned())
    }

    fn alive(&mut self) -> Result<()> {
        match self.child.try_wait().ctx("checking on the subscriber")? {
            None => Ok(()),
            Some(status) => Err(format!("subscriber process ended early ({status})")),
        }
    }

    fn finish(mut self) -> Result<()> {
        let status = self.child.wait().ctx("waiting for the subscriber")?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("subscriber process failed ({status})"))
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Startup: the subscriber reports "ready" once its port exists (so it is connected to the
/// publisher already created and reads its buffer); the publisher then connects to it before
/// the clock starts, rather than on the first send. No message is sent before this.
fn wait_connected(
    peer: &mut Peer,
    service: &PubSub,
    publisher: &Publisher<Svc, Bytes, ()>,
) -> Result<()> {
    let line = peer.line()?;
    if line != "ready" {
        return Err(format!("unexpected handshake from the subscriber: {line}"));
    }
    publisher
        .update_connections()
        .ctx("connecting to the subscriber")?;
    match service.dynamic_config().number_of_subscribers() {
        1 => Ok(()),
        n => Err(format!("{n} subscribers connected, expected 1")),
    }
}

/// Fresh names per run, so that runs (and what a crashed run left behind) never collide.
fn base_name() -> String {
    format!("xproc-bench-iceoryx2/{}-{}", std::process::id(), now_ns())
}

/// throughput / in-place, publisher side. Returns (messages/s, MiB/s).
fn stream(args: &Args) -> Result<(f64, f64)> {
    let base = base_name();
    let node = node()?;
    let data = service(&node, &format!("{base}/data"), args.depth, true)?;
    let publisher = publisher(&data, args.size)?;
    let mut peer = Peer::spawn(args, &base)?;
    wait_connected(&mut peer, &data, &publisher)?;

    let start = now_ns();
    for seq in 0..args.count {
        let fill = if args.mode == Mode::InPlace {
            seq as u8
        } else {
            b'x'
        };
        send(&publisher, args.size, |buf| write_message(buf, seq, fill))?;
    }
    let line = peer.line()?;
    let last: u64 = line
        .parse()
        .map_err(|_| format!("bad stamp from the subscriber: {line}"))?;
    peer.finish()?;

    let seconds = last.saturating_sub(start).max(1) as f64 / 1e9;
    let msgs_per_s = args.count as f64 / seconds;
    Ok((msgs_per_s, msgs_per_s * args.size as f64 / (1 << 20) as f64))
}

/// throughput / in-place, subscriber side: every sequence number in order, exactly once.
fn stream_subscriber(args: &Args, alive: impl FnMut() -> Result<()> + Copy) -> Result<()> {
    let node = node()?;
    let data = service(&node, &format!("{}/data", args.service), args.depth, false)?;
    let subscriber = subscriber(&data, args.depth)?;
    report("ready")?;

    let mut last_stamp = 0;
    for expected in 0..args.count {
        let sample = receive(&subscriber, alive)?;
        let msg = sample.payload();
        let seq = read_seq(msg);
        if expected + 1 == args.count {
            last_stamp = now_ns();
        }
        if msg.len() != args.size {
            return Err(format!(
                "message {expected}: {} bytes, expected {}",
                msg.len(),
                args.size
            ));
        }
        if seq != expected {
            return Err(format!("expected sequence number {expected}, got {seq}"));
        }
        match args.mode {
            // Read in place: the sequence number and the last byte the publisher wrote.
            Mode::InPlace if msg[args.size - 1] != seq as u8 => {
                return Err(format!(
                    "message {seq}: last byte {}, expected {}",
                    msg[args.size - 1],
                    seq as u8
                ));
            }
            Mode::Throughput
                if expected + 1 == args.count && msg[8..].iter().any(|&b| b != b'x') =>
            {
                return Err(format!("message {seq}: body corrupted"));
            }
            _ => {}
        }
    }
    report(&last_stamp.to_string())
}

/// pingpong, parent side: round-trip times in nanoseconds of the timed rounds.
fn pingpong(args: &Args) -> Result<Vec<u64>> {
    let base = base_name();
    let node = node()?;
    let ping = service(&node, &format!("{base}/ping"), args.depth, true)?;
    let pong = service(&node, &format!("{base}/pong"), args.depth, true)?;
    let publisher = publisher(&ping, args.size)?;
    let subscriber = subscriber(&pong, args.depth)?;
    let mut peer = Peer::spawn(args, &base)?;
    wait_connected(&mut peer, &ping, &publisher)?;
    subscriber
        .update_connections()
        .ctx("connecting to the echoing publisher")?;

    let mut msg = vec![b'x'; args.size];
    let mut rtts = Vec::with_capacity(args.count as usize);
    for seq in 0..WARMUP + args.count {
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        let t0 = now_ns();
        send(&publisher, args.size, |buf| {
            // SAFETY: MaybeUninit<u8> has u8's layout; every byte gets written.
            let bytes: &[MaybeUninit<u8>] = unsafe { std::mem::transmute(msg.as_slice()) };
            buf.copy_from_slice(bytes)
        })?;
        let reply = receive(&subscriber, || peer.alive())?;
        let t1 = now_ns();
        if reply.payload() != msg.as_slice() {
            return Err(format!(
                "round trip {seq}: the echo differs from the message sent"
            ));
        }
        if seq >= WARMUP {
            rtts.push(t1 - t0);
        }
    }
    peer.finish()?;
    Ok(rtts)
}

/// pingpong, echoing side: copies each message into a loaned sample and sends it back.
fn pingpong_subscriber(args: &Args, alive: impl FnMut() -> Result<()> + Copy) -> Result<()> {
    let node = node()?;
    let ping = service(&node, &format!("{}/ping", args.service), args.depth, false)?;
    let pong = service(&node, &format!("{}/pong", args.service), args.depth, false)?;
    let subscriber = subscriber(&ping, args.depth)?;
    let publisher = publisher(&pong, args.size)?;
    report("ready")?;

    for _ in 0..WARMUP + args.count {
        let sample = receive(&subscriber, alive)?;
        let msg = sample.payload();
        if msg.len() != args.size {
            return Err(format!(
                "ping of {} bytes, expected {}",
                msg.len(),
                args.size
            ));
        }
        send(&publisher, args.size, |buf| {
            // SAFETY: as in `pingpong`.
            let bytes: &[MaybeUninit<u8>] = unsafe { std::mem::transmute(msg) };
            buf.copy_from_slice(bytes)
        })?;
    }
    Ok(())
}

/// One line to the publishing parent, over this process's stdout pipe.
fn report(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .ctx("reporting to the publisher")
}

/// sorted[min(len - 1, floor(p * len))], in microseconds.
fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    let i = ((p * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

/// The iceoryx2 version Cargo resolved, from this project's Cargo.lock (compiled in).
fn iceoryx2_version() -> &'static str {
    let mut lines = include_str!("../Cargo.lock").lines();
    while let Some(line) = lines.next() {
        if line == "name = \"iceoryx2\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \"")?.strip_suffix('"'))
        {
            return v;
        }
    }
    "unknown"
}

fn run(argv: &[String]) -> Result<String> {
    match argv.first().map(String::as_str) {
        None => Err("usage: xproc-bench-iceoryx2 throughput|in-place|pingpong --size BYTES --count N [--depth D] | --version".into()),
        Some("--version") => Ok(format!("{{\"iceoryx2\": \"{}\"}}", iceoryx2_version())),
        Some("__subscriber") => {
            let args = Args::parse(argv.get(1).map_or("", String::as_str), &argv[2..])?;
            let parent = args.parent as libc::pid_t;
            // Orphaned, this process would spin forever: look at its parent now and then.
            let alive = move || {
                // SAFETY: getppid has no preconditions.
                if unsafe { libc::getppid() } == parent {
                    Ok(())
                } else {
                    Err("the publishing process went away".to_owned())
                }
            };
            match args.mode {
                Mode::PingPong => pingpong_subscriber(&args, alive)?,
                _ => stream_subscriber(&args, alive)?,
            }
            Ok(String::new())
        }
        Some(mode) => {
            let args = Args::parse(mode, &argv[1..])?;
            match args.mode {
                Mode::PingPong => {
                    let mut rtts = pingpong(&args)?;
                    rtts.sort_unstable();
                    Ok(format!(
                        "{{\"p50_us\": {:.3}, \"p99_us\": {:.3}}}",
                        percentile_us(&rtts, 0.50),
                        percentile_us(&rtts, 0.99)
                    ))
                }
                _ => {
                    let (msgs_per_s, mib_per_s) = stream(&args)?;
                    Ok(match args.mode {
                        Mode::InPlace => format!("{{\"msgs_per_s\": {msgs_per_s:.1}, \"mib_per_s\": {mib_per_s:.1}}}"),
                        _ => format!("{{\"msgs_per_s\": {msgs_per_s:.1}}}"),
                    })
                }
            }
        }
    }
}

fn main() {
    // Warnings and errors only (IOX2_LOG_LEVEL can ask for more): stderr stays clean.
    set_log_level_from_env_or(LogLevel::Warn);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let who = if argv.first().is_some_and(|a| a == "__subscriber") {
        "xproc-bench-iceoryx2 (subscriber)"
    } else {
        "xproc-bench-iceoryx2"
    };
    // Errors come back up through `run`, so every iceoryx2 port and node has been dropped
    // (its shared memory released) before the process exits.
    match run(&argv) {
        Ok(line) if line.is_empty() => {}
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{who}: {e}");
            std::process::exit(1);
        }
    }
}
