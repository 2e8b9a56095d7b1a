//! The store's writes encoded by hand as RESP (the Redis protocol), straight into one reused
//! buffer: no `redis::Cmd` per event (each allocates its argument vectors and is then encoded a
//! second time into the pipeline's bytes).
//!
//! A command is an array of bulk strings (RESP2, which every Redis speaks before and after
//! `HELLO`):
//!
//! ```text
//! *<number of arguments>\r\n
//! $<byte length>\r\n<bytes>\r\n          (once per argument; bytes are copied as they are,
//!                                          binary-safe: \r\n inside needs no escaping)
//! ```
//!
//! What a pipeline holds (`Pipeline::encode`): one `XADD` per event, in the order the events were
//! taken (so each stream's events stay in their recorded order), then per stream of the batch, in
//! the order the streams were first seen, its `XTRIM` (only a stream with TRIM_ONCE_FROM events or
//! more in the batch: its `XADD`s then carry no `MAXLEN ~`) and its `PEXPIRE`.

use std::collections::HashMap;

use super::key::StoreKey;
use super::read::{FIELD_ASSIGNED, FIELD_DATA, FIELD_END, FIELD_ID, FIELD_LINEAGE};
use super::writer::Record;

/// A stream with at least this many events in one pipeline gets its `XADD`s without `MAXLEN ~`
/// and one `XTRIM <key> MAXLEN ~ <max>` after them: Redis then parses three arguments fewer per
/// event and trims once. Measured on this machine's Redis 7.0, 75k events/s in pipelines of 150
/// events of one stream: 1.94 µs of Redis CPU per event with `MAXLEN ~` in each `XADD`, 1.56
/// with one `XTRIM` (perf/NOTES.md, "Replay store on the per-event path"). With fewer events
/// the `XTRIM` would cost about what it saves, so they trim as they add, as before.
pub(super) const TRIM_ONCE_FROM: usize = 4;

/// Appends one event's command:
/// `XADD <key> [MAXLEN ~ <max_events>] * id <id> data <raw> lineage <tag> assigned <0|1>`
/// (`trim_to`: Some(max_events) to trim as it adds, None when an `XTRIM` follows).
///
/// The only place a `Record` becomes bytes for Redis: a new field of `Record` that must be
/// stored is one more pair in `fields` (and `super::read` learns to read it back).
/// A lineage's end marker (`record.end`, `super::state`) is `... * lineage <tag> end <how>`.
pub(super) fn append_xadd(out: &mut Vec<u8>, record: &Record, trim_to: Option<usize>) {
    let event: [(&[u8], &[u8]); 4] = [
        (FIELD_ID, &record.id),
        (FIELD_DATA, &record.raw),
        (FIELD_LINEAGE, record.lineage.tag()),
        (FIELD_ASSIGNED, if record.assigned { b"1" } else { b"0" }),
    ];
    let marker: [(&[u8], &[u8]); 2];
    let fields: &[(&[u8], &[u8])] = match record.end {
        None => &event,
        Some(how) => {
            marker = [
                (FIELD_LINEAGE, record.lineage.tag()),
                (FIELD_END, how.word()),
            ];
            &marker
        }
    };
    // XADD, the key, [MAXLEN, ~, the bound,] * (Redis makes the entry's id), then the pairs.
    let trim_args = if trim_to.is_some() { 3 } else { 0 };
    append_array_header(out, 3 + trim_args + 2 * fields.len());
    append_bulk(out, b"XADD");
    append_bulk(out, record.lineage.key().as_bytes());
    if let Some(max_events) = trim_to {
        append_bulk(out, b"MAXLEN");
        append_bulk(out, b"~");
        append_bulk_decimal(out, max_events as u64);
    }
    append_bulk(out, b"*");
    for &(name, value) in fields {
        append_bulk(out, name);
        append_bulk(out, value);
    }
}

/// Appends `XTRIM <key> MAXLEN ~ <max_events>`.
pub(super) fn append_xtrim(out: &mut Vec<u8>, key: &StoreKey, max_events: usize) {
    append_array_header(out, 5);
    append_bulk(out, b"XTRIM");
    append_bulk(out, key.as_bytes());
    append_bulk(out, b"MAXLEN");
    append_bulk(out, b"~");
    append_bulk_decimal(out, max_events as u64);
}

/// Appends `PEXPIRE <key> <ttl_ms>`.
pub(super) fn append_pexpire(out: &mut Vec<u8>, key: &StoreKey, ttl_ms: u64) {
    append_array_header(out, 3);
    append_bulk(out, b"PEXPIRE");
    append_bulk(out, key.as_bytes());
    append_bulk_decimal(out, ttl_ms);
}

/// Appends a command made of `args` (the connection's `AUTH` and `SELECT`).
pub(super) fn append_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    append_array_header(out, args.len());
    for arg in args {
        append_bulk(out, arg);
    }
}

