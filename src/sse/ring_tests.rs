use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ev(id: Option<&str>, raw: &str) -> RingEvent {
    RingEvent::new(b(raw), id.map(str::as_bytes), raw.len() as u32, false)
}

#[test]
fn replays_after_an_id() {
    let mut r = ReplayRing::new(10, 1 << 20);
    for i in 1..=5 {
        let id = i.to_string();
        r.push(ev(Some(&id), &format!("id: {i}\ndata: x\n\n")));
    }
    let seq = r.seq_of(b"3").unwrap();
    let ids: Vec<_> = r.after(seq).map(|e| e.id_bytes().unwrap()).collect();
    assert_eq!(ids, vec![b("4"), b("5")]);
    assert_eq!(r.seq_of(b"nope"), None);
    assert_eq!(r.newest_upstream_id(), Some(b("5")));
}

#[test]
fn bounded_by_count_and_bytes_with_seqs_kept() {
    let mut r = ReplayRing::new(3, 1 << 20);
    for i in 1..=5 {
        r.push(ev(Some(&i.to_string()), "data: x\n\n"));
    }
    assert_eq!(r.len(), 3);
    assert_eq!((r.first_seq(), r.head_seq()), (3, 5));
    assert_eq!(r.seq_of(b"1"), None, "evicted ids are forgotten");
    assert_eq!(r.seq_of(b"3"), Some(3));
    assert!(r.get(2).is_none() && r.get(3).is_some() && r.get(6).is_none());

    let mut r = ReplayRing::new(100, 20);
    for i in 1..=5 {
        r.push(ev(Some(&i.to_string()), "0123456789"));
    }
    assert_eq!((r.len(), r.bytes()), (2, 20));
    // One event larger than the byte bound is kept alone.
    r.push(ev(None, &"x".repeat(100)));
    assert_eq!(r.len(), 1);
    assert_eq!(r.cost(), 100 + EVENT_OVERHEAD);
}

#[test]
fn after_the_newest_is_empty_and_events_without_ids_follow_their_predecessor() {
    let mut r = ReplayRing::new(10, 1 << 20);
    r.push(ev(Some("a"), "id: a\ndata: 1\n\n"));
    r.push(ev(None, "data: 2\n\n"));
    r.push(ev(Some("b"), "id: b\ndata: 3\n\n"));
    let seq = r.seq_of(b"a").unwrap();
    let raws: Vec<_> = r.after(seq).map(|e| e.bytes()).collect();
    assert_eq!(raws, vec![b("data: 2\n\n"), b("id: b\ndata: 3\n\n")]);
    assert_eq!(r.after(r.seq_of(b"b").unwrap()).count(), 0);
    assert_eq!(
        r.after(0).count(),
        3,
        "a cursor older than the ring sees all"
    );
}

#[test]
fn a_repeated_id_points_at_its_latest_event() {
    let mut r = ReplayRing::new(2, 1 << 20);
    r.push(ev(Some("x"), "1"));
    r.push(ev(Some("x"), "2"));
    r.push(ev(Some("y"), "3"));
    // The first "x" was evicted; the index still finds the second one.
    assert_eq!(r.seq_of(b"x"), Some(2));
}

#[test]
fn trimming_frees_the_oldest_and_keeps_the_accounts() {
    let mut r = ReplayRing::new(100, 1 << 20);
    for i in 1..=10 {
        r.push(ev(Some(&i.to_string()), "0123456789"));
    }
    let one = 10 + EVENT_OVERHEAD;
    assert_eq!(r.cost(), 10 * one);
    assert_eq!(r.trim_to(4 * one), 6);
    assert_eq!((r.len(), r.first_seq(), r.cost()), (4, 7, 4 * one));
    assert_eq!(r.seq_of(b"6"), None);
    assert_eq!(r.trim_to(0), 4);
    assert!(r.is_empty());
    assert_eq!((r.cost(), r.bytes(), r.head_seq()), (0, 0, 10));
    assert_eq!(r.push(ev(Some("11"), "z")), 11, "seqs are never reused");
}

