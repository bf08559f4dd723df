//! Tests of `SegmentLog`: run with `cargo test --release --lib store`.

use super::*;
use crate::store::record::{encode_segment_header, ALL_SEQS};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn body_of(queue_id: u64, seq: u64, size: usize) -> Vec<u8> {
    let mut b = format!("q{queue_id}-m{seq}-").into_bytes();
    b.resize(size.max(b.len()), b'.');
    b
}

fn publish(log: &mut SegmentLog, queue_id: u64, seq: u64, size: usize) -> Location {
    let body = body_of(queue_id, seq, size);
    log.append_publish(&Publish {
        queue_id,
        seq,
        exchange: b"amq.direct",
        routing_key: b"key",
        properties: &[0x10, 0x00, 2],
        body: &body,
        expires_at: 0,
    })
}

fn check_message(m: &StoredMessage, queue_id: u64, seq: u64, size: usize) {
    assert_eq!((m.queue_id, m.seq), (queue_id, seq));
    assert_eq!(&m.exchange[..], b"amq.direct");
    assert_eq!(&m.routing_key[..], b"key");
    assert_eq!(&m.properties[..], &[0x10, 0, 2]);
    assert_eq!(m.body, body_of(queue_id, seq, size));
}

/// queue_id → seqs recovered.
fn seqs(r: &Recovered) -> BTreeMap<u64, Vec<u64>> {
    r.queues
        .iter()
        .map(|(&q, v)| (q, v.iter().map(|m| m.seq).collect()))
        .collect()
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn seg_name(n: u64) -> String {
    format!("{n:016x}.seg")
}

#[test]
fn round_trip_and_read_back() {
    let dir = test_dir("round_trip");
    let opts = Options {
        segment_size: 1 << 20,
        load_max: 1000,
        load_first: usize::MAX,
    };
    let (mut log, r) = SegmentLog::open_with(dir.path(), opts.clone()).unwrap();
    assert_eq!(r.message_count(), 0);
    let sizes = [0, 1, 16, 900, 5000, 200_000];
    let locs: Vec<Location> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| publish(&mut log, 1, i as u64, size))
        .collect();
    // From the buffer, then from the file.
    for (i, &size) in sizes.iter().enumerate() {
        check_message(&log.read(locs[i]).unwrap(), 1, i as u64, size);
    }
    log.flush().unwrap();
    for (i, &size) in sizes.iter().enumerate() {
        check_message(&log.read(locs[i]).unwrap(), 1, i as u64, size);
    }
    drop(log);

    let (mut log, r) = SegmentLog::open_with(dir.path(), opts).unwrap();
    assert_eq!(seqs(&r)[&1], vec![0, 1, 2, 3, 4, 5]);
    for (i, m) in r.queues[&1].iter().enumerate() {
        assert_eq!(m.location, locs[i]);
        match &m.message {
            Some(msg) => {
                assert!(m.location.len <= 1000);
                check_message(msg, 1, i as u64, sizes[i]);
            }
            None => assert!(m.location.len > 1000),
        }
        check_message(&log.read(m.location).unwrap(), 1, i as u64, sizes[i]);
    }
    // Reads of what is not there are errors, not panics.
    let bad = Location {
        segment: 999,
        offset: 16,
        len: 40,
    };
    assert!(log.read(bad).is_err());
    let past = Location {
        segment: locs[0].segment,
        offset: 1 << 30,
        len: 40,
    };
    assert!(log.read(past).is_err());
    let not_a_frame = Location { len: 10, ..locs[1] };
    assert!(log.read(not_a_frame).is_err());
}

#[test]
fn rotation_across_segments() {
    let dir = test_dir("rotation");
    let (mut log, _) = SegmentLog::open(dir.path(), 4096).unwrap();
    let mut locs = Vec::new();
    for seq in 0..1000 {
        locs.push(publish(&mut log, 7, seq, 100));
        if seq % 97 == 0 {
            log.flush().unwrap();
        }
    }
    log.sync().unwrap();
    let segs = log.segments();
    assert!(segs.len() > 20, "{} segments", segs.len());
    for s in &segs {
        // A record starts only below the size: at most one record past it.
        assert!(s.len < 4096 + 200, "{s:?}");
        assert_eq!(s.live, s.total);
    }
    for w in locs.windows(2) {
        assert!(w[0] < w[1]);
    }
    for (seq, &loc) in locs.iter().enumerate() {
        check_message(&log.read(loc).unwrap(), 7, seq as u64, 100);
    }
    let names = files(dir.path());
    assert_eq!(names.len(), segs.len());
    for s in &segs {
        let len = std::fs::metadata(dir.path().join(seg_name(s.number)))
            .unwrap()
            .len();
        assert_eq!(len, s.len);
    }
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 4096).unwrap();
    assert_eq!(r.segments, segs.len());
    let got: Vec<Location> = r.queues[&7].iter().map(|m| m.location).collect();
    assert_eq!(got, locs);
    for (seq, m) in r.queues[&7].iter().enumerate() {
        check_message(m.message.as_ref().unwrap(), 7, seq as u64, 100);
    }
}

