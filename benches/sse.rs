//! SSE framing throughput (bytes/s): `EventFramer` against a naive byte-at-a-time state machine
//! that copies every block, on realistic streams (100-500 byte events, LF and CRLF, 16 KiB pieces)
//! and adversarial ones (1-byte pieces; one 64 KiB line). Every case checks its block count
//! before it is timed.
//!
//! Run: `cargo bench --bench sse -- --warm-up-time 1 --measurement-time 3`

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether::sse::{EventFramer, SseBlock, DEFAULT_MAX_EVENT_BYTES};

/// Read size of the realistic cases: what one socket read of a busy stream typically holds.
const READ_PIECE: usize = 16 * 1024;
/// Size of the realistic streams.
const STREAM_BYTES: usize = 4 * 1024 * 1024;
/// Size of the 1-byte-piece event stream (each byte is a `feed` call).
const TRICKLE_BYTES: usize = 256 * 1024;
/// The long line of the "quadratic killer" case.
const LONG_LINE: usize = 64 * 1024;

/// Events of 100-500 bytes as MCP/LLM servers send them: id, event, one JSON data line.
/// Returns the body and its event count.
fn realistic(eol: &str, total: usize) -> (Vec<u8>, usize) {
    let mut body = Vec::with_capacity(total + 600);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut events = 0;
    while body.len() < total {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let fill = 40 + (seed % 400) as usize;
        let text = "token ".repeat(fill / 6 + 1);
        body.extend_from_slice(format!("id: {events}{eol}event: message{eol}").as_bytes());
        let data = format!(
            r#"data: {{"jsonrpc":"2.0","method":"progress","params":{{"text":"{}"}}}}"#,
            &text[..fill]
        );
        body.extend_from_slice(data.as_bytes());
        body.extend_from_slice(format!("{eol}{eol}").as_bytes());
        if events % 16 == 0 {
            body.extend_from_slice(format!(": keep-alive{eol}{eol}").as_bytes());
            events += 1;
        }
        events += 1;
    }
    (body, events)
}

fn pieces(body: &[u8], size: usize) -> Vec<Bytes> {
    let whole = Bytes::copy_from_slice(body);
    (0..body.len())
        .step_by(size)
        .map(|at| whole.slice(at..(at + size).min(body.len())))
        .collect()
}

/// Frames `pieces` with `EventFramer`; returns the number of blocks.
fn tether_blocks(pieces: &[Bytes]) -> usize {
    let mut framer = EventFramer::new(DEFAULT_MAX_EVENT_BYTES);
    let mut out: Vec<SseBlock> = Vec::with_capacity(64);
    let mut n = 0;
    for piece in pieces {
        framer.feed(piece.clone(), &mut out).expect("within limit");
        n += out.len();
        out.clear();
    }
    framer.finish_into(&mut out);
    n + out.len()
}

/// The naive baseline: one byte at a time, every block copied into its own Vec.
#[derive(Default)]
struct NaiveFramer {
    block: Vec<u8>,
    line_start: usize,
    /// The last byte was a CR ending a line; `Some(true)` when that line was blank.
    after_cr: Option<bool>,
    fires: bool,
}

impl NaiveFramer {
    fn feed(&mut self, piece: &[u8], out: &mut Vec<(Vec<u8>, bool)>) {
        for &b in piece {
            if let Some(blank) = self.after_cr.take() {
                if b == b'\n' {
                    self.block.push(b);
                    self.line_start = self.block.len();
                    if blank {
                        self.emit(out);
                    }
                    continue;
                }
                if blank {
                    self.emit(out);
                }
            }
            self.block.push(b);
            if b == b'\n' || b == b'\r' {
                let line = &self.block[self.line_start..self.block.len() - 1];
                let blank = line.is_empty();
                self.fires |= line.starts_with(b"data");
                self.line_start = self.block.len();
                if b == b'\r' {
                    self.after_cr = Some(blank);
                } else if blank {
                    self.emit(out);
                }
            }
        }
    }

    fn emit(&mut self, out: &mut Vec<(Vec<u8>, bool)>) {
        out.push((
            std::mem::take(&mut self.block),
            std::mem::take(&mut self.fires),
        ));
        self.line_start = 0;
    }
}

fn naive_blocks(pieces: &[Bytes]) -> usize {
    let mut framer = NaiveFramer::default();
    let mut out = Vec::with_capacity(64);
    let mut n = 0;
    for piece in pieces {
        framer.feed(piece, &mut out);
        n += out.len();
        out.clear();
    }
    n + usize::from(framer.after_cr == Some(true))
}

fn bench(c: &mut Criterion) {
    let (lf, lf_events) = realistic("\n", STREAM_BYTES);
    let (crlf, crlf_events) = realistic("\r\n", STREAM_BYTES);
    let (trickle, trickle_events) = realistic("\n", TRICKLE_BYTES);
    let mut long = b"data: ".to_vec();
    long.resize(6 + LONG_LINE, b'a');
    long.extend_from_slice(b"\n\n");
    let cases: Vec<(&str, Vec<Bytes>, usize)> = vec![
        ("lf_events_16k_pieces", pieces(&lf, READ_PIECE), lf_events),
        (
            "crlf_events_16k_pieces",
            pieces(&crlf, READ_PIECE),
            crlf_events,
        ),
        ("lf_events_1b_pieces", pieces(&trickle, 1), trickle_events),
        ("line_64k_1b_pieces", pieces(&long, 1), 1),
        ("line_64k_16k_pieces", pieces(&long, READ_PIECE), 1),
    ];
    let mut group = c.benchmark_group("sse_framing");
    for (name, input, blocks) in &cases {
        // Check the answer before timing it.
        assert_eq!(tether_blocks(input), *blocks, "tether {name}");
        assert_eq!(naive_blocks(input), *blocks, "naive {name}");
        let bytes: usize = input.iter().map(Bytes::len).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::new("tether", name), input, |b, input| {
            b.iter(|| tether_blocks(black_box(input)))
        });
        group.bench_with_input(BenchmarkId::new("naive", name), input, |b, input| {
            b.iter(|| naive_blocks(black_box(input)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