/// Small rings scan, larger ones use the index: both must give the same answer, through the
/// switch, with repeated ids and evictions, and after the ring empties and starts again.
#[test]
fn scanning_and_the_index_agree() {
    let mut r = ReplayRing::new(INDEX_FROM + 4, 1 << 20);
    let ids = ["a", "b", "c", "a", "d", "b", "e"];
    for round in 0..2 {
        for i in 0..40 {
            let id = ids[i % ids.len()];
            let raw = format!("{round}-{i}");
            r.push(ev((i % 5 != 4).then_some(id), &raw));
            for probe in ["a", "b", "c", "d", "e", "zz"] {
                let expected = (r.first_seq()..=r.head_seq())
                    .rev()
                    .find(|&seq| r.get(seq).unwrap().id() == Some(probe.as_bytes()));
                assert_eq!(r.seq_of(probe.as_bytes()), expected, "{probe} after {i}");
            }
        }
        assert!(
            r.by_id.is_some(),
            "a ring past INDEX_FROM events is indexed"
        );
        r.trim_to(0);
        assert!(r.by_id.is_none(), "an empty ring holds no table");
    }
}

/// Numbered rings (binary search, no table) and the others (scan, then the index) give the
/// answer a plain scan of the ring gives, for every mix of ids: increasing numbers with gaps
/// and events without ids between them, then a number out of order, a non-canonical one
/// ("007"), a word, a repeat; through evictions and a ring that empties and starts again.
#[test]
fn every_way_of_finding_an_id_agrees_with_a_scan() {
    use proptest::prelude::*;
    #[derive(Debug, Clone)]
    enum Next {
        Up(u8),
        NoId,
        Back(u8),
        Zeroed,
        Word(u8),
        Empty,
        TrimAll,
    }
    let next = prop_oneof![
        8 => (1u8..5).prop_map(Next::Up),
        3 => Just(Next::NoId),
        1 => (0u8..20).prop_map(Next::Back),
        1 => Just(Next::Zeroed),
        1 => (0u8..4).prop_map(Next::Word),
        1 => Just(Next::Empty),
        1 => Just(Next::TrimAll),
    ];
    proptest!(model_cases(), |(steps in proptest::collection::vec(next, 1..120), cap in 1usize..40)| {
        let mut r = ReplayRing::new(cap, 1 << 20);
        let mut number = 0u64;
        let mut probes: Vec<String> = vec!["0".into(), "007".into(), "w1".into(), "".into()];
        for step in steps {
            let id = match step {
                Next::Up(by) => {
                    number += u64::from(by);
                    Some(number.to_string())
                }
                Next::NoId => None,
                Next::Back(by) => Some(number.saturating_sub(u64::from(by)).to_string()),
                Next::Zeroed => Some(format!("00{number}")),
                Next::Word(w) => Some(format!("w{w}")),
                Next::Empty => Some(String::new()),
                Next::TrimAll => {
                    r.trim_to(0);
                    None
                }
            };
            let raw = match &id {
                Some(id) => format!("id: {id}\ndata: x\n\n"),
                None => "data: x\n\n".to_string(),
            };
            let raw = Bytes::from(raw);
            let id_at = id.as_ref().map(|id| raw.slice(4..4 + id.len()));
            r.push(RingEvent::new(raw.clone(), id_at.as_deref(), raw.len() as u32, false));
            if let Some(id) = id {
                probes.push(id);
            }
            probes.push((number + 1).to_string());
            for probe in &probes {
                let expected = (r.first_seq()..=r.head_seq())
                    .rev()
                    .find(|&seq| r.get(seq).unwrap().id() == Some(probe.as_bytes()));
                prop_assert_eq!(r.seq_of(probe.as_bytes()), expected, "probe {:?}", probe);
            }
        }
    });
}

#[test]
fn a_numbered_ring_keeps_no_table_and_ids_live_inside_the_events() {
    // As the framer hands events over: the id a slice of the event's bytes.
    let framed = |id: &str| {
        let raw = Bytes::from(format!("id: {id}\n\n"));
        let at = raw.slice(4..4 + id.len());
        RingEvent::new(raw.clone(), Some(&at), raw.len() as u32, false)
    };
    let mut r = ReplayRing::new(1000, 1 << 20);
    for i in 1..=500 {
        r.push(framed(&i.to_string()));
    }
    assert!(r.numbered && r.by_id.is_none());
    assert_eq!(r.seq_of(b"250"), Some(250));
    assert!(r.get(1).is_some_and(|e| e.slot.id == SlotId::span(4, 1)));
    // A word turns the ring to the index, which then finds the numbers too.
    r.push(framed("w"));
    assert!(!r.numbered && r.by_id.is_some());
    assert_eq!(r.seq_of(b"250"), Some(250));
    assert_eq!(r.seq_of(b"w"), Some(501));
}

