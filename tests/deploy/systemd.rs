//! `deploy/systemd/ratelimiter.service`: it starts the binary with a
//! configuration file, stops it with the signal that drains, gives it
//! longer than the default shutdown timeout, and reloads with SIGHUP.

use crate::common::read;

#[test]
fn the_unit_starts_drains_and_reloads() {
    let unit = read("deploy/systemd/ratelimiter.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= in the unit"))
            .to_owned()
    };
    assert!(value("ExecStart").contains(" serve --config "));
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(stop > 10, "longer than server.shutdown_timeout's default 10 s");
}
