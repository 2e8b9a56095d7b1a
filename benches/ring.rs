//! Replay ring: appending events (with eviction at the bound) and finding + replaying the
//! events after a Last-Event-ID, against a naive baseline (a Vec of owned copies searched
//! linearly). Each benchmark checks its answer before it is timed.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether::sse::framer::EventId;
use tether::sse::ring::{ReplayRing, RingEvent};
use tether::sse::ring_batch::RingBatch;

/// A ring event as the relay records it (a slice that fills its read: held = its length).
fn event(id: &Bytes, raw: &Bytes) -> RingEvent {
    // The id inside the event's bytes, as the framer hands it over ("id: N\n..." at offset 4).
    debug_assert_eq!(&raw[4..4 + id.len()], &id[..]);
    RingEvent::new(
        raw.clone(),
        Some(&raw[4..4 + id.len()]),
        raw.len() as u32,
        false,
    )
}

/// A realistic stream: ~200-byte events with numeric ids.
fn events(n: usize) -> Vec<(Bytes, Bytes)> {
    (1..=n)
        .map(|i| {
            let id = Bytes::from(i.to_string());
            let raw = Bytes::from(format!(
                "id: {i}\ndata: {{\"seq\":{i},\"text\":\"{}\"}}\n\n",
                "x".repeat(160)
            ));
            (id, raw)
        })
        .collect()
}

/// The obvious alternative: copy every event, search ids linearly.
struct NaiveRing {
    events: Vec<(String, Vec<u8>)>,
    cap: usize,
}

impl NaiveRing {
    fn push(&mut self, id: &[u8], raw: &[u8]) {
        if self.events.len() == self.cap {
            self.events.remove(0);
        }
        self.events
            .push((String::from_utf8_lossy(id).into_owned(), raw.to_vec()));
    }
    fn after(&self, id: &str) -> Vec<Vec<u8>> {
        match self.events.iter().position(|(i, _)| i == id) {
            Some(p) => self.events[p + 1..]
                .iter()
                .map(|(_, r)| r.clone())
                .collect(),
            None => Vec::new(),
        }
    }
}

/// A read buffer and its events' (start, length, id length).
type Read = (Bytes, Vec<(usize, usize, u32)>);

fn append(c: &mut Criterion) {
    let evs = events(10_000);
    let mut group = c.benchmark_group("ring_append");
    group.throughput(Throughput::Elements(evs.len() as u64));
    // Check: 10k pushes into a 1024-slot ring keep the newest 1024.
    let mut check = ReplayRing::new(1024, 4 << 20);
    for (id, raw) in &evs {
        check.push(event(id, raw));
    }
    assert_eq!(check.len(), 1024);
    assert_eq!(check.newest_upstream_id().as_deref(), Some(&b"10000"[..]));
    group.bench_function("tether_1024", |b| {
        b.iter(|| {
            let mut ring = ReplayRing::new(1024, 4 << 20);
            for (id, raw) in &evs {
                ring.push(event(id, raw));
            }
            black_box(ring.len())
        })
    });
    // As the relay records: reads of EVENTS_PER_READ events, each read one buffer, its events
    // recorded in one batch.
    const EVENTS_PER_READ: usize = 250;
    let reads: Vec<Read> = evs
        .chunks(EVENTS_PER_READ)
        .map(|chunk| {
            let mut buf = Vec::new();
            let mut spans = Vec::new();
            for (id, raw) in chunk {
                spans.push((buf.len(), raw.len(), id.len() as u32));
                buf.extend_from_slice(raw);
            }
            (Bytes::from(buf), spans)
        })
        .collect();
    let record_reads = |ring: &mut ReplayRing, batch: &mut RingBatch| {
        for (read, spans) in &reads {
            for &(start, len, id_len) in spans {
                let id = EventId::In {
                    start: 4,
                    len: id_len,
                };
                batch.add_in(read, start, len, id, false);
            }
            batch.seal(read, read.len());
            ring.push_batch(batch);
        }
    };
    let mut check = ReplayRing::new(1024, 4 << 20);
    record_reads(&mut check, &mut RingBatch::default());
    assert_eq!(check.len(), 1024);
    assert_eq!(check.newest_upstream_id().as_deref(), Some(&b"10000"[..]));
    group.bench_function("tether_1024_reads_of_250", |b| {
        let mut batch = RingBatch::default();
        b.iter(|| {
            let mut ring = ReplayRing::new(1024, 4 << 20);
            record_reads(&mut ring, &mut batch);
            black_box(ring.len())
        })
    });
    // A quiet stream's reads: one event each, one batch per read (the latency load's case).
    let record_singles = |ring: &mut ReplayRing, batch: &mut RingBatch| {
        for (id, raw) in &evs {
            let id = EventId::In {
                start: 4,
                len: id.len() as u32,
            };
            batch.add_in(raw, 0, raw.len(), id, false);
            batch.seal(raw, raw.len());
            ring.push_batch(batch);
        }
    };
    let mut check = ReplayRing::new(1024, 4 << 20);
    record_singles(&mut check, &mut RingBatch::default());
    assert_eq!(check.len(), 1024);
    assert_eq!(check.newest_upstream_id().as_deref(), Some(&b"10000"[..]));
    group.bench_function("tether_1024_reads_of_1", |b| {
        let mut batch = RingBatch::default();
        b.iter(|| {
            let mut ring = ReplayRing::new(1024, 4 << 20);
            record_singles(&mut ring, &mut batch);
            black_box(ring.len())
        })
    });
    group.bench_function("naive_copy_1024", |b| {
        b.iter(|| {
            let mut ring = NaiveRing {
                events: Vec::with_capacity(1024),
                cap: 1024,
            };
            for (id, raw) in &evs {
                ring.push(id, raw);
            }
            black_box(ring.events.len())
        })
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let evs = events(1024);
    let mut ring = ReplayRing::new(1024, 4 << 20);
    let mut naive = NaiveRing {
        events: Vec::new(),
        cap: 1024,
    };
    for (id, raw) in &evs {
        ring.push(event(id, raw));
        naive.push(id, raw);
    }
    let mut group = c.benchmark_group("ring_replay");
    for missed in [10usize, 500] {
        let from = (1024 - missed).to_string();
        // Check both give the same events.
        let Some(seq) = ring.seq_of(from.as_bytes()) else {
            panic!("id in ring")
        };
        let ours: Vec<Bytes> = ring.after(seq).map(|e| e.bytes()).collect();
        let theirs = naive.after(&from);
        assert_eq!(ours.len(), missed);
        assert!(ours.iter().zip(&theirs).all(|(a, b)| a[..] == b[..]));
        group.throughput(Throughput::Elements(missed as u64));
        group.bench_with_input(BenchmarkId::new("tether", missed), &from, |b, from| {
            b.iter(|| {
                let Some(seq) = ring.seq_of(from.as_bytes()) else {
                    unreachable!()
                };
                black_box(ring.after(seq).map(|e| e.bytes()).collect::<Vec<Bytes>>())
            })
        });
        group.bench_with_input(BenchmarkId::new("naive", missed), &from, |b, from| {
            b.iter(|| black_box(naive.after(from)))
        });
    }
    group.finish();
}

criterion_group!(benches, append, replay);
criterion_main!(benches);
