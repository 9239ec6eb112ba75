//! Scenario files (`deploy/scenarios/*.toml`): the fab to simulate and the faults to
//! inject, loaded into a validated [`Scenario`] with errors that name the file, the line
//! and the key.
//!
//! ```toml
//! seed = 20261207                  # the RNG seed (`--seed` overrides it)
//! start = "2026-12-07T06:00:00Z"   # event time of every tool's first sample
//! lots = 40                        # lots each tool runs
//! wafers_per_lot = 25
//! samples_per_wafer = 1
//! sample_interval_s = 60           # event time between a tool's samples
//!
//! [implanters]                     # ION-01, ION-02, ...
//! count = 2
//! recipes = ["B11_30KEV"]          # tool i runs recipes[i % len]
//!
//! [rtp]                            # RTP-01, ...
//! count = 1
//!
//! [[fault]]
//! tool = "ION-02"
//! kind = "source_wear"
//! onset_sample = 400               # the tool's sample index (0-based) where it starts
//! ramp_samples = 300               # samples to full effect (0: a step); default per kind
//! magnitude = 4.0                  # full effect in sd of the kind's parameter; default per kind
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use spcvm_schemas::ToolType;
use toml::de::{DeTable, DeValue};

use super::model::{self, FaultKind};
use crate::config::line_column;

/// A scenario file as written (unknown keys are errors).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The RNG seed; the same seed gives the same bytes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Event time of every tool's first sample, RFC 3339.
    #[serde(default = "default_start")]
    pub start: String,
    /// Lots each tool runs.
    #[serde(default = "default_lots")]
    pub lots: u64,
    /// Wafers in a lot.
    #[serde(default = "default_wafers_per_lot")]
    pub wafers_per_lot: u64,
    /// Samples taken on each wafer.
    #[serde(default = "default_samples_per_wafer")]
    pub samples_per_wafer: u64,
    /// Event time between two samples of a tool, in seconds.
    #[serde(default = "default_interval")]
    pub sample_interval_s: f64,
    /// The ion implanters (`ION-01`, ...).
    #[serde(default)]
    pub implanters: ToolGroup,
    /// The RTP tools (`RTP-01`, ...).
    #[serde(default)]
    pub rtp: ToolGroup,
    /// The faults to inject.
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
}

/// A group of tools of one type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolGroup {
    /// How many tools (default 0).
    #[serde(default)]
    pub count: u32,
    /// The recipes, tool i running `recipes[i % len]`; default: the type's first known
    /// recipe (`B11_30KEV`, `SPIKE_1050C`).
    #[serde(default)]
    pub recipes: Vec<String>,
}

/// One fault as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The tool it happens on, e.g. `ION-02`.
    pub tool: String,
    /// What happens.
    pub kind: FaultKind,
    /// The tool's sample index (0-based) of the first affected sample.
    pub onset_sample: u64,
    /// Samples from the onset to full effect (0: a step); default per kind.
    #[serde(default)]
    pub ramp_samples: Option<u64>,
    /// Full effect, in sd of the kind's parameter (positive); default per kind.
    #[serde(default)]
    pub magnitude: Option<f64>,
}

fn default_seed() -> u64 {
    1
}
fn default_start() -> String {
    "2026-12-07T06:00:00Z".into()
}
fn default_lots() -> u64 {
    40
}
fn default_wafers_per_lot() -> u64 {
    25
}
fn default_samples_per_wafer() -> u64 {
    1
}
fn default_interval() -> f64 {
    60.0
}

/// A simulated tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolPlan {
    /// Its id, e.g. `ION-01`.
    pub tool_id: String,
    /// Its type.
    pub tool_type: ToolType,
    /// The recipe it runs.
    pub recipe_id: String,
}

/// A fault with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Index of the tool in [`Scenario::tools`].
    pub tool: usize,
    /// What happens.
    pub kind: FaultKind,
    /// The tool's sample index of the first affected sample.
    pub onset_sample: u64,
    /// Samples from the onset to full effect (0: a step).
    pub ramp_samples: u64,
    /// Full effect in sd of [`FaultKind::primary`].
    pub magnitude: f64,
}

