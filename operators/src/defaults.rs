//! The seed's ion-implant and RTP monitors: which chart each parameter gets, with its settings.
//!
//! The reference lists engineering values next to some parameters ("target=95%, LCL=90%",
//! "target=0%, UCL=5%", "range=[0.6, 0.8]", "critical threshold ±15%"). Those are limits on
//! the product, not the voice of the process, so they become *specification* limits (critical
//! alerts) while the control limits are estimated in Phase I. Using them as control limits would
//! put every in-control overshoot point (always above 0 %) on one side of a center line of 0 and
//! alarm on every wafer.
//!
//! | tool | parameter | chart | settings |
//! |---|---|---|---|
//! | ion implant | `beam_current_mA` | EWMA | λ = 0.2, L = 3, critical ±15 % of center |
//! | ion implant | `dose_uniformity_pct` | X-bar/R | n = 5, spec lower 90 (target 95) |
//! | ion implant | `source_pressure_mtorr` | CUSUM | k = 0.5, h = 5 |
//! | ion implant | `analyzer_field_gauss` | X-bar/R | n = 5 |
//! | RTP | `ramp_tracking_error_C` | EWMA | λ = 0.2, L = 3, spec ±10 °C |
//! | RTP | `overshoot_pct` | X-bar/R | n = 5, spec upper 5 (target 0) |
//! | RTP | `lamp_power_pct` | CUSUM | k = 0.5, h = 5 |
//! | RTP | `emissivity` | EWMA | λ = 0.15, L = 3, spec [0.6, 0.8] |
//! | RTP | `gas_flow_deviation_sccm` | X-bar/R | n = 5, spec ±5 (target 0) |

use spcvm_schemas::ToolType;

use crate::spc::{ChartSpec, ChartType};

fn chart(
    tool: ToolType,
    parameter: &str,
    ty: ChartType,
    tweak: impl FnOnce(&mut ChartSpec),
) -> ChartSpec {
    let mut spec = ChartSpec::new(parameter, ty);
    spec.tool_type = Some(tool);
    tweak(&mut spec);
    spec
}

/// The ion-implant monitor's charts.
pub fn ion_implant() -> Vec<ChartSpec> {
    use ChartType::*;
    let t = ToolType::IonImplant;
    vec![
        chart(t, "beam_current_mA", Ewma, |c| {
            c.lambda = 0.2;
            c.critical_pct = Some(15.0);
        }),
        chart(t, "dose_uniformity_pct", XbarR, |c| {
            c.spec_lower = Some(90.0)
        }),
        chart(t, "source_pressure_mtorr", Cusum, |c| {
            c.k = 0.5;
            c.h = 5.0;
        }),
        chart(t, "analyzer_field_gauss", XbarR, |c| c.subgroup_size = 5),
    ]
}

/// The RTP monitor's charts.
pub fn rtp() -> Vec<ChartSpec> {
    use ChartType::*;
    let t = ToolType::Rtp;
    vec![
        chart(t, "ramp_tracking_error_C", Ewma, |c| {
            c.lambda = 0.2;
            c.spec_lower = Some(-10.0);
            c.spec_upper = Some(10.0);
        }),
        chart(t, "overshoot_pct", XbarR, |c| c.spec_upper = Some(5.0)),
        chart(t, "lamp_power_pct", Cusum, |c| {
            c.k = 0.5;
            c.h = 5.0;
        }),
        chart(t, "emissivity", Ewma, |c| {
            c.lambda = 0.15;
            c.spec_lower = Some(0.6);
            c.spec_upper = Some(0.8);
        }),
        chart(t, "gas_flow_deviation_sccm", XbarR, |c| {
            c.spec_lower = Some(-5.0);
            c.spec_upper = Some(5.0);
        }),
    ]
}

/// Both monitors.
pub fn seed_charts() -> Vec<ChartSpec> {
    let mut v = ion_implant();
    v.extend(rtp());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_charts_compile() {
        let charts = seed_charts();
        assert_eq!(charts.len(), 9);
        for c in &charts {
            c.compile()
                .unwrap_or_else(|e| panic!("{}: {e}", c.parameter));
        }
    }
}