#[test]
fn recovery_applies_acks_queue_gone_and_purge() {
    let dir = test_dir("replay");
    let (mut log, _) = SegmentLog::open(dir.path(), 2048).unwrap();
    let mut locs: HashMap<(u64, u64), Location> = HashMap::new();
    for seq in 1..=100 {
        for q in 1..=4 {
            locs.insert((q, seq), publish(&mut log, q, seq, 20));
        }
    }
    // Queue 1: every third message acked.
    for seq in (1..=100).filter(|s| s % 3 == 0) {
        log.append_ack(1, seq, locs[&(1, seq)]);
    }
    // Queue 2: purged up to 50, then more messages.
    log.append_queue_gone(2, 50, (1..=50).map(|s| locs[&(2, s)]));
    for seq in 101..=110 {
        locs.insert((2, seq), publish(&mut log, 2, seq, 20));
    }
    // Queue 3: deleted.
    log.append_queue_gone(3, ALL_SEQS, (1..=100).map(|s| locs[&(3, s)]));
    // Queue 4: acks interleaved with other queues' acks (several batches).
    for seq in 1..=10 {
        log.append_ack(4, seq, locs[&(4, seq)]);
        log.append_ack(
            1,
            100 + seq,
            Location {
                segment: 0,
                offset: 0,
                len: 0,
            },
        ); // not live: ignored
    }
    log.sync().unwrap();
    drop(log);

    let (_log, r) = SegmentLog::open(dir.path(), 2048).unwrap();
    let got = seqs(&r);
    let want_1: Vec<u64> = (1..=100).filter(|s| s % 3 != 0).collect();
    assert_eq!(got[&1], want_1);
    assert_eq!(got[&2], (51..=110).collect::<Vec<_>>());
    assert!(!got.contains_key(&3));
    assert_eq!(got[&4], (11..=100).collect::<Vec<_>>());
    for (&q, msgs) in &r.queues {
        for m in msgs {
            assert_eq!(m.location, locs[&(q, m.seq)]);
            check_message(m.message.as_ref().unwrap(), q, m.seq, 20);
        }
    }
}

#[test]
fn acks_are_compact() {
    let dir = test_dir("compact_acks");
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    let locs: Vec<Location> = (0..1000).map(|s| publish(&mut log, 1, s, 16)).collect();
    log.flush().unwrap();
    let before = log.segments()[0].len;
    for (s, &loc) in locs.iter().enumerate() {
        log.append_ack(1, s as u64, loc);
    }
    log.flush().unwrap();
    let grew = log.segments()[0].len - before;
    assert!(grew < 1100, "1000 acks took {grew} bytes");
}

#[test]
fn relocated_duplicates_collapse() {
    let dir = test_dir("relocate");
    let (mut log, _) = SegmentLog::open(dir.path(), 1024).unwrap();
    let mut live: BTreeMap<u64, Location> = BTreeMap::new();
    for seq in 0..40 {
        live.insert(seq, publish(&mut log, 9, seq, 30));
    }
    log.sync().unwrap();
    let first = live[&0].segment;
    // Crash mid-compaction: the copies are written, the originals still there
    // (never synced, so not deleted).
    for (_, _, loc) in log.publishes_in(first).unwrap() {
        let seq = log.read(loc).unwrap().seq;
        let new = log.relocate(loc).unwrap();
        assert!(new.segment > first);
        live.insert(seq, new);
    }
    log.flush().unwrap();
    assert!(dir.path().join(seg_name(first)).exists());
    log.crash();

    let (mut log, r) = SegmentLog::open(dir.path(), 1024).unwrap();
    let msgs = &r.queues[&9];
    assert_eq!(msgs.len(), 40, "each message once");
    for m in msgs {
        assert_eq!(m.location, live[&m.seq], "the later copy wins");
        check_message(m.message.as_ref().unwrap(), 9, m.seq, 30);
    }
    // The first segment held only superseded copies: deleted at open.
    assert_eq!(r.deleted_segments, 1);
    assert!(!dir.path().join(seg_name(first)).exists());
    // Acks of relocated messages hold after a restart.
    for seq in 0..5 {
        log.append_ack(9, seq, live[&seq]);
    }
    log.sync().unwrap();
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 1024).unwrap();
    assert_eq!(seqs(&r)[&9], (5..40).collect::<Vec<_>>());
}

