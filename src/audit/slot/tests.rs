//! A sink's slot: a long spool is re-sent a few chunks at a time, and the
//! records that arrive meanwhile go after it, never before.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Slot;
use crate::audit::sink::Sink;
use crate::audit::spool::{Spool, DRAIN_CHUNKS};

/// A sink that takes everything, recording what it got.
struct Back(Arc<Mutex<Vec<String>>>);

impl Sink for Back {
    fn deliver(&mut self, lines: &[Arc<str>]) -> Result<(), (usize, io::Error)> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(lines.iter().map(|l| l.to_string()));
        Ok(())
    }
}

fn line(i: u64) -> Arc<str> {
    Arc::from(format!("{{\"seq\":{i}}}"))
}

#[test]
fn records_arriving_while_a_long_spool_is_re_sent_go_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = Spool::open(dir.path().join("sink-1.spool")).expect("spool");
    let spooled: Vec<Arc<str>> = (0..3000).map(line).collect();
    spool.append(&spooled).expect("append");
    let got = Arc::new(Mutex::new(Vec::new()));
    let mut slot = Slot::new("s".into(), Box::new(Back(got.clone())), Some(spool));
    slot.backlog.push_back((3000, line(3000)));
    assert!(slot.flush(Instant::now()).is_none(), "no failure");
    let first = got.lock().expect("lock").len();
    assert_eq!(first, 256 * DRAIN_CHUNKS, "a few chunks per flush");
    assert!(
        slot.backlog.is_empty(),
        "the new record is committed, in the spool"
    );
    for i in 3001..3003 {
        slot.backlog.push_back((i, line(i)));
        assert!(slot.flush(Instant::now()).is_none());
    }
    for _ in 0..8 {
        slot.flush(Instant::now());
    }
    let want: Vec<String> = (0..3003).map(|i| line(i).to_string()).collect();
    assert_eq!(*got.lock().expect("lock"), want, "in order, each once");
}
