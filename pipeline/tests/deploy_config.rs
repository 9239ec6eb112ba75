//! `deploy/config/charts.toml` is the seed's monitors written out as configuration: it must
//! load and describe exactly the built-in charts, so a fab can start from it.

use std::path::Path;

use spcvm::config;
use spcvm_operators::{MonitorConfig, defaults};

#[test]
fn deploy_chart_config_equals_the_seed_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/charts.toml");
    let (cfg, monitor) = config::load(&path).expect("deploy/config/charts.toml loads");
    assert!(!cfg.seed_defaults);
    assert_eq!(cfg.charts, defaults::seed_charts());
    assert_eq!(cfg.dedup, MonitorConfig::default().dedup);
    // And the monitor built from it routes like the built-in one.
    let builtin = spcvm_operators::SpcMonitor::new(&MonitorConfig::default()).unwrap();
    let a: Vec<_> = monitor.charts().iter().map(|c| &c.spec).collect();
    let b: Vec<_> = builtin.charts().iter().map(|c| &c.spec).collect();
    assert_eq!(a, b);
}