#[test]
fn compaction_frees_a_mostly_dead_segment() {
    let dir = test_dir("compaction");
    let (mut log, _) = SegmentLog::open(dir.path(), 8192).unwrap();
    let mut live: BTreeMap<u64, Location> = BTreeMap::new();
    for seq in 0..100 {
        live.insert(seq, publish(&mut log, 5, seq, 50));
    }
    let first = live[&0].segment;
    let in_first: Vec<u64> = live
        .iter()
        .filter(|(_, l)| l.segment == first)
        .map(|(&s, _)| s)
        .collect();
    assert!(in_first.len() > 50);
    // Ack all but 3 of the first segment's messages.
    for &seq in &in_first[3..] {
        let loc = live.remove(&seq).unwrap();
        log.append_ack(5, seq, loc);
    }
    log.sync().unwrap();
    assert_eq!(log.compact_candidates(0.1), vec![first]);
    assert!(log.compact_candidates(0.01).is_empty());
    for (q, seq, loc) in log.publishes_in(first).unwrap() {
        if q == 5 && live.get(&seq) == Some(&loc) {
            live.insert(seq, log.relocate(loc).unwrap());
        }
    }
    assert!(log.compact_candidates(0.1).is_empty());
    log.flush().unwrap();
    // Not deleted before the copies are durable.
    assert!(dir.path().join(seg_name(first)).exists());
    log.sync().unwrap();
    assert!(!dir.path().join(seg_name(first)).exists());
    for (&seq, &loc) in &live {
        check_message(&log.read(loc).unwrap(), 5, seq, 50);
    }
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 8192).unwrap();
    let got: BTreeMap<u64, Location> = r.queues[&5].iter().map(|m| (m.seq, m.location)).collect();
    assert_eq!(got, live);
}

#[test]
fn segment_deleted_when_all_its_messages_are_acked() {
    let dir = test_dir("delete");
    let (mut log, _) = SegmentLog::open(dir.path(), 1024).unwrap();
    let locs: Vec<Location> = (0..100).map(|s| publish(&mut log, 1, s, 40)).collect();
    log.sync().unwrap();
    let before = log.segments().len();
    assert!(before > 5);
    // Ack the messages of the first two segments.
    let first = locs[0].segment;
    for (s, &loc) in locs.iter().enumerate() {
        if loc.segment <= first + 1 {
            log.append_ack(1, s as u64, loc);
        }
    }
    // Nothing is deleted until the acks are flushed and synced...
    assert!(dir.path().join(seg_name(first)).exists());
    log.sync().unwrap();
    // ...then both files are gone.
    assert!(!dir.path().join(seg_name(first)).exists());
    assert!(!dir.path().join(seg_name(first + 1)).exists());
    assert_eq!(log.segments().len(), before - 2);
    // Queue deleted: every other segment but the current one goes.
    let rest: Vec<Location> = locs
        .iter()
        .copied()
        .filter(|l| l.segment > first + 1)
        .collect();
    log.append_queue_gone(1, ALL_SEQS, rest);
    publish(&mut log, 2, 0, 3000); // rotate away from the segment with the QueueGone
    publish(&mut log, 2, 1, 10);
    log.sync().unwrap();
    let names = files(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 1024).unwrap();
    assert_eq!(seqs(&r), BTreeMap::from([(2, vec![0, 1])]));
}