impl Fault {
    /// How much of the full effect sample `k` of the tool shows, in [0, 1].
    pub fn progress(&self, k: u64) -> f64 {
        if k < self.onset_sample {
            0.0
        } else if self.ramp_samples == 0 {
            1.0
        } else {
            ((k - self.onset_sample + 1) as f64 / self.ramp_samples as f64).min(1.0)
        }
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The RNG seed.
    pub seed: u64,
    /// Event time of the first sample (ms since the epoch).
    pub start_ms: i64,
    /// Event time between two samples of a tool (ms, at least 1).
    pub interval_ms: i64,
    /// Wafers in a lot.
    pub wafers_per_lot: u64,
    /// Samples per wafer.
    pub samples_per_wafer: u64,
    /// Samples each tool gives.
    pub samples_per_tool: u64,
    /// The tools, implanters first.
    pub tools: Vec<ToolPlan>,
    /// The faults, at most one per tool.
    pub faults: Vec<Fault>,
}

/// Error from loading a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario `{}`", path.display())]
    Read {
        /// The scenario path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a wrong type or an unknown fault kind.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The scenario path.
        path: PathBuf,
        /// One-based line.
        line: usize,
        /// One-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value that does not fit (a fault on a tool that does not exist, ...).
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Invalid {
        /// The scenario path.
        path: PathBuf,
        /// One-based line of the key (or of its table when the key is absent).
        line: usize,
        /// The key, e.g. `fault[0].tool`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and validates the scenario at `path`.
///
/// # Errors
///
/// [`ScenarioError`] naming the file, the line and the key.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates scenario `text`; `path` names it in errors.
///
/// # Errors
///
/// As [`load`], minus the read error.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ScenarioError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    validate(&file).map_err(|(key, message)| ScenarioError::Invalid {
        path: path.to_path_buf(),
        line: key_line(text, &key),
        key: key_name(&key),
        message,
    })
}

