use super::*;
use crate::store::segments::test_dir;
use bytes::BufMut;

fn chunk(first: u64, ts: u64, bodies: &[&[u8]]) -> Bytes {
    let mut b = ChunkBuilder::new();
    for body in bodies {
        b.push(b"ex", b"rk", |out| out.put_slice(b"PROPS"), body);
    }
    b.seal(first, ts, &[])
}

fn bodies(c: &Chunk) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(r) = c.record_at(at) {
        let body_at = r.start + r.exchange_len + r.routing_key_len + r.properties_len;
        assert_eq!(&c.bytes[r.start..r.start + 2], b"ex");
        out.push(c.bytes[body_at..r.end].to_vec());
        at = r.next;
    }
    out
}

#[test]
fn append_read_and_seek() {
    let d = test_dir("stream-basic");
    let mut log = StreamLog::open(d.path(), 0).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (0, 0));
    assert!(log.read(log.start()).unwrap().is_none());
    let c1 = log.append(chunk(0, 1000, &[b"a", b"b"])).unwrap();
    let c2 = log.append(chunk(2, 2000, &[b"c"])).unwrap();
    assert_eq!(log.next_offset(), 3);
    let r = log.read(log.start()).unwrap().unwrap();
    assert_eq!((r.first_offset, r.count, r.timestamp), (0, 2, 1000));
    assert_eq!(bodies(&r), vec![b"a".to_vec(), b"b".to_vec()]);
    let r2 = log.read(StreamLog::after(&r)).unwrap().unwrap();
    assert_eq!(r2.at, c2.at);
    assert!(log.read(StreamLog::after(&r2)).unwrap().is_none());
    assert_eq!(log.seek_offset(1).unwrap(), c1.at);
    assert_eq!(log.seek_offset(2).unwrap(), c2.at);
    assert_eq!(log.seek_offset(3).unwrap(), log.end());
    assert_eq!(log.seek_timestamp(1500).unwrap(), c2.at);
    assert_eq!(log.seek_timestamp(0).unwrap(), c1.at);
    assert_eq!(log.seek_timestamp(9999).unwrap(), log.end());
    assert_eq!(log.last_chunk(), Some((c2.at, 2)));
}

#[test]
fn segments_roll_and_retention_keeps_the_current_one() {
    let d = test_dir("stream-roll");
    let mut log = StreamLog::open(d.path(), 200).unwrap();
    let body = [7u8; 100];
    for i in 0..10u64 {
        log.append(chunk(i, 1000 + i, &[&body])).unwrap();
    }
    assert_eq!(
        log.segment_count(),
        10,
        "one chunk per segment at 200 octets"
    );
    // Reading walks across segments.
    let mut at = log.start();
    let mut n = 0;
    while let Some(c) = log.read(at).unwrap() {
        assert_eq!(c.first_offset, n);
        n += 1;
        at = StreamLog::after(&c);
    }
    assert_eq!(n, 10);
    assert_eq!(log.seek_offset(7).unwrap().segment, 7);
    // By age: everything older than 1005 goes.
    assert_eq!(log.retain(0, 10, 1015), 5);
    assert_eq!(log.first_offset(), 5);
    // By size: never the current segment.
    log.retain(1, 0, 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.first_offset(), 9);
    assert_eq!(log.seek_offset(0).unwrap(), log.start());
    drop(log);
    let log = StreamLog::open(d.path(), 200).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (9, 10));
}

