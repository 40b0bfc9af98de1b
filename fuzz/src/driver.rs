//! The loop: generate or mutate an input, run the target under `catch_unwind`, count.

use crate::targets::Target;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// What a bounded run of one target found.
#[derive(Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Inputs that panicked.
    pub crashes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The first few crashing inputs: (hex, panic message).
    pub failures: Vec<(String, String)>,
}

/// Longest input generated: parsers see a few KiB at most in most of their paths.
const MAX_LEN: usize = 4096;
/// Crashing inputs kept for the report (the count goes on).
const KEEP_FAILURES: usize = 5;

/// Runs `inputs` inputs through `target` from `seed`; never panics itself.
pub fn run(target: &Target, inputs: u64, seed: u64) -> Report {
    let mut rng = fastrand::Rng::with_seed(seed ^ fxhash(target.name));
    let corpus: Vec<Vec<u8>> = (target.corpus)();
    // Panics are expected and caught: keep the default hook from printing every one.
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let mut crashes = 0;
    let mut failures = Vec::new();
    let mut buf = Vec::with_capacity(MAX_LEN);
    for _ in 0..inputs {
        next_input(&mut rng, &corpus, &mut buf);
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&buf))) {
            crashes += 1;
            if failures.len() < KEEP_FAILURES {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push((hex(&buf), msg));
            }
        }
    }
    let elapsed = started.elapsed();
    panic::set_hook(previous);
    Report {
        target: target.name,
        inputs,
        crashes,
        elapsed,
        failures,
    }
}

/// Fills `buf` with the next input: random bytes, or a mutated corpus entry.
fn next_input(rng: &mut fastrand::Rng, corpus: &[Vec<u8>], buf: &mut Vec<u8>) {
    buf.clear();
    if corpus.is_empty() || rng.bool() {
        let len = if rng.u8(..) < 200 {
            rng.usize(..256)
        } else {
            rng.usize(..MAX_LEN)
        };
        buf.extend((0..len).map(|_| rng.u8(..)));
        return;
    }
    buf.extend_from_slice(&corpus[rng.usize(..corpus.len())]);
    for _ in 0..rng.usize(1..6) {
        mutate(rng, corpus, buf);
    }
    buf.truncate(MAX_LEN);
}

/// Bytes that change how text parsers branch.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"-",
    b".",
    b"+",
    b"/",
    b"%",
    b"=",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"{{secret:",
    b"}}",
    b"\xff",
    b"\xe2\x82",
    b"\xf0\x9f\x98\x80",
];

fn mutate(rng: &mut fastrand::Rng, corpus: &[Vec<u8>], buf: &mut Vec<u8>) {
    let at = |rng: &mut fastrand::Rng, buf: &Vec<u8>| rng.usize(..=buf.len());
    match rng.u8(..7) {
        0 if !buf.is_empty() => {
            let i = rng.usize(..buf.len());
            buf[i] ^= 1 << rng.u8(..8);
        }
        1 if !buf.is_empty() => {
            let i = rng.usize(..buf.len());
            buf[i] = rng.u8(..);
        }
        2 if !buf.is_empty() => {
            let i = rng.usize(..buf.len());
            let n = rng.usize(1..=16.min(buf.len() - i));
            buf.drain(i..i + n);
        }
        3 => {
            let i = at(rng, buf);
            let t = TOKENS[rng.usize(..TOKENS.len())];
            buf.splice(i..i, t.iter().copied());
        }
        4 => {
            // Splice a piece of another example in.
            let other = &corpus[rng.usize(..corpus.len())];
            if !other.is_empty() {
                let s = rng.usize(..other.len());
                let e = rng.usize(s..=other.len());
                let i = at(rng, buf);
                buf.splice(i..i, other[s..e].iter().copied());
            }
        }
        5 if !buf.is_empty() => {
            // Repeat a piece (deep nesting, long values).
            let s = rng.usize(..buf.len());
            let e = rng.usize(s..=buf.len().min(s + 32));
            let piece = buf[s..e].to_vec();
            for _ in 0..rng.usize(1..64) {
                buf.splice(s..s, piece.iter().copied());
            }
        }
        _ => {
            let i = at(rng, buf);
            let digits = rng.u64(..).to_string();
            buf.splice(i..i, digits.bytes());
        }
    }
}

/// A stable hash of a target's name, so each target gets its own stream from one seed.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Lower-case hex of bytes.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