/// A batch's commands, encoded into buffers kept from one pipeline to the next (after the first
/// few pipelines nothing is allocated per pipeline).
#[derive(Default)]
pub(super) struct Pipeline {
    /// The commands of the batch being written, as sent.
    bytes: Vec<u8>,
    /// The batch's streams in the order first seen, each with its number of events.
    streams: Vec<(StoreKey, usize)>,
    /// Where each stream of the batch is in `streams`.
    index: HashMap<StoreKey, usize>,
    /// Commands in `bytes`: how many replies Redis sends.
    commands: usize,
}

impl Pipeline {
    /// Encodes `batch` (replacing what was encoded before): one `XADD` per record, then per stream
    /// its `XTRIM` (TRIM_ONCE_FROM events or more) and its `PEXPIRE` (`bytes` and `commands` then
    /// tell what to send).
    ///
    /// ```text
    /// pass 1: count each stream's events          (a run of one stream's events: one lookup)
    /// pass 2: XADD each event, with MAXLEN ~ unless its stream has TRIM_ONCE_FROM or more
    /// then:   per stream: XTRIM (if its XADDs had no MAXLEN), PEXPIRE
    /// ```
    pub(super) fn encode(&mut self, batch: &[Record], max_events: usize, ttl_ms: u64) {
        self.bytes.clear();
        self.streams.clear();
        self.index.clear();
        let mut slot = usize::MAX;
        let mut previous: Option<&StoreKey> = None;
        for record in batch {
            let key = record.lineage.key();
            if previous != Some(key) {
                previous = Some(key);
                let streams = &mut self.streams;
                slot = *self.index.entry(key.clone()).or_insert_with(|| {
                    streams.push((key.clone(), 0));
                    streams.len() - 1
                });
            }
            self.streams[slot].1 += 1;
        }
        let mut previous: Option<&StoreKey> = None;
        let mut trim_to = None;
        for record in batch {
            let key = record.lineage.key();
            if previous != Some(key) {
                previous = Some(key);
                let events = self.streams[self.index[key]].1;
                trim_to = (events < TRIM_ONCE_FROM).then_some(max_events);
            }
            append_xadd(&mut self.bytes, record, trim_to);
        }
        self.commands = batch.len();
        for (key, events) in &self.streams {
            if *events >= TRIM_ONCE_FROM {
                append_xtrim(&mut self.bytes, key, max_events);
                self.commands += 1;
            }
            append_pexpire(&mut self.bytes, key, ttl_ms);
            self.commands += 1;
        }
    }

    /// The commands encoded by the last `encode`, as sent.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Commands encoded by the last `encode`.
    pub(super) fn commands(&self) -> usize {
        self.commands
    }
}

