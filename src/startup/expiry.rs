//! Credentials about to end: the `[expiry]` horizon and the warning about
//! everything that ends within it (at start, on reload, every hour).

use crate::config::Config;
use crate::gateway::Gateway;

/// The `[expiry]` horizon in milliseconds.
pub fn expiry_horizon_ms(config: &Config) -> i64 {
    i64::from(config.expiry.warning_days) * 86_400_000
}

/// Warns about every credential of `config` and the gateway's registry
/// that ends within the horizon (at start, on reload, every hour).
pub fn report_expiring(config: &Config, gateway: &Gateway) {
    let now = gateway.clock.now_ms();
    let items = crate::expiry::scan(
        config,
        &gateway.registry.load(),
        now,
        expiry_horizon_ms(config),
    );
    crate::expiry::report(&gateway.audit, &items, now);
}