/// One step of a key's path: a table key or an array index.
#[derive(Debug, Clone)]
enum KeyPart {
    Key(&'static str),
    Index(usize),
}

impl std::fmt::Display for KeyPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyPart::Key(k) => write!(f, ".{k}"),
            KeyPart::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `fault[0].tool`.
fn key_name(key: &[KeyPart]) -> String {
    let name: String = key.iter().map(KeyPart::to_string).collect();
    name.strip_prefix('.').unwrap_or(&name).to_string()
}

/// The line of the deepest part of `key` found in `text` (1 when none is).
fn key_line(text: &str, key: &[KeyPart]) -> usize {
    let Ok(doc) = DeTable::parse(text) else {
        return 1;
    };
    let mut span = None;
    let mut table = Some(doc.get_ref());
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    for part in key {
        match part {
            KeyPart::Key(k) => {
                let Some(t) = table else { break };
                let Some((name, v)) = t.iter().find(|(name, _)| name.get_ref() == k) else {
                    break;
                };
                span = Some(name.span());
                value = Some(v);
            }
            KeyPart::Index(i) => {
                let Some(v) = value.and_then(|v| v.get_ref().as_array()?.get(*i)) else {
                    break;
                };
                span = Some(v.span());
                value = Some(v);
            }
        }
        table = value.and_then(|v| v.get_ref().as_table());
    }
    span.map_or(1, |s| line_column(text, s.start).0)
}

type Invalid = (Vec<KeyPart>, String);

fn invalid(key: &[KeyPart], message: impl Into<String>) -> Invalid {
    (key.to_vec(), message.into())
}

/// Checks the values and builds the scenario.
fn validate(file: &ScenarioFile) -> Result<Scenario, Invalid> {
    use KeyPart::{Index, Key};
    let start_ms = chrono::DateTime::parse_from_rfc3339(&file.start)
        .map_err(|e| invalid(&[Key("start")], format!("not an RFC 3339 time: {e}")))?
        .timestamp_millis();
    if !(file.sample_interval_s.is_finite() && file.sample_interval_s >= 0.001) {
        return Err(invalid(
            &[Key("sample_interval_s")],
            "must be at least 0.001",
        ));
    }
    for (key, value) in [
        ("lots", file.lots),
        ("wafers_per_lot", file.wafers_per_lot),
        ("samples_per_wafer", file.samples_per_wafer),
    ] {
        if value == 0 {
            return Err(invalid(&[Key(key)], "must be at least 1"));
        }
    }
    let samples_per_tool = file
        .lots
        .checked_mul(file.wafers_per_lot)
        .and_then(|n| n.checked_mul(file.samples_per_wafer))
        .filter(|n| *n <= 1 << 40)
        .ok_or_else(|| invalid(&[Key("lots")], "too many samples per tool"))?;

    let mut tools = Vec::new();
    for (group_key, group, tool_type, prefix) in [
        ("implanters", &file.implanters, ToolType::IonImplant, "ION"),
        ("rtp", &file.rtp, ToolType::Rtp, "RTP"),
    ] {
        let known = model::RECIPES
            .iter()
            .find(|(t, _)| *t == tool_type)
            .map(|(_, r)| *r)
            .unwrap_or_default();
        for (i, recipe) in group.recipes.iter().enumerate() {
            if !known.contains(&recipe.as_str()) {
                return Err(invalid(
                    &[Key(group_key), Key("recipes"), Index(i)],
                    format!("unknown recipe `{recipe}` (known: {})", known.join(", ")),
                ));
            }
        }
        for i in 0..group.count as usize {
            let recipe = match group.recipes.len() {
                0 => known.first().copied().unwrap_or_default().to_string(),
                n => group.recipes[i % n].clone(),
            };
            tools.push(ToolPlan {
                tool_id: format!("{prefix}-{:02}", i + 1),
                tool_type,
                recipe_id: recipe,
            });
        }
    }
    if tools.is_empty() {
        return Err(invalid(
            &[Key("implanters"), Key("count")],
            "the fab has no tools (set implanters.count or rtp.count)",
        ));
    }

    let mut faults: Vec<Fault> = Vec::new();
    for (i, spec) in file.fault.iter().enumerate() {
        let at = |key: &'static str| [Key("fault"), Index(i), Key(key)];
        let tool = tools
            .iter()
            .position(|t| t.tool_id == spec.tool)
            .ok_or_else(|| {
                let ids: Vec<&str> = tools.iter().map(|t| t.tool_id.as_str()).collect();
                invalid(
                    &at("tool"),
                    format!("no tool `{}` in the fab ({})", spec.tool, ids.join(", ")),
                )
            })?;
        if tools[tool].tool_type != spec.kind.tool_type() {
            return Err(invalid(
                &at("kind"),
                format!(
                    "`{}` is a fault of {} tools, and {} is {}",
                    spec.kind,
                    spec.kind.tool_type(),
                    spec.tool,
                    tools[tool].tool_type
                ),
            ));
        }
        if faults.iter().any(|f| f.tool == tool) {
            return Err(invalid(
                &at("tool"),
                format!("{} already has a fault (one per tool)", spec.tool),
            ));
        }
        if spec.onset_sample >= samples_per_tool {
            return Err(invalid(
                &at("onset_sample"),
                format!(
                    "{} is past the tool's last sample ({})",
                    spec.onset_sample,
                    samples_per_tool - 1
                ),
            ));
        }
        let magnitude = spec
            .magnitude
            .unwrap_or_else(|| spec.kind.default_magnitude());
        if !(magnitude.is_finite() && magnitude > 0.0) {
            return Err(invalid(
                &at("magnitude"),
                format!("{magnitude} must be positive (in sd; the direction is the fault's)"),
            ));
        }
        faults.push(Fault {
            tool,
            kind: spec.kind,
            onset_sample: spec.onset_sample,
            ramp_samples: spec
                .ramp_samples
                .unwrap_or_else(|| spec.kind.default_ramp()),
            magnitude,
        });
    }
    Ok(Scenario {
        seed: file.seed,
        start_ms,
        interval_ms: (file.sample_interval_s * 1000.0).round() as i64,
        wafers_per_lot: file.wafers_per_lot,
        samples_per_wafer: file.samples_per_wafer,
        samples_per_tool,
        tools,
        faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, Path::new("s.toml")) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_fill_in() {
        let s = parse(
            "[implanters]\ncount = 2\n[[fault]]\ntool = \"ION-02\"\nkind = \"source_wear\"\nonset_sample = 10\n",
            Path::new("s.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.tools.len(), 2);
        assert_eq!(s.samples_per_tool, 1000);
        assert_eq!(s.faults[0].tool, 1);
        assert_eq!(s.faults[0].ramp_samples, 300);
        assert_eq!(s.faults[0].magnitude, 4.0);
    }

    #[test]
    fn unknown_key_names_line() {
        let e = err("lots = 2\n[implanters]\ncount = 1\ncolour = 3\n");
        assert!(e.starts_with("s.toml:4:1: unknown field `colour`"), "{e}");
    }

    #[test]
    fn unknown_tool_names_the_fault_key() {
        let e = err(
            "[implanters]\ncount = 1\n\n[[fault]]\nkind = \"source_wear\"\ntool = \"ION-09\"\nonset_sample = 1\n",
        );
        assert!(
            e.starts_with("s.toml:6: `fault[0].tool`: no tool `ION-09`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_tool_type_and_bad_recipe() {
        let e = err(
            "[rtp]\ncount = 1\n[[fault]]\ntool = \"RTP-01\"\nkind = \"vacuum_leak\"\nonset_sample = 1\n",
        );
        assert!(e.starts_with("s.toml:5: `fault[0].kind`"), "{e}");
        let e = err("[rtp]\ncount = 1\nrecipes = [\"X\"]\n");
        assert!(e.contains("unknown recipe `X`"), "{e}");
        assert!(e.starts_with("s.toml:3:"), "{e}");
    }

    #[test]
    fn ramp_progress() {
        let f = Fault {
            tool: 0,
            kind: FaultKind::SourceWear,
            onset_sample: 10,
            ramp_samples: 4,
            magnitude: 1.0,
        };
        let p: Vec<f64> = (9..16).map(|k| f.progress(k)).collect();
        assert_eq!(p, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }
}
