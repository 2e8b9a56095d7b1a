//! HTTP/1.1 codec benchmarks: head scanning + parsing, and chunked decoding, each next to a
//! naive baseline. Every benchmark checks its answer once before it is timed.
//!
//! Run: `cargo bench --bench http -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether::http::{
    ChunkedDecoder, Decoded, HeadKind, HeadLimits, HeadScanner, Method, RequestHead,
};

/// A Chrome-like navigation request, about 600 bytes.
const BROWSER: &[u8] = b"GET /products/search?q=wireless+headphones&sort=price_asc&page=2 HTTP/1.1\r\n\
Host: shop.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://shop.example.com/products\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=4f8a9c2e1b7d; theme=dark\r\n\r\n";

/// A minimal API request, about 80 bytes.
const SMALL: &[u8] =
    b"GET /api/v1/items/42 HTTP/1.1\r\nHost: api.example.com\r\nAccept: application/json\r\n\r\n";

/// The proxy's path for one head that arrived in one read: find its end, parse it.
fn scan_and_parse(buf: &Bytes, limits: &HeadLimits) -> RequestHead {
    let mut scanner = HeadScanner::new();
    let n = scanner
        .scan(buf, limits, HeadKind::Request)
        .expect("valid head")
        .expect("complete head");
    RequestHead::parse(buf.slice(..n), limits).expect("valid head")
}

/// Baseline: httparse alone, the floor under our spans, limits and checks.
fn httparse_only(buf: &[u8]) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; 101];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n + req.headers.len(),
        _ => panic!("invalid head"),
    }
}

/// The head arriving in `step`-byte reads, found by the incremental scanner.
fn incremental_scan(buf: &[u8], step: usize, limits: &HeadLimits) -> usize {
    let mut scanner = HeadScanner::new();
    let mut have = 0;
    loop {
        have = (have + step).min(buf.len());
        if let Some(n) = scanner
            .scan(&buf[..have], limits, HeadKind::Request)
            .expect("valid head")
        {
            return n;
        }
    }
}

/// Baseline: the same reads, each followed by a search for CRLFCRLF from the start.
fn rescan_from_start(buf: &[u8], step: usize) -> usize {
    let mut have = 0;
    loop {
        have = (have + step).min(buf.len());
        if let Some(i) = memchr::memmem::find(&buf[..have], b"\r\n\r\n") {
            return i + 4;
        }
    }
}

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut group = c.benchmark_group("head");
    for (name, raw) in [("browser_600B", BROWSER), ("small_80B", SMALL)] {
        println!("{name}: {} bytes", raw.len());
        let buf = Bytes::from_static(raw);
        // Check the answers before timing them.
        let head = scan_and_parse(&buf, &limits);
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.bytes.len(), raw.len());
        assert!(head.header("host").is_some());
        assert_eq!(httparse_only(raw), raw.len() + head.headers.len());
        assert_eq!(incremental_scan(raw, 16, &limits), raw.len());
        assert_eq!(rescan_from_start(raw, 16), raw.len());

        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(format!("scan+parse/{name}"), |b| {
            b.iter(|| scan_and_parse(black_box(&buf), &limits).headers.len())
        });
        group.bench_function(format!("baseline_httparse_only/{name}"), |b| {
            b.iter(|| httparse_only(black_box(raw)))
        });
        group.bench_function(format!("scan_16B_reads/{name}"), |b| {
            b.iter(|| incremental_scan(black_box(raw), 16, &limits))
        });
        group.bench_function(format!("baseline_memmem_rescan_16B_reads/{name}"), |b| {
            b.iter(|| rescan_from_start(black_box(raw), 16))
        });
    }
    group.finish();
}

/// Chunked encoding of `payload` in `chunk`-byte chunks.
fn encode(payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / chunk * 8 + 8);
    for piece in payload.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// The proxy's loop over one buffer: every Data slice is "sent" (summed here).
/// Returns (data bytes, a checksum of them, bytes consumed).
fn decode(body: &[u8]) -> (usize, u64, usize) {
    let mut decoder = ChunkedDecoder::new();
    let mut pos = 0;
    let (mut len, mut sum) = (0usize, 0u64);
    loop {
        match decoder.decode(&body[pos..]).expect("valid body") {
            Decoded::Data { start, end } => {
                let data = &body[pos + start..pos + end];
                len += data.len();
                // Touch first and last byte as a sender would hand the slice on, not copy it.
                sum += u64::from(data[0]) + u64::from(data[data.len() - 1]);
                pos += end;
            }
            Decoded::Done { consumed } => return (len, sum, pos + consumed),
            Decoded::NeedMore => panic!("truncated body"),
        }
    }
}

/// Baseline: a byte-at-a-time decoder that steps every byte, data included, through one match
/// (what a decoder without the "take min(remaining, input) at once" rule does).
fn naive_decode(body: &[u8]) -> (usize, u64, usize) {
    #[derive(Clone, Copy)]
    enum S {
        Size(u64),
        SizeLf(u64),
        Data(u64),
        DataCr,
        DataLf,
        EndLf,
    }
    let mut state = S::Size(0);
    let (mut len, mut sum) = (0usize, 0u64);
    let mut first = true;
    for (i, &b) in body.iter().enumerate() {
        state = match (state, b) {
            (S::Size(n), b'0'..=b'9') => S::Size(n * 16 + u64::from(b - b'0')),
            (S::Size(n), b'a'..=b'f') => S::Size(n * 16 + u64::from(b - b'a' + 10)),
            (S::Size(n), b'\r') => S::SizeLf(n),
            (S::SizeLf(0), b'\n') => S::EndLf,
            (S::SizeLf(n), b'\n') => {
                first = true;
                S::Data(n)
            }
            (S::Data(n), b) => {
                len += 1;
                if first {
                    sum += u64::from(b);
                    first = false;
                }
                if n == 1 {
                    sum += u64::from(b);
                }
                if n == 1 {
                    S::DataCr
                } else {
                    S::Data(n - 1)
                }
            }
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::Size(0),
            (S::EndLf, b'\r') => S::EndLf,
            (S::EndLf, b'\n') => return (len, sum, i + 1),
            _ => panic!("invalid body"),
        };
    }
    panic!("truncated body")
}

fn chunked(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunked");
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
    for (name, size, chunk) in [
        ("1MiB_in_4KiB_chunks", 1024 * 1024, 4096),
        ("64KiB_in_16B_chunks", 64 * 1024, 16),
    ] {
        let payload = &payload[..size];
        let body = encode(payload, chunk);
        // Check the answers before timing them.
        let want_sum: u64 = payload
            .chunks(chunk)
            .map(|c| u64::from(c[0]) + u64::from(c[c.len() - 1]))
            .sum();
        assert_eq!(decode(&body), (size, want_sum, body.len()));
        assert_eq!(naive_decode(&body), (size, want_sum, body.len()));

        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode(black_box(&body)))
        });
        group.bench_function(format!("baseline_bytewise/{name}"), |b| {
            b.iter(|| naive_decode(black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
