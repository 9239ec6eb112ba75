//! The tools' charted parameters: their levels per recipe, their noise, and how a fault
//! moves them ([`FaultKind`] and its [`FaultKind::effect`]).
//!
//! Levels and noise follow `examples/gen_drift.py` for the implanter and the seed charts'
//! specification limits for RTP, with the noise well inside them:
//!
//! | tool | parameter | level | sd (one sample) |
//! |---|---|---|---|
//! | ion implant | `beam_current_mA` | per recipe (1.0 for `B11_30KEV`) | 1 % of the level |
//! | ion implant | `dose_uniformity_pct` | 95.0 | 0.4 |
//! | ion implant | `source_pressure_mtorr` | 2.3e-5 | 1e-7 |
//! | ion implant | `analyzer_field_gauss` | per recipe (1520 for `B11_30KEV`) | 1.5 |
//! | RTP | `ramp_tracking_error_C` | 0.0 | 1.0 |
//! | RTP | `overshoot_pct` | 2.0 | 0.3 |
//! | RTP | `lamp_power_pct` | per recipe (62 for `SPIKE_1050C`) | 0.8 |
//! | RTP | `emissivity` | 0.70 | 0.005 |
//! | RTP | `gas_flow_deviation_sccm` | 0.0 | 0.5 |

use serde::{Deserialize, Serialize};
use spcvm_schemas::ToolType;

/// One charted parameter of a tool type: its name, level, noise and the decimals written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parameter {
    /// The measurement name, as the charts know it.
    pub name: &'static str,
    /// The mean of one sample on a healthy tool.
    pub level: f64,
    /// The standard deviation of one sample on a healthy tool.
    pub sd: f64,
    /// Decimals the value is rounded to in the output.
    pub decimals: i32,
}

/// The parameters of the ion-implant recipe `recipe`, or `None` for a recipe the model
/// does not know (see [`RECIPES`]).
fn implant(recipe: &str) -> Option<[Parameter; 4]> {
    let (beam, field) = match recipe {
        "B11_30KEV" => (1.0, 1520.0),
        "P31_80KEV" => (2.5, 2150.0),
        "AS75_40KEV" => (1.8, 2890.0),
        _ => return None,
    };
    Some([
        p("beam_current_mA", beam, beam * 0.01, 6),
        p("dose_uniformity_pct", 95.0, 0.4, 4),
        p("source_pressure_mtorr", 2.3e-5, 1e-7, 11),
        p("analyzer_field_gauss", field, 1.5, 3),
    ])
}

/// The parameters of the RTP recipe `recipe`, or `None` for a recipe the model does not know.
fn rtp(recipe: &str) -> Option<[Parameter; 5]> {
    let lamp = match recipe {
        "SPIKE_1050C" => 62.0,
        "RTA_950C" => 54.0,
        "RTO_1100C" => 71.0,
        _ => return None,
    };
    Some([
        p("ramp_tracking_error_C", 0.0, 1.0, 4),
        p("overshoot_pct", 2.0, 0.3, 4),
        p("lamp_power_pct", lamp, 0.8, 4),
        p("emissivity", 0.70, 0.005, 6),
        p("gas_flow_deviation_sccm", 0.0, 0.5, 4),
    ])
}

const fn p(name: &'static str, level: f64, sd: f64, decimals: i32) -> Parameter {
    Parameter {
        name,
        level,
        sd,
        decimals,
    }
}

/// The recipes the model knows, per tool type.
pub const RECIPES: [(ToolType, &[&str]); 2] = [
    (
        ToolType::IonImplant,
        &["B11_30KEV", "P31_80KEV", "AS75_40KEV"],
    ),
    (ToolType::Rtp, &["SPIKE_1050C", "RTA_950C", "RTO_1100C"]),
];

/// The charted parameters of `tool_type` running `recipe`, in a fixed order; `None` for a
/// recipe the model does not know.
pub fn parameters(tool_type: ToolType, recipe: &str) -> Option<Vec<Parameter>> {
    match tool_type {
        ToolType::IonImplant => implant(recipe).map(|p| p.to_vec()),
        ToolType::Rtp => rtp(recipe).map(|p| p.to_vec()),
    }
}