/// Runs against a plain model: batches of events lying in shared reads (with gaps between them,
/// as comments and chunk framing leave), events of their own, single pushes, trims; bounded by
/// count and bytes. Every event reads back as recorded, in order, with its seq, id and flag;
/// ids are found as a scan of the model finds them; the byte count is the events'; the cost is
/// exactly the live runs' holds plus the overheads (a run goes with its last event).
/// The model's event: seq, bytes, id, assigned.
type ModelEvent = (u64, Vec<u8>, Option<Vec<u8>>, bool);

#[test]
fn runs_agree_with_a_plain_model() {
    use proptest::prelude::*;
    #[derive(Debug, Clone)]
    enum Step {
        /// A read of `events` events (each `len` bytes, every `gap` bytes of framing after it),
        /// `own` of them (by position) added as their own allocations between them.
        Read {
            events: Vec<(u8, bool, u8)>,
            gap: u8,
            alloc_pad: u16,
        },
        Push(u8),
        Trim(u16),
    }
    let event = (1u8..40, any::<bool>(), 0u8..4);
    let step = prop_oneof![
        6 => (proptest::collection::vec(event, 1..12), 0u8..5, 0u16..600)
            .prop_map(|(events, gap, alloc_pad)| Step::Read { events, gap, alloc_pad }),
        2 => (1u8..40).prop_map(Step::Push),
        1 => (0u16..2000).prop_map(Step::Trim),
    ];
    proptest!(model_cases(), |(steps in proptest::collection::vec(step, 1..40),
                        cap in 1usize..30, max_bytes in 20usize..400)| {
        let mut r = ReplayRing::new(cap, max_bytes);
        let mut batch = RingBatch::default();
        // The model: (seq, bytes, id, assigned) of every event ever recorded.
        let mut model: Vec<ModelEvent> = Vec::new();
        let mut next_id = 0u64;
        // The first seq after the last trim: events before it may have gone to a trim.
        let mut trimmed_to = 0u64;
        for step in steps {
            match step {
                Step::Read { events, gap, alloc_pad } => {
                    // Build the read: each event "id: N\ndata: xx..\n\n", gaps between.
                    let mut text = Vec::new();
                    let mut spans = Vec::new();
                    for &(len, has_id, own) in &events {
                        next_id += 1;
                        let id = has_id.then(|| next_id.to_string());
                        let raw = event_text(id.as_deref(), len);
                        spans.push((text.len(), raw.clone(), id, own == 0));
                        text.extend_from_slice(&raw);
                        text.extend(std::iter::repeat_n(b':', gap as usize));
                    }
                    let read = Bytes::from(text);
                    let head = r.head_seq();
                    for (i, (start, raw, id, own)) in spans.iter().enumerate() {
                        let id_span = id.as_ref().map_or(EventId::None, |id| EventId::In {
                            start: 4,
                            len: id.len() as u32,
                        });
                        if *own {
                            let copy = Bytes::copy_from_slice(raw);
                            batch.add_own(RingEvent::with_id(copy, id_span, raw.len() as u32, true));
                        } else {
                            batch.add_in(&read, *start, raw.len(), id_span, false);
                        }
                        prop_assert!(id.is_none() || batch.contains_id(id.as_ref().unwrap().as_bytes()));
                        model.push((head + 1 + i as u64, raw.clone(), id.clone().map(String::into_bytes), *own));
                    }
                    batch.seal(&read, read.len() + alloc_pad as usize);
                    let last = r.push_batch(&mut batch);
                    prop_assert!(batch.is_empty());
                    prop_assert_eq!(last, head + spans.len() as u64);
                }
                Step::Push(len) => {
                    let raw = Bytes::from(vec![b'y'; len as usize]);
                    let seq = r.push(RingEvent::new(raw.clone(), None, len as u32 * 2, false));
                    model.push((seq, raw.to_vec(), None, false));
                }
                Step::Trim(to) => {
                    r.trim_to(to as usize);
                    prop_assert!(r.cost() <= to as usize || r.is_empty());
                    trimmed_to = r.first_seq();
                }
            }
            // What is left is the model's newest events, from the ring's first seq on.
            let live: Vec<_> = model.iter().filter(|m| m.0 >= r.first_seq()).collect();
            prop_assert_eq!(live.len(), r.len());
            prop_assert!(r.len() <= cap);
            prop_assert!(r.bytes() <= max_bytes || r.len() == 1);
            prop_assert_eq!(r.bytes(), live.iter().map(|m| m.1.len()).sum::<usize>());
            // And no fewer than the bounds allow: the newest event the bounds evicted would not
            // fit beside the ones kept.
            if r.first_seq() > trimmed_to.max(1) {
                let gone = model.iter().find(|m| m.0 == r.first_seq() - 1).unwrap();
                prop_assert!(
                    r.len() + 1 > cap || r.bytes() + gone.1.len() > max_bytes,
                    "evicted more than the bounds ask"
                );
            }
            for (m, e) in live.iter().zip(r.after(0)) {
                prop_assert_eq!(e.raw(), &m.1[..]);
                prop_assert_eq!(&e.bytes()[..], &m.1[..]);
                prop_assert_eq!(e.id(), m.2.as_deref());
                let id_bytes = e.id_bytes();
                prop_assert_eq!(id_bytes.as_deref(), m.2.as_deref());
                prop_assert_eq!(e.assigned(), m.3);
                prop_assert_eq!(r.get(m.0).map(|g| g.raw()), Some(&m.1[..]));
                let owned = e.to_event();
                prop_assert_eq!(&owned.raw[..], &m.1[..]);
                prop_assert!(owned.held as usize >= m.1.len());
            }
            for m in &live {
                if let Some(id) = &m.2 {
                    let expected = live.iter().rev().find(|x| x.2.as_ref() == Some(id)).map(|x| x.0);
                    prop_assert_eq!(r.seq_of(id), expected);
                }
            }
            // The cost: every live run once, with its slots.
            let mut runs: Vec<(usize, usize, u32)> = r
                .runs
                .iter()
                .map(|run| (run.bytes.as_ptr() as usize, run.bytes.len(), run.held))
                .collect();
            runs.dedup();
            prop_assert_eq!(r.runs.len(), runs.len());
            let held: usize = r.runs.iter().map(|run| run.held as usize).sum();
            prop_assert_eq!(
                r.cost(),
                held + r.runs() * RUN_OVERHEAD + r.len() * SLOT_OVERHEAD
            );
            if r.is_empty() {
                prop_assert_eq!((r.cost(), r.runs()), (0, 0));
            }
        }
    });
}