#[test]
fn an_ack_outlives_the_segment_of_the_acked_message() {
    let dir = test_dir("refs");
    let exists = |seg: u64| dir.path().join(seg_name(seg)).exists();
    // Segment size 200: a publish of 160 bytes fills a segment; small ones
    // (10 bytes) share one.
    let (mut log, _) = SegmentLog::open(dir.path(), 200).unwrap();
    let a = publish(&mut log, 1, 1, 160);
    let b = publish(&mut log, 1, 2, 160);
    let c = publish(&mut log, 1, 3, 160);
    assert_eq!((b.segment, c.segment), (a.segment + 1, a.segment + 2));
    // The ack of A goes to C's segment; then C is acked from a later segment.
    log.append_ack(1, 1, a);
    log.flush().unwrap();
    publish(&mut log, 2, 1, 160);
    log.append_ack(1, 3, c);
    log.sync().unwrap();
    // A's segment goes; then C's, whose ack of A no longer matters.
    assert!(!exists(a.segment));
    assert!(!exists(c.segment));
    assert!(exists(b.segment));

    // Now the acked message's segment stays (it has another live message), so
    // the dead segment holding the ack must stay too.
    let d = publish(&mut log, 3, 1, 10);
    let e = publish(&mut log, 3, 2, 150);
    let f = publish(&mut log, 3, 3, 160);
    assert_eq!(d.segment, e.segment);
    assert_eq!(f.segment, d.segment + 1);
    log.append_ack(3, 1, d); // lands in F's segment
    log.append_ack(3, 3, f); // F's segment: no live message left
    publish(&mut log, 4, 1, 10); // rotates away from F's segment
    log.sync().unwrap();
    assert!(exists(d.segment), "E is live");
    assert!(
        exists(f.segment),
        "holds the ack of D, whose segment is still there"
    );
    drop(log);
    let (mut log, r) = SegmentLog::open(dir.path(), 200).unwrap();
    assert_eq!(seqs(&r)[&3], vec![2], "D stays acked");
    assert!(exists(f.segment));
    // Once E is acked, both go (in two rounds).
    log.append_ack(3, 2, r.queues[&3][0].location);
    log.sync().unwrap();
    assert!(!exists(d.segment));
    assert!(!exists(f.segment));
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 200).unwrap();
    assert!(!r.queues.contains_key(&3));
    assert_eq!(seqs(&r)[&1], vec![2]);
}

/// Builds a segment file with `n` publishes of queue 1 (seqs 0..n) and returns
/// its bytes and the offset of each record (plus the end).
fn sample_segment(n: u64) -> (Vec<u8>, Vec<usize>) {
    let dir = test_dir("sample");
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    let mut offsets = Vec::new();
    for seq in 0..n {
        offsets.push(publish(&mut log, 1, seq, 10 + seq as usize).offset as usize);
    }
    log.flush().unwrap();
    let name = dir.path().join(seg_name(log.current_segment()));
    let bytes = std::fs::read(name).unwrap();
    offsets.push(bytes.len());
    (bytes, offsets)
}

/// Opens a directory holding only `bytes` as segment 1.
fn open_single(name: &str, bytes: &[u8]) -> (TestDir, Recovered, Option<u64>) {
    let dir = test_dir(name);
    std::fs::write(dir.path().join(seg_name(1)), bytes).unwrap();
    let (log, r) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    log.crash();
    let len = std::fs::metadata(dir.path().join(seg_name(1)))
        .ok()
        .map(|m| m.len());
    (dir, r, len)
}

#[test]
fn truncated_tail_at_every_offset() {
    let (bytes, offsets) = sample_segment(5);
    let last = offsets[4];
    for cut in last..bytes.len() {
        let (_dir, r, len) = open_single("tail", &bytes[..cut]);
        assert_eq!(seqs(&r).get(&1), Some(&vec![0, 1, 2, 3]), "cut at {cut}");
        assert_eq!(
            len,
            Some(last as u64),
            "file truncated to the last whole record"
        );
        assert_eq!(r.truncated.len(), usize::from(cut > last));
    }
    // Cuts inside the header: a partial header is removed.
    for cut in 0..SEGMENT_HEADER_LEN {
        let (_dir, r, len) = open_single("tail_header", &bytes[..cut]);
        assert_eq!(r.message_count(), 0);
        assert_eq!(len, None, "cut at {cut}");
    }
}

#[test]
fn bit_flip_anywhere() {
    let (bytes, offsets) = sample_segment(4);
    for pos in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[pos] ^= 0xff;
        let (dir, r, len) = open_single("flip", &bad);
        if pos < SEGMENT_HEADER_LEN {
            assert_eq!(r.message_count(), 0);
            assert_eq!(len, None);
            assert_eq!(r.bad_files.len(), 1);
            assert!(files(dir.path()).contains(&format!("{}.bad", seg_name(1))));
            continue;
        }
        // The records wholly before the flipped byte survive.
        let k = offsets.iter().rposition(|&o| o <= pos).unwrap();
        let want: Vec<u64> = (0..k as u64).collect();
        assert_eq!(
            seqs(&r).get(&1).cloned().unwrap_or_default(),
            want,
            "flip at {pos}"
        );
        // Cut after the last good record; with none left, removed.
        let want_len = if k == 0 {
            None
        } else {
            Some(offsets[k] as u64)
        };
        assert_eq!(len, want_len, "flip at {pos}");
    }
}

