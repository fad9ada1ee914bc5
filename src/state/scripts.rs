//! The Lua scripts the store runs, assembled once from the `*.lua` files
//! beside this one (the shared pieces, `common.lua`, `gcra.lua` and
//! `srclog.lua`, are pasted in where a script says `--@EPOCH@`, `--@GCRA@`
//! or `--@SRCLOG@`), and the GCRA rate as they take it.

use crate::policy::RateLimitFile;

const COMMON_LUA: &str = include_str!("common.lua");
const GCRA_LUA: &str = include_str!("gcra.lua");

/// The change log's Lua (included by `srcpublish.lua` and `unblock.lua`).
const SRCLOG_LUA: &str = include_str!("srclog.lua");

fn script(body: &str) -> redis::Script {
    redis::Script::new(
        &body
            .replace("--@EPOCH@", COMMON_LUA)
            .replace("--@GCRA@", GCRA_LUA)
            .replace("--@SRCLOG@", SRCLOG_LUA),
    )
}

/// `srcpublish.lua`, sent with `EVAL` inside the atomic write of a source
/// block.
pub(super) static PUBLISH_LUA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| include_str!("srcpublish.lua").replace("--@SRCLOG@", SRCLOG_LUA));

/// The scripts run with `EVALSHA` (loaded by the client library when the
/// store does not know them yet).
pub(super) struct Scripts {
    /// Stage 3's one round trip (`admit.lua`).
    pub(super) admit: redis::Script,
    /// The rest of a dearer tool's cost (`rate.lua`).
    pub(super) rate: redis::Script,
    /// The epoch at every probe (`probe.lua`).
    pub(super) probe: redis::Script,
    /// An operator's unblock (`unblock.lua`).
    pub(super) unblock: redis::Script,
    /// The tidying of the source index (`tidy.lua`).
    pub(super) tidy: redis::Script,
    /// The write-back after a local fallback (`writeback.lua`).
    pub(super) writeback: redis::Script,
}

impl Scripts {
    pub(super) fn load() -> Scripts {
        Scripts {
            admit: script(include_str!("admit.lua")),
            rate: script(include_str!("rate.lua")),
            probe: script(include_str!("probe.lua")),
            unblock: script(include_str!("unblock.lua")),
            tidy: script(include_str!("tidy.lua")),
            writeback: script(include_str!("writeback.lua")),
        }
    }
}

/// A GCRA rate as the scripts take it: T and tau in microseconds.
pub(super) fn gcra_args(rate: RateLimitFile) -> (String, String) {
    let t = 1_000_000.0 / f64::from(rate.per_second.max(1));
    let tau = t * f64::from(rate.burst.max(1).saturating_sub(1));
    (format!("{t:.3}"), format!("{tau:.3}"))
}