/// A read's runs hold its allocation between them; a read mostly not recorded is copied out.
#[test]
fn sealing_shares_a_read_or_copies_a_sparse_one() {
    let read = Bytes::from_static(b"data: a\n\n: comment\ndata: b\n\n");
    let mut batch = RingBatch::default();
    batch.add_in(&read, 0, 9, EventId::None, false);
    batch.add_own(RingEvent::new(
        Bytes::from_static(b"data: own\n\n"),
        None,
        11,
        true,
    ));
    batch.add_in(&read, 19, 9, EventId::None, false);
    batch.seal(&read, 30);
    let held: Vec<u32> = batch.runs.iter().map(|r| r.held).collect();
    // 30 bytes shared by the two runs of the read (9 bytes each), the own event apart.
    assert_eq!(held, vec![15, 11, 15]);
    let mut r = ReplayRing::new(10, 1 << 20);
    r.push_batch(&mut batch);
    assert_eq!(r.runs(), 3);
    let raws: Vec<_> = r.after(0).map(|e| e.bytes()).collect();
    assert_eq!(
        raws,
        vec![
            read.slice(0..9),
            Bytes::from_static(b"data: own\n\n"),
            read.slice(19..28)
        ]
    );

    // The same read in a 4 KiB allocation: each run is copied to its own few bytes.
    batch.add_in(&read, 0, 9, EventId::None, false);
    batch.add_in(&read, 19, 9, EventId::None, false);
    batch.seal(&read, 4096);
    assert_eq!(
        batch.runs.len(),
        1,
        "events of one read in a row share a run"
    );
    assert_eq!(
        batch.runs[0].bytes.len(),
        28,
        "the span from the first event to the last"
    );
    assert_ne!(batch.runs[0].bytes.as_ptr(), read.as_ptr());
    r.push_batch(&mut batch);
    let raws: Vec<_> = r.after(3).map(|e| e.bytes()).collect();
    assert_eq!(raws, vec![read.slice(0..9), read.slice(19..28)]);
}