#[test]
fn garbage_and_empty_files() {
    let dir = test_dir("garbage");
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    publish(&mut log, 1, 1, 10);
    log.sync().unwrap();
    let good = log.current_segment();
    drop(log);
    std::fs::write(dir.path().join(seg_name(good + 1)), b"").unwrap();
    std::fs::write(
        dir.path().join(seg_name(good + 2)),
        b"this is not a segment at all, but long enough",
    )
    .unwrap();
    let mut wrong_number = Vec::new();
    encode_segment_header(&mut wrong_number, 77);
    std::fs::write(dir.path().join(seg_name(good + 3)), &wrong_number).unwrap();
    // Not segment names: left alone.
    for other in [
        "defs.log",
        "1.seg",
        "00000000000000AA.seg",
        "000000000000000g.seg",
    ] {
        std::fs::write(dir.path().join(other), b"x").unwrap();
    }
    let (mut log, r) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(seqs(&r), BTreeMap::from([(1, vec![1])]));
    assert_eq!(r.bad_files.len(), 2);
    assert!(log.current_segment() > good + 3);
    let names = files(dir.path());
    assert!(!names.contains(&seg_name(good + 1)), "empty file removed");
    assert!(names.contains(&format!("{}.bad", seg_name(good + 2))));
    assert!(names.contains(&format!("{}.bad", seg_name(good + 3))));
    assert!(names.contains("defs.log") && names.contains("00000000000000AA.seg"));
    publish(&mut log, 1, 2, 10);
    log.sync().unwrap();
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(seqs(&r), BTreeMap::from([(1, vec![1, 2])]));
    assert!(r.bad_files.is_empty());
}

#[test]
fn highest_segment_number_is_an_error_not_a_panic() {
    let dir = test_dir("max_number");
    let mut h = Vec::new();
    encode_segment_header(&mut h, u64::MAX);
    std::fs::write(dir.path().join(seg_name(u64::MAX)), &h).unwrap();
    assert!(SegmentLog::open(dir.path(), 1 << 20).is_err());
}

#[test]
fn unflushed_records_are_lost_in_a_crash_and_flushed_ones_kept() {
    let dir = test_dir("crash");
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    let a = publish(&mut log, 1, 1, 10);
    publish(&mut log, 1, 2, 10);
    log.flush().unwrap();
    publish(&mut log, 1, 3, 10);
    log.append_ack(1, 1, a);
    log.crash();
    let (_log, r) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(seqs(&r)[&1], vec![1, 2]);
}

#[test]
fn scratch_store_forgets_and_deletes_without_syncing() {
    let dir = test_dir("scratch");
    let (mut log, _) = SegmentLog::open(dir.path(), 1024).unwrap();
    publish(&mut log, 1, 1, 10);
    drop(log);
    let mut log = SegmentLog::open_scratch(dir.path(), 1024).unwrap();
    assert!(files(dir.path()).is_empty(), "old segments wiped");
    let locs: Vec<Location> = (0..50).map(|s| publish(&mut log, 1, s, 40)).collect();
    log.flush().unwrap();
    for (s, &loc) in locs.iter().enumerate() {
        check_message(&log.read(loc).unwrap(), 1, s as u64, 40);
    }
    let first = locs[0].segment;
    for &loc in locs.iter().filter(|l| l.segment == first) {
        log.release(loc);
    }
    log.flush().unwrap();
    assert!(!dir.path().join(seg_name(first)).exists());
    assert!(dir.path().join(seg_name(first + 1)).exists());
}

