//! `spcvm simulate` and `spcvm score` end to end: reproducible output, each fault's
//! signature in the data, scenario errors with file and line, the score of hand-written
//! files, and every shipped single-fault scenario detected by `spcvm backtest --triage`.

mod common;

use std::path::{Path, PathBuf};

use common::spcvm;
use spcvm::simulate::model::{self, FaultKind};
use spcvm::simulate::scenario;
use spcvm::simulate::score::Score;
use spcvm::simulate::{Generator, Scenario};
use spcvm_schemas::{
    Alert, IncidentStatus, RankedCause, Severity, Telemetry, ToolType, Triage, encode_alert_json,
    encode_triage_json,
};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/scenarios")
}

fn shipped(kind: FaultKind) -> PathBuf {
    scenarios_dir().join(format!("{kind}.toml"))
}

fn load(path: &Path) -> Scenario {
    scenario::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn run_ok(args: &[&std::ffi::OsStr]) -> String {
    let out = spcvm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "spcvm {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn simulate(scenario: &Path, out: &Path, extra: &[&str]) {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "simulate".as_ref(),
        "--quiet".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run_ok(&args);
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let scenario = scenarios_dir().join("mixed_fab.toml");
    simulate(&scenario, &path("a.jsonl"), &[]);
    simulate(&scenario, &path("b.jsonl"), &[]);
    simulate(&scenario, &path("c.jsonl"), &["--seed", "8"]);
    simulate(&scenario, &path("a.avro"), &[]);
    simulate(&scenario, &path("b.avro"), &[]);
    let read = |name: &str| std::fs::read(path(name)).unwrap();
    assert!(read("a.jsonl") == read("b.jsonl"), "same seed, other bytes");
    assert!(read("a.truth.json") == read("b.truth.json"));
    assert!(
        read("a.jsonl") != read("c.jsonl"),
        "another seed, same bytes"
    );
    // 8 tools x 60 lots x 25 wafers, in event-time order.
    let records: Vec<Telemetry> = String::from_utf8(read("a.jsonl"))
        .unwrap()
        .lines()
        .map(|l| spcvm_schemas::decode_telemetry_json(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(records.len(), 8 * 60 * 25);
    // Each line is what serde_json writes for its record (the encoder the simulator used
    // before it had its own), so the bytes of a seed did not change with the encoder.
    for (line, record) in read("a.jsonl").split(|b| *b == b'\n').zip(&records) {
        assert_eq!(line, serde_json::to_vec(record).unwrap().as_slice());
    }
    assert!(
        records
            .windows(2)
            .all(|w| w[0].event_time <= w[1].event_time)
    );
    // The Avro container holds the same records.
    let avro: Vec<Telemetry> =
        spcvm_schemas::read_telemetry_container(std::fs::File::open(path("a.avro")).unwrap())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
    assert_eq!(avro, records);
    // The second Avro file holds the same records; its bytes differ only by the container's
    // sync marker, which the writer draws at random (16 bytes in the header and after
    // every block).
    let avro_b: Vec<Telemetry> =
        spcvm_schemas::read_telemetry_container(std::fs::File::open(path("b.avro")).unwrap())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
    assert_eq!(avro_b, records);
    assert_eq!(read("a.avro").len(), read("b.avro").len());
}

/// Mean and sd of `parameter` on `tool` over samples `range` of the tool.
fn stats(
    records: &[Telemetry],
    tool: &str,
    parameter: &str,
    range: std::ops::Range<usize>,
) -> (f64, f64) {
    let values: Vec<f64> = records
        .iter()
        .filter(|r| r.tool_id == tool)
        .skip(range.start)
        .take(range.len())
        .map(|r| r.measurements[parameter])
        .collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[test]
fn each_fault_shows_its_signature() {
    for kind in FaultKind::ALL {
        let scenario = load(&shipped(kind));
        let records: Vec<Telemetry> = Generator::new(&scenario).collect();
        let fault = &scenario.faults[0];
        let faulty = &scenario.tools[fault.tool];
        let healthy = scenario
            .tools
            .iter()
            .find(|t| t.tool_id != faulty.tool_id)
            .unwrap();
        let onset = fault.onset_sample as usize;
        let full = onset + fault.ramp_samples as usize;
        let end = scenario.samples_per_tool as usize;
        assert!(end - full >= 200, "{kind}: too few samples at full effect");
        for p in model::parameters(faulty.tool_type, &faulty.recipe_id).unwrap() {
            let (shift, factor) = kind.effect(p.name, fault.magnitude);
            let (before, sd_before) = stats(&records, &faulty.tool_id, p.name, 0..onset);
            let (after, sd_after) = stats(&records, &faulty.tool_id, p.name, full..end);
            let moved = (after - before) / p.sd;
            assert!(
                (moved - shift).abs() < 0.4,
                "{kind}: {} moved {moved:.2} sd, expected {shift:.2}",
                p.name
            );
            let ratio = sd_after / sd_before;
            assert!(
                (ratio - factor).abs() < 0.25,
                "{kind}: {} sd x {ratio:.2}, expected x {factor:.2}",
                p.name
            );
            // The healthy tool stays where it was.
            let (h0, _) = stats(&records, &healthy.tool_id, p.name, 0..onset);
            let (h1, _) = stats(&records, &healthy.tool_id, p.name, full..end);
            assert!(
                ((h1 - h0) / p.sd).abs() < 0.4,
                "{kind}: healthy {} moved",
                p.name
            );
        }
        // The magnitude is what was configured on the primary parameter, in its direction.
        let (shift, _) = kind.effect(kind.primary(), fault.magnitude);
        assert_eq!(shift.abs(), fault.magnitude, "{kind}");
    }
}

#[test]
fn bad_scenario_key_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    // `spcvm simulate` on a scenario of `text`: whether it succeeded, and its stderr.
    let simulate = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        let out = spcvm([
            "simulate".as_ref(),
            "--scenario".as_ref(),
            bad.as_os_str(),
            "--out".as_ref(),
            dir.path().join("x.jsonl").as_os_str(),
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = simulate(
        "lots = 4\n[implanters]\ncount = 1\n\n[[fault]]\ntool = \"ION-01\"\nkind = \"source_wear\"\nonset = 10\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("bad.toml:8:1: unknown field `onset`"),
        "{stderr}"
    );
    let (_, stderr) = simulate(
        "lots = 4\n[implanters]\ncount = 1\n\n[[fault]]\ntool = \"ION-01\"\nkind = \"lamp_aging\"\nonset_sample = 10\n",
    );
    assert!(
        stderr.contains("bad.toml:7: `fault[0].kind`: `lamp_aging` is a fault of rtp tools"),
        "{stderr}"
    );
}

fn alert(id: &str, tool: &str, parameter: &str, rule: &str, minute: i64) -> Alert {
    Alert {
        alert_id: id.into(),
        tool_id: tool.into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11_30KEV".into(),
        lot_id: None,
        wafer_id: None,
        parameter: parameter.into(),
        chart: "ewma".into(),
        rule: rule.into(),
        severity: Severity::Major,
        statistic: 0.9,
        center_line: 1.0,
        ucl: Some(1.1),
        lcl: Some(0.95),
        event_time: START + minute * 60_000,
        message: String::new(),
        repeats: 0,
        distance_sigma: None,
        status: spcvm_schemas::AlertStatus::Open,
        window_start: None,
        cusum_upper_sigma: None,
        cusum_lower_sigma: None,
    }
}

fn triage(
    incident: &str,
    version: u32,
    tool: &str,
    mode: &str,
    causes: &[&str],
    minute: i64,
) -> Triage {
    Triage {
        incident_id: incident.into(),
        version,
        status: IncidentStatus::Open,
        tool_id: tool.into(),
        tool_type: ToolType::IonImplant,
        recipe_id: "B11_30KEV".into(),
        lot_id: None,
        wafer_id: None,
        failure_mode: mode.into(),
        failure_mode_name: mode.into(),
        severity: Severity::Major,
        causes: causes
            .iter()
            .map(|c| RankedCause {
                cause_id: c.to_string(),
                name: c.to_string(),
                confidence: 1.0 / causes.len() as f64,
                evidence: vec![],
            })
            .collect(),
        actions: vec![],
        alert_ids: vec![],
        opened_at: START + minute * 60_000,
        event_time: START + minute * 60_000,
    }
}

/// 2026-12-07T06:00:00Z.
const START: i64 = 1_796_623_200_000;

#[test]
fn score_of_hand_written_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // ION-01 healthy, 100 samples; ION-02 source wear from sample 40; ION-03 vacuum leak
    // from sample 50; one sample a minute.
    let truth = format!(
        r#"{{"scenario": "hand", "seed": 1,
  "tools": [
    {{"tool_id": "ION-01", "tool_type": "ion_implant", "recipe_id": "B11_30KEV", "samples": 100, "first_event_time": {START}, "sample_interval_ms": 60000}},
    {{"tool_id": "ION-02", "tool_type": "ion_implant", "recipe_id": "B11_30KEV", "samples": 100, "first_event_time": {START}, "sample_interval_ms": 60000}},
    {{"tool_id": "ION-03", "tool_type": "ion_implant", "recipe_id": "B11_30KEV", "samples": 100, "first_event_time": {START}, "sample_interval_ms": 60000}}
  ],
  "faults": [
    {{"tool_id": "ION-02", "kind": "source_wear", "onset_sample": 40, "onset_event_time": {o2}, "ramp_samples": 10, "magnitude_sigma": 4.0, "primary_parameter": "beam_current_mA",
      "expected": {{"failure_modes": ["beam_current_instability"], "cause_id": "source_degradation"}}}},
    {{"tool_id": "ION-03", "kind": "vacuum_leak", "onset_sample": 50, "onset_event_time": {o3}, "ramp_samples": 10, "magnitude_sigma": 4.0, "primary_parameter": "source_pressure_mtorr",
      "expected": {{"failure_modes": ["vacuum_degradation", "beam_current_instability"], "cause_id": "vacuum_leak"}}}}
  ]}}"#,
        o2 = START + 40 * 60_000,
        o3 = START + 50 * 60_000,
    );
    std::fs::write(path("truth.json"), truth).unwrap();
    let alerts = [
        alert("a1", "ION-01", "beam_current_mA", "rule_1", 10), // false alarm
        alert("a1", "ION-01", "beam_current_mA", "rule_1", 25), // its closing record: same id
        alert("a2", "ION-01", "dose_uniformity_pct", "rule_2", 70), // false alarm
        alert("a3", "ION-02", "beam_current_mA", "rule_1", 30), // before onset: false alarm
        alert("a5", "ION-02", "beam_current_mA", "rule_1", 57), // detection: 17 samples
        alert("a4", "ION-02", "dose_uniformity_pct", "rule_1", 52), // earlier in time: 12
        alert("a6", "ION-03", "source_pressure_mtorr", "cusum_upper", 50), // onset sample: 0
        alert("a7", "ION-09", "beam_current_mA", "rule_1", 5),  // unknown tool
    ];
    let lines: Vec<u8> = alerts
        .iter()
        .flat_map(|a| [encode_alert_json(a), b"\n".to_vec()].concat())
        .collect();
    std::fs::write(path("alerts.jsonl"), lines).unwrap();
    let triages = [
        triage(
            "i1",
            1,
            "ION-02",
            "beam_current_instability",
            &["optics_misalignment", "vacuum_leak", "source_degradation"],
            30,
        ),
        triage(
            "i1",
            2,
            "ION-02",
            "dose_uniformity",
            &["scan_system_malfunction", "wafer_handling", "beam_profile"],
            52,
        ),
        triage(
            "i1",
            3,
            "ION-02",
            "beam_current_instability",
            &["source_degradation", "optics_misalignment"],
            57,
        ),
        // An incident false alarms opened before ION-03's onset closes at the onset: its
        // closing version is no verdict on the fault.
        Triage {
            status: IncidentStatus::Closed,
            ..triage("i0", 2, "ION-03", "energy_drift", &["hv_supply_drift"], 50)
        },
        triage(
            "i2",
            1,
            "ION-03",
            "vacuum_degradation",
            &["pump_failure", "vacuum_leak", "outgassing"],
            50,
        ),
        triage(
            "i2",
            2,
            "ION-03",
            "beam_current_instability",
            &["vacuum_leak", "source_degradation"],
            55,
        ),
    ];
    let lines: Vec<u8> = triages
        .iter()
        .flat_map(|t| [encode_triage_json(t), b"\n".to_vec()].concat())
        .collect();
    std::fs::write(path("triage.jsonl"), lines).unwrap();

    let table = run_ok(&[
        "score".as_ref(),
        "--truth".as_ref(),
        path("truth.json").as_os_str(),
        "--alerts".as_ref(),
        path("alerts.jsonl").as_os_str(),
        "--triage".as_ref(),
        path("triage.jsonl").as_os_str(),
        "--json".as_ref(),
        path("score.json").as_os_str(),
    ]);
    let score: Score = serde_json::from_slice(&std::fs::read(path("score.json")).unwrap()).unwrap();
    // Detection: ION-02's first alert at or after minute 40 is a4 at minute 52.
    let f2 = &score.faults[0];
    let d2 = f2.detection.as_ref().unwrap();
    assert_eq!(
        (d2.alert_id.as_str(), d2.delay_samples, d2.delay_s),
        ("a4", 12, 720.0)
    );
    // On the fault's own parameter (beam current): a5 at minute 57.
    let p2 = f2.primary_detection.as_ref().unwrap();
    assert_eq!((p2.alert_id.as_str(), p2.delay_samples), ("a5", 17));
    let d3 = score.faults[1].detection.as_ref().unwrap();
    assert_eq!((d3.alert_id.as_str(), d3.delay_samples), ("a6", 0));
    assert_eq!(score.detected, 2);
    // False alarms: a1, a2 (ION-01, 100 samples), a3 (ION-02 before onset, 40 samples),
    // none on ION-03 (50 samples): 3 in 190 samples.
    assert_eq!(score.false_alarms.alerts, 3);
    assert_eq!(score.false_alarms.samples, 190);
    assert!((score.false_alarms.per_1000_samples - 3000.0 / 190.0).abs() < 1e-9);
    assert_eq!(score.false_alarms.unknown_tool_alerts, 1);
    // Triage: ION-02's first record at or after minute 40 is i1 v2 (dose uniformity, the
    // expected cause not in it): top-1 no, top-3 no; the final i1 v3 ranks it first.
    let first = f2.first.as_ref().unwrap();
    assert_eq!(
        (first.version, first.top1, first.top3, first.failure_mode_ok),
        (2, false, false, false)
    );
    let last = f2.last.as_ref().unwrap();
    assert_eq!((last.version, last.top1, last.top3), (3, true, true));
    // ION-03: i2 v1 has vacuum_leak second (top-3), v2 first, in an accepted mode.
    let f3 = &score.faults[1];
    let (first, last) = (f3.first.as_ref().unwrap(), f3.last.as_ref().unwrap());
    assert_eq!(
        (first.top1, first.top3, first.failure_mode_ok),
        (false, true, true)
    );
    assert_eq!(
        (last.version, last.top1, last.failure_mode_ok),
        (2, true, true)
    );
    let totals = score.triage.as_ref().unwrap();
    assert_eq!(
        (
            totals.top1,
            totals.top3,
            totals.final_top1,
            totals.final_top3
        ),
        (0, 1, 2, 2)
    );
    assert!(
        table.contains(
            "| source_wear | ION-02 | 40 | dose_uniformity_pct ewma rule_1 | 12 | 12.0 | 17 (ewma rule_1) |"
        ),
        "{table}"
    );
    assert!(
        table.contains("3 alerts in 190 fault-free samples = 15.789 per 1,000 samples"),
        "{table}"
    );
}

/// Every shipped single-fault scenario, simulated and backtested with triage, is
/// detected: an alert on the faulty tool at or after the onset, and one on the fault's
/// own parameter; and triage ranks the injected cause first in the incident's final
/// version for at least 8 of the 9 (the first version's count is printed; docs/BENCHMARKS.md
/// has the table).
#[test]
fn every_single_fault_scenario_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for kind in FaultKind::ALL {
        let path = |ext: &str| dir.path().join(format!("{kind}.{ext}"));
        simulate(&shipped(kind), &path("jsonl"), &[]);
        run_ok(&[
            "backtest".as_ref(),
            "--quiet".as_ref(),
            "--input".as_ref(),
            path("jsonl").as_os_str(),
            "--alerts".as_ref(),
            path("alerts.jsonl").as_os_str(),
            "--triage".as_ref(),
            path("triage.jsonl").as_os_str(),
            "--actions".as_ref(),
            path("actions.jsonl").as_os_str(),
        ]);
        run_ok(&[
            "score".as_ref(),
            "--truth".as_ref(),
            path("truth.json").as_os_str(),
            "--alerts".as_ref(),
            path("alerts.jsonl").as_os_str(),
            "--triage".as_ref(),
            path("triage.jsonl").as_os_str(),
            "--json".as_ref(),
            path("score.json").as_os_str(),
        ]);
        let score: Score =
            serde_json::from_slice(&std::fs::read(path("score.json")).unwrap()).unwrap();
        let fault = &score.faults[0];
        assert!(fault.detection.is_some(), "{kind} not detected");
        // And by an alert on the fault's own parameter, not only a false alarm elsewhere.
        assert!(
            fault.primary_detection.is_some(),
            "{kind}: its parameter never alerted"
        );
        let top = fault.first.as_ref().map_or("-".to_string(), |v| {
            format!("{}/{}", v.failure_mode, v.causes.first().map_or("-", |c| c))
        });
        rows.push(format!(
            "{kind}: delay {} samples, first triage {top}, top-1 {}, final top-1 {}",
            fault.detection.as_ref().map_or(-1, |d| d.delay_samples),
            fault.first.as_ref().is_some_and(|v| v.top1),
            fault.last.as_ref().is_some_and(|v| v.top1),
        ));
    }
    let top1 = rows.iter().filter(|r| r.contains("top-1 true,")).count();
    let final_top1 = rows
        .iter()
        .filter(|r| r.ends_with("final top-1 true"))
        .count();
    eprintln!(
        "triage top-1: first version after onset {top1} of 9, final {final_top1} of 9\n{}",
        rows.join("\n")
    );
    // The issue's bar: the injected cause ranked first for at least 8 of the 9 failure
    // modes (the incident's final version; the first is recorded in docs/BENCHMARKS.md).
    assert!(
        final_top1 >= 8,
        "final top-1 {final_top1} of 9\n{}",
        rows.join("\n")
    );
}