/// A quiet stream's ring holds one event for as long as the stream stays quiet, tens of
/// thousands of them at once: one slot and one run, each in a deque of capacity one (a 24-byte
/// and a 48-byte allocation, mimalloc's 24 and 48 classes). The slot was 40 bytes (class 48)
/// while an `EventId::Own` was a boxed slice inline (16 bytes, with its tag 24), and 32 while
/// it held an `EventId`; the run's own id (8 bytes, for the rare id that is no span) keeps the
/// run in the 48 class it had at 40.
#[test]
fn a_slot_stays_small() {
    assert!(
        std::mem::size_of::<Slot>() <= 24,
        "Slot is {} bytes",
        std::mem::size_of::<Slot>()
    );
    assert!(
        std::mem::size_of::<Run>() <= 48,
        "Run is {} bytes",
        std::mem::size_of::<Run>()
    );
    assert_eq!(std::mem::size_of::<EventId>(), 16);

    // Recorded through a batch, as the relay records a read's events.
    let read = b("id: 1\ndata: x\n\n");
    let mut r = ReplayRing::new(DEFAULT_REPLAY_EVENTS, DEFAULT_REPLAY_BYTES);
    let mut batch = RingBatch::default();
    batch.add_in(
        &read,
        0,
        read.len(),
        EventId::In { start: 4, len: 1 },
        false,
    );
    batch.seal(&read, read.len());
    r.push_batch(&mut batch);
    assert_eq!((r.slots.capacity(), r.runs.capacity()), (1, 1));

    // Recorded alone.
    let mut r = ReplayRing::new(DEFAULT_REPLAY_EVENTS, DEFAULT_REPLAY_BYTES);
    r.push(ev(Some("1"), "id: 1\ndata: x\n\n"));
    assert_eq!((r.slots.capacity(), r.runs.capacity()), (1, 1));
}

/// How the model test below records one event of a read.
#[derive(Debug, Clone, Copy)]
enum Recorded {
    /// A span of the read, as the relay records a framed block (`add_framed`, its number given).
    Framed,
    /// A span of the read through the general entry (`add_in`).
    In,
    /// A span of the read whose id is no span of it (`EventId::Own`): kept by a run of its own.
    OwnId,
    /// A copy of its own (`add_own`).
    Own,
}