/// 1 M messages of 16 bytes (100 k in a debug build): prints how long recovery
/// takes. The timing is not asserted: the machine is shared.
#[test]
fn recover_one_million_messages() {
    let n: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let dir = test_dir("million");
    let (mut log, _) = SegmentLog::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    let body = [b'x'; 16];
    let t0 = Instant::now();
    for seq in 0..n {
        log.append_publish(&Publish {
            queue_id: seq % 10,
            seq: seq / 10,
            exchange: b"",
            routing_key: b"bench",
            properties: b"",
            body: &body,
            expires_at: 0,
        });
        if seq % 10_000 == 9_999 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
    let write = t0.elapsed();
    drop(log);
    let t0 = Instant::now();
    let (_log, r) = SegmentLog::open(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    let elapsed = t0.elapsed();
    println!(
        "recovered {} messages ({} bytes, {} segments) in {elapsed:?} (appending took {write:?})",
        r.message_count(),
        r.bytes,
        r.segments
    );
    assert_eq!(r.message_count() as u64, n);
    assert_eq!(r.queues.len(), 10);
    let q3 = &r.queues[&3];
    assert!(q3.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    assert_eq!(&q3[5].message.as_ref().unwrap().body[..], &body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random bytes as a segment file, with and without a valid header in
    /// front: `open` neither panics nor fails.
    #[test]
    fn random_segment_file_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        with_header in any::<bool>(),
    ) {
        let mut file = Vec::new();
        if with_header {
            encode_segment_header(&mut file, 1);
        }
        file.extend_from_slice(&bytes);
        let (_dir, r, _) = open_single("proptest", &file);
        prop_assert!(r.message_count() <= file.len() / 33);
    }

    /// Valid records followed by random bytes: the valid ones all survive.
    #[test]
    fn valid_prefix_survives_random_tail(
        n in 1u64..6,
        tail in proptest::collection::vec(any::<u8>(), 1..256),
    ) {
        let (mut bytes, _) = sample_segment(n);
        bytes.extend_from_slice(&tail);
        let (_dir, r, _) = open_single("proptest_tail", &bytes);
        let got = seqs(&r).get(&1).cloned().unwrap_or_default();
        // The random tail is (almost surely) no valid record.
        prop_assert_eq!(got.get(..n as usize), Some(&(0..n).collect::<Vec<_>>()[..]));
    }
}

/// With `load_first`, only the head of each queue is loaded at open; `load`
/// reads the rest back in batches.
#[test]
fn load_first_then_load_in_batches() {
    let dir = test_dir("load_first");
    {
        let (mut log, _) = SegmentLog::open(dir.path(), 4096).unwrap();
        for seq in 1..=500u64 {
            for q in [1u64, 2] {
                log.append_publish(&Publish {
                    queue_id: q,
                    seq,
                    exchange: b"",
                    routing_key: b"k",
                    properties: b"",
                    body: format!("{q}-{seq}").as_bytes(),
                    expires_at: 0,
                });
            }
        }
        log.sync().unwrap();
    }
    let opts = Options {
        segment_size: 4096,
        load_max: DEFAULT_LOAD_MAX,
        load_first: 10,
    };
    let (mut log, mut r) = SegmentLog::open_with(dir.path(), opts).unwrap();
    for q in [1u64, 2] {
        let msgs = r.queues.get_mut(&q).unwrap();
        assert_eq!(msgs.len(), 500);
        assert!(msgs[..10].iter().all(|m| m.message.is_some()));
        assert!(msgs[10..].iter().all(|m| m.message.is_none()));
        for chunk in msgs.chunks_mut(64) {
            log.load(chunk).unwrap();
        }
        for m in msgs.iter() {
            let body = &m.message.as_ref().expect("loaded").body;
            assert_eq!(&body[..], format!("{q}-{}", m.seq).as_bytes());
        }
    }
}

/// A replica's copy (`core::quorum`): a message replaced by a publish of
/// the same (queue, seq) without an ack, and a seq acked then published
/// again after `seal_pending_acks`, both survive a restart; an ack left
/// pending behind a publish of its seq would kill it.
#[test]
fn superseded_and_reacked_seqs_survive_recovery() {
    let dir = test_dir("supersede");
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    let old5 = publish(&mut log, 7, 5, 20);
    let old6 = publish(&mut log, 7, 6, 20);
    let new5 = publish(&mut log, 7, 5, 30);
    log.supersede(old5);
    log.append_ack(7, 6, old6);
    log.seal_pending_acks();
    let new6 = publish(&mut log, 7, 6, 40);
    log.sync().unwrap();
    drop(log);
    let (_log, r) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(seqs(&r)[&7], vec![5, 6]);
    for m in &r.queues[&7] {
        let (want, size) = if m.seq == 5 { (new5, 30) } else { (new6, 40) };
        assert_eq!(m.location, want);
        check_message(m.message.as_ref().unwrap(), 7, m.seq, size);
    }
}
