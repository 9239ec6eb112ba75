//! `spcvm demo` on a small scenario: every file of the folder is written, the summary names
//! each injected fault with its detection and triage, and the score parses.

mod common;

use common::spcvm;
use spcvm::demo::files;
use spcvm::simulate::score::Score;

const SCENARIO: &str = r#"
seed = 5
lots = 16
wafers_per_lot = 25
sample_interval_s = 30

[implanters]
count = 2

[rtp]
count = 1

[[fault]]
tool = "ION-01"
kind = "source_wear"
onset_sample = 250
ramp_samples = 50
magnitude = 5.0

[[fault]]
tool = "RTP-01"
kind = "mfc_failure"
onset_sample = 260
magnitude = 3.0
"#;

#[test]
fn demo_writes_its_folder_and_summarises_each_fault() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("small.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out_dir = dir.path().join("demo");
    // A leftover checkpoint must not make the job skip its input.
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join(files::CHECKPOINT), b"stale").unwrap();
    let out = spcvm([
        "demo".as_ref(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = String::from_utf8_lossy(&out.stdout);

    for name in [
        files::TELEMETRY,
        files::TRUTH,
        files::PIPELINE,
        files::ALERTS,
        files::TRIAGE,
        files::ACTIONS,
        files::SCORE_JSON,
        files::SCORE_TABLE,
    ] {
        assert!(out_dir.join(name).is_file(), "{name} is written");
    }
    let telemetry = std::fs::read_to_string(out_dir.join(files::TELEMETRY)).unwrap();
    assert_eq!(telemetry.lines().count(), 3 * 400);
    assert!(summary.contains("1,200 records"), "{summary}");

    let score: Score =
        serde_json::from_slice(&std::fs::read(out_dir.join(files::SCORE_JSON)).unwrap())
            .expect("score.json is a score");
    assert_eq!(score.faults.len(), 2);
    assert!(score.triage.is_some(), "the job ran triage");
    let table = std::fs::read_to_string(out_dir.join(files::SCORE_TABLE)).unwrap();
    assert!(table.starts_with("| fault | tool |"), "{table}");

    for (tool, kind, onset) in [
        ("ION-01", "source_wear", 250),
        ("RTP-01", "mfc_failure", 260),
    ] {
        let line = summary
            .lines()
            .find(|l| l.contains(tool) && l.contains(kind))
            .unwrap_or_else(|| panic!("{tool} {kind} in the summary:\n{summary}"));
        assert!(line.contains(&format!("from sample {onset}")), "{line}");
        let f = score.faults.iter().find(|f| f.tool_id == tool).unwrap();
        match &f.detection {
            Some(d) => {
                assert!(
                    summary.contains(&format!("detected after {} samples", d.delay_samples)),
                    "{summary}"
                );
                // Its chart, as PNG and SVG.
                let parameter = if f.primary_detection.is_some() {
                    spcvm::simulate::FaultKind::primary(f.kind).to_string()
                } else {
                    d.parameter.clone()
                };
                let png = out_dir
                    .join(files::CHARTS)
                    .join(format!("{tool}_{parameter}.png"));
                let bytes =
                    std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
                assert!(png.with_extension("svg").is_file());
                assert!(summary.contains(&format!("charts/{tool}_{parameter}.png")));
            }
            None => assert!(summary.contains("NOT detected"), "{summary}"),
        }
        match &f.first {
            Some(v) => assert!(
                summary.contains(&format!("triage ranked first: {}", v.causes[0])),
                "{summary}"
            ),
            None => assert!(summary.contains("no verdict"), "{summary}"),
        }
    }
    assert!(summary.contains("per 1,000 samples"), "{summary}");
    assert!(summary.contains(&format!("files in {}/", out_dir.display())));
}