/// Eviction in one step against eviction one event at a time: two rings get the same reads
/// (numbered ids, words that repeat, no ids; each event recorded one of the four ways), one
/// trims with `trim_to` (counted first, evicted at once), the other one event at a time
/// (`evict_front(1)` while over). After every step they hold the same events, runs, bytes and
/// cost, and the production ring agrees with a plain model: every event as recorded, ids found
/// as a scan finds them (the index kept through evictions across run boundaries), the cost
/// exactly its live runs' holds plus the overheads.
#[test]
fn evicting_in_one_step_agrees_with_one_at_a_time_and_a_model() {
    use proptest::prelude::*;
    #[derive(Debug, Clone)]
    enum Step {
        Read(Vec<(u8, u8, u8)>, u8),
        Trim(u16),
    }
    let how = |h: u8| match h % 6 {
        0..=2 => Recorded::Framed,
        3 => Recorded::In,
        4 => Recorded::OwnId,
        _ => Recorded::Own,
    };
    let event = (1u8..30, 0u8..8, 0u8..6);
    let step = prop_oneof![
        5 => (proptest::collection::vec(event, 1..10), 0u8..4).prop_map(|(e, g)| Step::Read(e, g)),
        1 => (0u16..3000).prop_map(Step::Trim),
    ];
    proptest!(model_cases(), |(steps in proptest::collection::vec(step, 1..40),
                        cap in 1usize..24, max_bytes in 30usize..600)| {
        let mut rings = [ReplayRing::new(cap, max_bytes), ReplayRing::new(cap, max_bytes)];
        let mut batch = RingBatch::default();
        let mut model: Vec<ModelEvent> = Vec::new();
        let mut number = 0u64;
        for step in steps {
            match step {
                Step::Read(events, gap) => {
                    let mut text = Vec::new();
                    let mut spans = Vec::new();
                    for &(len, id_kind, h) in &events {
                        let id = match id_kind {
                            0..=3 => {
                                number += 1;
                                Some(number.to_string())
                            }
                            4 | 5 => Some(format!("w{}", id_kind % 2)),
                            _ => None,
                        };
                        let raw = event_text(id.as_deref(), len);
                        spans.push((text.len(), raw.clone(), id, how(h)));
                        text.extend_from_slice(&raw);
                        text.extend(std::iter::repeat_n(b':', gap as usize));
                    }
                    let read = Bytes::from(text);
                    let head = rings[0].head_seq();
                    for r in &mut rings {
                        for (start, raw, id, how) in &spans {
                            let span = id.as_ref().map_or(EventId::None, |id| EventId::In {
                                start: 4,
                                len: id.len() as u32,
                            });
                            match how {
                                Recorded::Framed => {
                                    let number = id.as_deref().and_then(|id| numeric_id(id.as_bytes()));
                                    batch.add_framed(&read, *start, raw.len(), span, number);
                                }
                                Recorded::In => batch.add_in(&read, *start, raw.len(), span, false),
                                Recorded::OwnId => {
                                    let own = id.as_ref().map_or(EventId::None, |id| {
                                        EventId::Own(id.as_bytes().into())
                                    });
                                    batch.add_in(&read, *start, raw.len(), own, false);
                                }
                                Recorded::Own => {
                                    let copy = Bytes::copy_from_slice(raw);
                                    let n = raw.len() as u32;
                                    batch.add_own(RingEvent::with_id(copy, span, n, true));
                                }
                            }
                        }
                        batch.seal(&read, read.len() + 64);
                        prop_assert_eq!(r.push_batch(&mut batch), head + spans.len() as u64);
                    }
                    for (i, (_, raw, id, how)) in spans.into_iter().enumerate() {
                        let assigned = matches!(how, Recorded::Own);
                        model.push((head + 1 + i as u64, raw, id.map(String::into_bytes), assigned));
                    }
                }
                Step::Trim(to) => {
                    let to = to as usize;
                    let [fast, slow] = &mut rings;
                    let n = fast.trim_to(to);
                    let mut m = 0;
                    while slow.cost() > to && !slow.is_empty() {
                        slow.evict_front(1);
                        m += 1;
                    }
                    prop_assert_eq!(n, m);
                }
            }
            let [r, slow] = &rings;
            prop_assert_eq!(
                (r.first_seq(), r.head_seq(), r.runs(), r.bytes(), r.cost()),
                (slow.first_seq(), slow.head_seq(), slow.runs(), slow.bytes(), slow.cost())
            );
            let live: Vec<_> = model.iter().filter(|m| m.0 >= r.first_seq()).collect();
            prop_assert_eq!(live.len(), r.len());
            prop_assert_eq!(r.bytes(), live.iter().map(|m| m.1.len()).sum::<usize>());
            for (m, e) in live.iter().zip(r.after(0)) {
                prop_assert_eq!(e.raw(), &m.1[..]);
                prop_assert_eq!(e.id(), m.2.as_deref());
                let id_bytes = e.id_bytes();
                prop_assert_eq!(id_bytes.as_deref(), m.2.as_deref());
                let owned = e.to_event();
                prop_assert_eq!(owned.id(), m.2.as_deref());
                prop_assert_eq!(e.assigned(), m.3);
            }
            let mut probes: Vec<Vec<u8>> = vec![b"w0".to_vec(), b"w1".to_vec(), b"0".to_vec()];
            probes.extend(model.iter().filter_map(|m| m.2.clone()));
            for probe in &probes {
                let expected = live.iter().rev().find(|x| x.2.as_ref() == Some(probe)).map(|x| x.0);
                prop_assert_eq!(r.seq_of(probe), expected, "probe {:?}", String::from_utf8_lossy(probe));
            }
            let held: usize = r.runs.iter().map(|run| run.held as usize).sum();
            prop_assert_eq!(r.cost(), held + r.runs() * RUN_OVERHEAD + r.len() * SLOT_OVERHEAD);
            // Every run holds an event, and an own id only for its one event.
            for (i, run) in r.runs.iter().enumerate() {
                let number = r.first_run.wrapping_add(i as u32);
                let events = r.slots.iter().filter(|s| s.run == number).count();
                prop_assert!(events >= 1);
                prop_assert!(run.own_id.is_none() || events == 1);
            }
            if r.is_empty() {
                prop_assert_eq!((r.cost(), r.runs()), (0, 0));
            }
        }
    });
}

/// The property tests' runs: 256 cases each (a few seconds in a debug build on both drivers'
/// suite runs), no failure file written into the tree (a failing case is printed, seed and all).
fn model_cases() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

/// One event as an upstream sends it: `id: ID` when it has one, then `len` bytes of data.
fn event_text(id: Option<&str>, len: u8) -> Vec<u8> {
    let mut raw = Vec::new();
    if let Some(id) = id {
        raw.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    raw.extend_from_slice(b"data: ");
    raw.extend(std::iter::repeat_n(b'x', usize::from(len)));
    raw.extend_from_slice(b"\n\n");
    raw
}
