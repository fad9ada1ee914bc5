//! Enrollment tokens under a jumping clock: expiry follows the wall clock
//! (a jump forward ends a token early, a jump back lengthens it by the
//! jump), and a spent token stays spent whatever the clock says.

use sealgate::enroll::tokens::{check, create, TokenRefusal};
use sealgate::identity::ClientId;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

#[test]
fn a_spent_token_stays_spent_whichever_way_the_clock_jumps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = ClientId::parse("alice").expect("id");
    let (token, _) = create(dir.path(), &alice, 600, T0).expect("token");
    let pending = check(dir.path(), &token, T0 + MIN).expect("valid");
    assert_eq!(pending.spend().expect("spent").client, alice);
    for now in [T0 - 10 * MIN, T0, T0 + MIN, T0 + 5 * MIN, T0 + 60 * MIN] {
        assert_eq!(
            check(dir.path(), &token, now).expect_err("spent"),
            TokenRefusal::Used,
            "at {now}"
        );
    }
}

#[test]
fn token_expiry_follows_the_wall_clock_through_jumps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = ClientId::parse("alice").expect("id");
    let (token, expires) = create(dir.path(), &alice, 600, T0).expect("token");
    assert_eq!(expires, T0 + 10 * MIN);
    // Fifteen minutes ahead: expired (the operator issues a new one).
    assert_eq!(
        check(dir.path(), &token, T0 + 15 * MIN).expect_err("expired"),
        TokenRefusal::Expired
    );
    // Back before its creation: valid again (unspent, single use still).
    let pending = check(dir.path(), &token, T0 - 10 * MIN).expect("valid");
    assert_eq!(pending.client, alice);
    // The last instant, and one after.
    check(dir.path(), &token, expires).expect("valid at its expiry");
    assert_eq!(
        check(dir.path(), &token, expires + 1).expect_err("expired"),
        TokenRefusal::Expired
    );
}