fn append_array_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    append_decimal(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

fn append_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    append_decimal(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal as one bulk string (how Redis takes a number argument).
fn append_bulk_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let text = decimal(n, &mut digits);
    append_bulk(out, text);
}

fn append_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// `n`'s decimal digits, written from the end of `buf` (20 digits hold any u64).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::store::lineage::StoreLineage;

    fn record(
        lineage: &StoreLineage,
        id: &'static [u8],
        raw: &'static [u8],
        assigned: bool,
    ) -> Record {
        Record {
            lineage: lineage.clone(),
            id: Bytes::from_static(id),
            assigned,
            raw: Bytes::from_static(raw),
            queued_at: Instant::now(),
            end: None,
        }
    }

    /// The command as the `redis` crate encodes it (the oracle: a second, independent encoder).
    fn crate_xadd(record: &Record, trim_to: Option<usize>) -> Vec<u8> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(record.lineage.key().as_bytes());
        if let Some(max_events) = trim_to {
            cmd.arg("MAXLEN").arg("~").arg(max_events);
        }
        cmd.arg("*")
            .arg(FIELD_ID)
            .arg(&record.id[..])
            .arg(FIELD_DATA)
            .arg(&record.raw[..])
            .arg(FIELD_LINEAGE)
            .arg(record.lineage.tag())
            .arg(FIELD_ASSIGNED)
            .arg(if record.assigned { "1" } else { "0" });
        cmd.get_packed_command()
    }

    fn crate_xtrim(key: &StoreKey, max_events: usize) -> Vec<u8> {
        redis::cmd("XTRIM")
            .arg(key.as_bytes())
            .arg("MAXLEN")
            .arg("~")
            .arg(max_events)
            .get_packed_command()
    }

    fn crate_pexpire(key: &StoreKey, ttl_ms: u64) -> Vec<u8> {
        redis::cmd("PEXPIRE")
            .arg(key.as_bytes())
            .arg(ttl_ms)
            .get_packed_command()
    }

    #[test]
    fn decimals_are_plain_digits() {
        let mut buf = [0u8; 20];
        for (n, text) in [
            (0u64, "0"),
            (7, "7"),
            (10, "10"),
            (1024, "1024"),
            (300_000, "300000"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(decimal(n, &mut buf), text.as_bytes());
        }
    }

    #[test]
    fn an_xadd_is_exactly_these_bytes() {
        let key = StoreKey::from_scope_bytes(b"abc");
        let lineage = StoreLineage::new(key, 0, 1);
        let r = record(&lineage, b"42", b"id: 42\ndata: hi\n\n", true);
        let tag = std::str::from_utf8(lineage.tag()).unwrap();
        let head = "$4\r\nXADD\r\n\
             $78\r\ntether:stream:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\r\n";
        let tail = format!(
            "$1\r\n*\r\n\
             $2\r\nid\r\n$2\r\n42\r\n\
             $4\r\ndata\r\n$17\r\nid: 42\ndata: hi\n\n\r\n\
             $7\r\nlineage\r\n${}\r\n{tag}\r\n\
             $8\r\nassigned\r\n$1\r\n1\r\n",
            tag.len()
        );
        let mut out = Vec::new();
        append_xadd(&mut out, &r, Some(1000));
        let want = format!("*14\r\n{head}$6\r\nMAXLEN\r\n$1\r\n~\r\n$4\r\n1000\r\n{tail}");
        assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        assert_eq!(out, crate_xadd(&r, Some(1000)));
        let mut out = Vec::new();
        append_xadd(&mut out, &r, None);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!("*11\r\n{head}{tail}")
        );
        assert_eq!(out, crate_xadd(&r, None));
    }

    #[test]
    fn binary_data_empty_ids_and_cr_lf_inside_are_sent_as_they_are() {
        let lineage = StoreLineage::new(StoreKey::from_scope_bytes(b"/bin"), 3, 9);
        for (id, raw) in [
            (&b""[..], &b"data: no id\n\n"[..]),
            (b"a\r\nb", b"data: \r\n*3\r\n$4\r\nPING\r\n\r\n"),
            (b"\0\xff", b"\x00\x01\xfe\xff\r\r\n\n"),
            (b"x", b""),
        ] {
            let r = record(&lineage, id, raw, false);
            for trim_to in [Some(7), None] {
                let mut out = Vec::new();
                append_xadd(&mut out, &r, trim_to);
                assert_eq!(out, crate_xadd(&r, trim_to), "id {id:?} raw {raw:?}");
            }
        }
    }

    #[test]
    fn xtrim_and_pexpire_are_exactly_these_bytes() {
        let key = StoreKey::from_scope_bytes(b"abc");
        let mut out = Vec::new();
        append_pexpire(&mut out, &key, 300_000);
        assert_eq!(out, crate_pexpire(&key, 300_000));
        let mut out = Vec::new();
        append_xtrim(&mut out, &key, 1000);
        assert_eq!(out, crate_xtrim(&key, 1000));
        let mut out = Vec::new();
        append_command(&mut out, &[b"SELECT", b"3"]);
        assert_eq!(out, redis::cmd("SELECT").arg(3).get_packed_command());
    }

    #[test]
    fn a_pipeline_adds_in_order_then_trims_busy_streams_once_and_expires_each() {
        let a = StoreLineage::new(StoreKey::from_scope_bytes(b"/a"), 0, 1);
        let a2 = StoreLineage::new(StoreKey::from_scope_bytes(b"/a"), 0, 2);
        let b = StoreLineage::new(StoreKey::from_scope_bytes(b"/b"), 0, 3);
        // /a: four events from two lineages of its scope (TRIM_ONCE_FROM), interleaved with
        // /b's one: /a's XADDs carry no MAXLEN and one XTRIM follows; /b's trims as it adds.
        assert_eq!(TRIM_ONCE_FROM, 4);
        let batch = vec![
            record(&a, b"1", b"data: a1\n\n", false),
            record(&a, b"2", b"data: a2\n\n", false),
            record(&b, b"1", b"data: b1\n\n", false),
            record(&a2, b"1", b"data: a2-1\n\n", false),
            record(&a, b"3", b"data: a3\n\n", true),
        ];
        let mut want = Vec::new();
        for r in &batch {
            let busy = r.lineage.key() == a.key();
            want.extend_from_slice(&crate_xadd(r, if busy { None } else { Some(50) }));
        }
        want.extend_from_slice(&crate_xtrim(a.key(), 50));
        want.extend_from_slice(&crate_pexpire(a.key(), 60_000));
        want.extend_from_slice(&crate_pexpire(b.key(), 60_000));
        let mut pipeline = Pipeline::default();
        pipeline.encode(&batch, 50, 60_000);
        assert_eq!(pipeline.bytes(), &want[..]);
        assert_eq!(pipeline.commands(), 8);
        // Reused: the next batch replaces the last one entirely.
        let next = vec![record(&b, b"2", b"data: b2\n\n", false)];
        let mut want = crate_xadd(&next[0], Some(50));
        want.extend_from_slice(&crate_pexpire(b.key(), 60_000));
        pipeline.encode(&next, 50, 60_000);
        assert_eq!(pipeline.bytes(), &want[..]);
        assert_eq!(pipeline.commands(), 2);
    }
}