#[test]
fn recovery_cuts_a_torn_chunk() {
    let d = test_dir("stream-torn");
    let mut log = StreamLog::open(d.path(), 0).unwrap();
    log.append(chunk(0, 1, &[b"one"])).unwrap();
    let c = log.append(chunk(1, 2, &[b"two", b"three"])).unwrap();
    let path = seg_path(d.path(), 0, "seg");
    drop(log);
    // Tear the last chunk.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(c.at.pos + c.len() - 3).unwrap();
    let mut log = StreamLog::open(d.path(), 0).unwrap();
    assert_eq!(log.next_offset(), 1);
    assert_eq!(log.last_chunk().unwrap().1, 0);
    // Appending goes on from there.
    let c = log.append(chunk(1, 3, &[b"again"])).unwrap();
    assert_eq!(
        bodies(&log.read(c.at).unwrap().unwrap()),
        vec![b"again".to_vec()]
    );
    // A flipped bit is found by the CRC.
    drop(log);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, c.at.pos + 50).unwrap();
    f.write_all_at(&[b[0] ^ 1], c.at.pos + 50).unwrap();
    let log = StreamLog::open(d.path(), 0).unwrap();
    assert_eq!(log.next_offset(), 1);
}

#[test]
fn written_files_are_handed_out_once() {
    let d = test_dir("stream-written");
    let mut log = StreamLog::open(d.path(), 0).unwrap();
    let mut files = Vec::new();
    log.take_written(&mut files);
    assert_eq!(files.len(), 3, "segment, index and the directory");
    files.clear();
    log.take_written(&mut files);
    assert!(files.is_empty());
    log.append(chunk(0, 1, &[b"x"])).unwrap();
    log.take_written(&mut files);
    assert_eq!(
        files.len(),
        1,
        "the segment; its index is rebuilt at recovery"
    );
}

#[test]
fn an_unsynced_index_of_a_full_segment_is_rebuilt() {
    let d = test_dir("stream-idx");
    let mut log = StreamLog::open(d.path(), 200).unwrap();
    for i in 0..3u64 {
        log.append(chunk(i, 10 + i, &[&[1u8; 100]])).unwrap();
    }
    drop(log);
    // The first segment's index lost its entry (never synced).
    let idx = seg_path(d.path(), 0, "idx");
    OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(0)
        .unwrap();
    let log = StreamLog::open(d.path(), 200).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (0, 3));
    assert_eq!(log.seek_offset(0).unwrap(), log.start());
    assert_eq!(
        log.seek_timestamp(10).unwrap(),
        log.start(),
        "its timestamps too"
    );
}

#[test]
fn record_at_refuses_bad_lengths() {
    let mut b = ChunkBuilder::new();
    b.push(b"e", b"r", |o| o.put_slice(b"p"), b"body");
    let bytes = b.seal(0, 0, b"FILTER");
    let c = Chunk {
        at: ChunkPos { segment: 0, pos: 8 },
        first_offset: 0,
        timestamp: 0,
        count: 1,
        bytes: bytes.clone(),
    };
    assert_eq!(c.filter(), b"FILTER");
    let r = c.record_at(0).unwrap();
    assert_eq!(&c.bytes[r.start..r.end], b"erpbody");
    assert!(c.record_at(r.next).is_none());
    let mut bad = BytesMut::from(&bytes[..]);
    bad[CHUNK_HEADER..CHUNK_HEADER + 4].copy_from_slice(&1000u32.to_be_bytes());
    let c = Chunk {
        bytes: bad.freeze(),
        ..c
    };
    assert!(c.record_at(0).is_none());
}

#[test]
fn a_clean_open_trusts_the_last_index_but_checks_its_length() {
    let d = test_dir("stream-clean");
    let mut log = StreamLog::open(d.path(), 0).unwrap();
    log.append(chunk(0, 1, &[b"a"])).unwrap();
    let c = log.append(chunk(1, 2, &[b"b", b"c"])).unwrap();
    log.sync_all().unwrap();
    drop(log);
    let log = StreamLog::open_with(d.path(), 0, true).unwrap();
    assert_eq!((log.next_offset(), log.last_chunk()), (3, Some((c.at, 1))));
    drop(log);
    // A chunk written after the index (no clean shutdown since): the
    // lengths disagree, so the segment is read through after all.
    let path = seg_path(d.path(), 0, "seg");
    let f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all_at(&chunk(3, 3, &[b"d"]), c.at.pos + c.len())
        .unwrap();
    let log = StreamLog::open_with(d.path(), 0, true).unwrap();
    assert_eq!(log.next_offset(), 4);
}