/// A fault the simulator injects; each matches a cause of a triage playbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Implanter: the beam current drifts down as the ion source wears.
    SourceWear,
    /// Implanter: the source pressure rises and the beam current falls with it.
    VacuumLeak,
    /// Implanter: the analyzer field drifts (it follows the beam energy).
    AnalyzerDrift,
    /// Implanter: dose uniformity steps down and scatters more.
    ScanFault,
    /// RTP: lamp power creeps up for the same temperature.
    LampAging,
    /// RTP: the ramp tracking error drifts up while lamp power holds.
    PyrometerDrift,
    /// RTP: emissivity steps (another backside film).
    EmissivityShift,
    /// RTP: the gas flow deviation shifts (an MFC's zero or span).
    MfcFailure,
    /// RTP: overshoot rises and scatters (the controller's gains no longer fit).
    PidDetuning,
}

/// What triage should say about a fault: the failure modes (playbook ids) accepted and
/// the cause id it should rank first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTriage {
    /// Playbook ids that count as the right failure mode (the first is the primary one).
    pub failure_modes: Vec<String>,
    /// The cause id triage should rank first.
    pub cause_id: String,
}

impl FaultKind {
    /// Every kind, in the order of the playbooks.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::SourceWear,
        FaultKind::VacuumLeak,
        FaultKind::AnalyzerDrift,
        FaultKind::ScanFault,
        FaultKind::LampAging,
        FaultKind::PyrometerDrift,
        FaultKind::EmissivityShift,
        FaultKind::MfcFailure,
        FaultKind::PidDetuning,
    ];

    /// The name in scenario files and the ground truth.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::SourceWear => "source_wear",
            FaultKind::VacuumLeak => "vacuum_leak",
            FaultKind::AnalyzerDrift => "analyzer_drift",
            FaultKind::ScanFault => "scan_fault",
            FaultKind::LampAging => "lamp_aging",
            FaultKind::PyrometerDrift => "pyrometer_drift",
            FaultKind::EmissivityShift => "emissivity_shift",
            FaultKind::MfcFailure => "mfc_failure",
            FaultKind::PidDetuning => "pid_detuning",
        }
    }

    /// The tool type the fault happens on.
    pub fn tool_type(self) -> ToolType {
        match self {
            FaultKind::SourceWear
            | FaultKind::VacuumLeak
            | FaultKind::AnalyzerDrift
            | FaultKind::ScanFault => ToolType::IonImplant,
            _ => ToolType::Rtp,
        }
    }

    /// The magnitude used when a scenario gives none, in sd of [`FaultKind::primary`].
    pub fn default_magnitude(self) -> f64 {
        match self {
            FaultKind::SourceWear | FaultKind::VacuumLeak => 4.0,
            FaultKind::AnalyzerDrift | FaultKind::LampAging | FaultKind::PyrometerDrift => 3.0,
            FaultKind::EmissivityShift => 3.0,
            FaultKind::ScanFault | FaultKind::MfcFailure | FaultKind::PidDetuning => 2.0,
        }
    }

    /// The ramp used when a scenario gives none, in samples (0: a step).
    pub fn default_ramp(self) -> u64 {
        match self {
            FaultKind::SourceWear | FaultKind::LampAging | FaultKind::PyrometerDrift => 300,
            FaultKind::VacuumLeak | FaultKind::AnalyzerDrift => 200,
            FaultKind::PidDetuning => 100,
            FaultKind::ScanFault | FaultKind::EmissivityShift | FaultKind::MfcFailure => 0,
        }
    }

    /// The parameter the magnitude is measured on (in its sd).
    pub fn primary(self) -> &'static str {
        match self {
            FaultKind::SourceWear => "beam_current_mA",
            FaultKind::VacuumLeak => "source_pressure_mtorr",
            FaultKind::AnalyzerDrift => "analyzer_field_gauss",
            FaultKind::ScanFault => "dose_uniformity_pct",
            FaultKind::LampAging => "lamp_power_pct",
            FaultKind::PyrometerDrift => "ramp_tracking_error_C",
            FaultKind::EmissivityShift => "emissivity",
            FaultKind::MfcFailure => "gas_flow_deviation_sccm",
            FaultKind::PidDetuning => "overshoot_pct",
        }
    }

    /// How the fault moves `parameter` at full effect with `magnitude`: the shift of its
    /// mean in its sd, and the factor on its sd. `(0.0, 1.0)` for a parameter it leaves
    /// alone.
    ///
    /// | fault | signature |
    /// |---|---|
    /// | `source_wear` | beam current −m |
    /// | `vacuum_leak` | source pressure +m, beam current −0.75 m |
    /// | `analyzer_drift` | analyzer field +m |
    /// | `scan_fault` | dose uniformity −m, its sd × (1 + m/4) |
    /// | `lamp_aging` | lamp power +m |
    /// | `pyrometer_drift` | ramp tracking error +m (lamp power unchanged) |
    /// | `emissivity_shift` | emissivity −m |
    /// | `mfc_failure` | gas flow deviation +m |
    /// | `pid_detuning` | overshoot +m, its sd × (1 + m/4) |
    pub fn effect(self, parameter: &str, magnitude: f64) -> (f64, f64) {
        let m = magnitude;
        match (self, parameter) {
            (FaultKind::SourceWear, "beam_current_mA") => (-m, 1.0),
            (FaultKind::VacuumLeak, "source_pressure_mtorr") => (m, 1.0),
            (FaultKind::VacuumLeak, "beam_current_mA") => (-0.75 * m, 1.0),
            (FaultKind::AnalyzerDrift, "analyzer_field_gauss") => (m, 1.0),
            (FaultKind::ScanFault, "dose_uniformity_pct") => (-m, 1.0 + m / 4.0),
            (FaultKind::LampAging, "lamp_power_pct") => (m, 1.0),
            (FaultKind::PyrometerDrift, "ramp_tracking_error_C") => (m, 1.0),
            (FaultKind::EmissivityShift, "emissivity") => (-m, 1.0),
            (FaultKind::MfcFailure, "gas_flow_deviation_sccm") => (m, 1.0),
            (FaultKind::PidDetuning, "overshoot_pct") => (m, 1.0 + m / 4.0),
            _ => (0.0, 1.0),
        }
    }

    /// The failure mode and cause triage should find (the playbooks' ids).
    pub fn expected(self) -> ExpectedTriage {
        let (modes, cause): (&[&str], &str) = match self {
            FaultKind::SourceWear => (&["beam_current_instability"], "source_degradation"),
            FaultKind::VacuumLeak => (
                &["vacuum_degradation", "beam_current_instability"],
                "vacuum_leak",
            ),
            FaultKind::AnalyzerDrift => (&["energy_drift"], "hv_supply_drift"),
            FaultKind::ScanFault => (&["dose_uniformity"], "scan_system_malfunction"),
            FaultKind::LampAging => (&["lamp_power_anomaly"], "lamp_aging"),
            FaultKind::PyrometerDrift => (&["ramp_tracking_error"], "pyrometer_drift"),
            FaultKind::EmissivityShift => (&["emissivity_drift"], "backside_coating"),
            FaultKind::MfcFailure => (&["gas_flow_deviation"], "mfc_failure"),
            FaultKind::PidDetuning => (&["overshoot"], "pid_tuning"),
        };
        ExpectedTriage {
            failure_modes: modes.iter().map(|m| m.to_string()).collect(),
            cause_id: cause.to_string(),
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_moves_its_primary_parameter_of_its_tool_type() {
        for kind in FaultKind::ALL {
            let recipe = RECIPES
                .iter()
                .find(|(t, _)| *t == kind.tool_type())
                .map(|(_, r)| r[0])
                .unwrap_or_default();
            let params = parameters(kind.tool_type(), recipe).unwrap_or_default();
            assert!(params.iter().any(|p| p.name == kind.primary()), "{kind}");
            let (shift, _) = kind.effect(kind.primary(), 2.0);
            assert_eq!(shift.abs(), 2.0, "{kind}");
        }
    }

    #[test]
    fn every_kind_names_itself_as_serde_does() {
        for kind in FaultKind::ALL {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
