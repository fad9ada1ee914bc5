//! Expiry warnings under a jumping clock: the scan is a pure function of
//! the time it is given, so a jump moves what is reported by exactly the
//! jump (reporting only: nothing is refused on its account).

use sealgate::config::Config;
use sealgate::expiry::{scan, Expiring};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;

#[test]
fn expiry_warnings_move_with_the_clock_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = sealgate::dev::setup(&dir.path().join("dev"), None).expect("dev setup");
    let config = Config::load(&path).expect("config");
    let registry = config.load_registry(None).expect("registry");
    let now = sealgate::gateway::Clock::now_ms(&sealgate::gateway::SystemClock);

    // Every credential of the dev setup, whatever its lifetime.
    let all = scan(&config, &registry, now, 10_000 * DAY);
    let whats: Vec<&str> = all.iter().map(|e| e.what).collect();
    for what in ["server_certificate", "client_ca", "crl"] {
        assert!(whats.contains(&what), "{what} in {all:?}");
    }
    // Ten minutes either way changes nothing with a wide horizon.
    for jump in [-10 * MIN, 10 * MIN] {
        assert_eq!(scan(&config, &registry, now + jump, 10_000 * DAY), all);
    }
    // With a horizon ending just after the soonest credential, a jump
    // back by ten minutes drops it, a jump ahead keeps it: the boundary
    // moves by the jump, no more.
    let soonest: &Expiring = all.first().expect("one credential");
    let horizon = soonest.not_after_ms - now + 1;
    let at_now = scan(&config, &registry, now, horizon);
    assert_eq!(at_now.first(), Some(soonest));
    let back = scan(&config, &registry, now - 10 * MIN, horizon);
    assert!(!back.contains(soonest), "{back:?}");
    let ahead = scan(&config, &registry, now + 10 * MIN, horizon);
    assert!(ahead.contains(soonest), "{ahead:?}");
}
