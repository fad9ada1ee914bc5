//! When an established connection is to be closed: the idle timeout, the
//! hard age past `max_connection_age`, and the grace a connection marked by
//! the request path gets to have its last answers written. Pure decisions
//! over a [`Moment`]; the stream acts on them.

use std::time::Duration;

use tokio::time::Instant;

/// After the request path marks a connection for closing, how long it must
/// have had no request in flight before it is closed: the last response is
/// written and flushed by then.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How long a connection marked for closing may live regardless of the
/// requests it keeps in flight.
const CLOSE_HARD: Duration = Duration::from_secs(1);

/// How soon to look again when a marked connection is quiet but still has
/// unflushed bytes.
const FLUSH_RECHECK: Duration = Duration::from_millis(10);

/// Why the transport closed an established connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// No request for `idle_timeout`.
    Idle,
    /// Past `max_connection_age` plus `request_timeout_secs`.
    Aged,
    /// Marked by the request path after identity denials.
    IdentityDenials,
    /// A CRL is past its next update plus `crl_grace_secs`.
    CrlExpired,
}

/// The timing limits of an established connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetime {
    pub(super) idle_timeout: Duration,
    /// `max_connection_age` plus `request_timeout_secs`: the GOAWAY sent at
    /// `max_connection_age` gives the requests in flight this long.
    pub(super) hard_age: Duration,
}

/// What a connection looks like at one instant, for [`Lifetime::verdict`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    pub(super) now: Instant,
    pub(super) opened: Instant,
    pub(super) in_flight: usize,
    pub(super) last_activity: Instant,
    /// When the transport saw the request path's mark, if it has.
    pub(super) marked: Option<Instant>,
    /// Whether everything written has been flushed.
    pub(super) flushed: bool,
}

/// Whether to close a connection now, or when to look again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Close(Closing),
    RecheckAt(Instant),
}

impl Lifetime {
    /// The limits that hold however busy the connection is: the hard age,
    /// and the time a marked connection may live.
    pub(super) fn hard_limit(&self, m: &Moment) -> Option<Closing> {
        if m.now >= m.opened + self.hard_age {
            return Some(Closing::Aged);
        }
        match m.marked {
            Some(at) if m.now >= at + CLOSE_HARD => Some(Closing::IdentityDenials),
            _ => None,
        }
    }

    /// Every limit: the hard ones, then a marked connection that has been
    /// quiet for [`CLOSE_GRACE`] with its writes flushed, then the idle
    /// timeout. A request in flight holds off the last two; its end is seen
    /// at the next recheck (or, for a marked connection, at once: the
    /// request's end wakes the reader).
    pub(super) fn verdict(&self, m: &Moment) -> Verdict {
        if let Some(closing) = self.hard_limit(m) {
            return Verdict::Close(closing);
        }
        let mut next = m.opened + self.hard_age;
        if let Some(at) = m.marked {
            next = next.min(at + CLOSE_HARD);
            if m.in_flight == 0 {
                let quiet = at.max(m.last_activity) + CLOSE_GRACE;
                if m.now < quiet {
                    next = next.min(quiet);
                } else if m.flushed {
                    return Verdict::Close(Closing::IdentityDenials);
                } else {
                    next = next.min(m.now + FLUSH_RECHECK);
                }
            }
        }
        if m.in_flight == 0 {
            let idle = m.last_activity + self.idle_timeout;
            if m.now >= idle {
                return Verdict::Close(Closing::Idle);
            }
            next = next.min(idle);
        } else {
            next = next.min(m.now + self.idle_timeout);
        }
        Verdict::RecheckAt(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifetime() -> Lifetime {
        Lifetime {
            idle_timeout: Duration::from_secs(300),
            hard_age: Duration::from_secs(3_600 + 60),
        }
    }

    fn at(opened: Instant, secs: u64) -> Moment {
        Moment {
            now: opened + Duration::from_secs(secs),
            opened,
            in_flight: 0,
            last_activity: opened,
            marked: None,
            flushed: true,
        }
    }

    #[test]
    fn an_idle_connection_closes_at_the_idle_timeout() {
        let o = Instant::now();
        let l = lifetime();
        assert_eq!(
            l.verdict(&at(o, 10)),
            Verdict::RecheckAt(o + Duration::from_secs(300))
        );
        assert_eq!(l.verdict(&at(o, 300)), Verdict::Close(Closing::Idle));
        let busy = Moment {
            in_flight: 1,
            ..at(o, 400)
        };
        assert_eq!(
            l.verdict(&busy),
            Verdict::RecheckAt(busy.now + Duration::from_secs(300)),
            "a request in flight holds off the idle timeout"
        );
    }

    #[test]
    fn past_the_hard_age_a_connection_closes_however_busy() {
        let o = Instant::now();
        let l = lifetime();
        let busy = Moment {
            in_flight: 3,
            last_activity: o + Duration::from_secs(3_659),
            ..at(o, 3_659)
        };
        assert!(matches!(l.verdict(&busy), Verdict::RecheckAt(_)));
        let late = Moment {
            now: o + Duration::from_secs(3_660),
            ..busy
        };
        assert_eq!(l.verdict(&late), Verdict::Close(Closing::Aged));
        assert_eq!(l.hard_limit(&late), Some(Closing::Aged));
    }

    #[test]
    fn a_marked_connection_closes_once_quiet_and_flushed() {
        let o = Instant::now();
        let l = lifetime();
        let marked = o + Duration::from_secs(5);
        let busy = Moment {
            in_flight: 1,
            marked: Some(marked),
            last_activity: marked,
            ..at(o, 5)
        };
        assert_eq!(
            l.verdict(&busy),
            Verdict::RecheckAt(marked + CLOSE_HARD),
            "in flight: woken by the request's end, else at the hard limit"
        );
        let quiet = Moment {
            in_flight: 0,
            now: marked + Duration::from_millis(20),
            last_activity: marked + Duration::from_millis(10),
            ..busy
        };
        assert_eq!(
            l.verdict(&quiet),
            Verdict::RecheckAt(marked + Duration::from_millis(10) + CLOSE_GRACE)
        );
        let later = Moment {
            now: marked + Duration::from_millis(10) + CLOSE_GRACE,
            ..quiet
        };
        assert_eq!(l.verdict(&later), Verdict::Close(Closing::IdentityDenials));
        let unflushed = Moment {
            flushed: false,
            ..later
        };
        assert_eq!(
            l.verdict(&unflushed),
            Verdict::RecheckAt(later.now + FLUSH_RECHECK),
            "the last response is not cut off"
        );
        let stuck = Moment {
            now: marked + CLOSE_HARD,
            ..unflushed
        };
        assert_eq!(l.verdict(&stuck), Verdict::Close(Closing::IdentityDenials));
        let streaming = Moment {
            in_flight: 5,
            ..stuck
        };
        assert_eq!(
            l.hard_limit(&streaming),
            Some(Closing::IdentityDenials),
            "a peer that keeps requests in flight is closed regardless"
        );
    }
}
