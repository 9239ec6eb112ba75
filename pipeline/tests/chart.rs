//! `spcvm chart` on the shipped example: the images are real PNG and SVG of the size asked
//! for, the points are the chart's statistic (the values the run's alerts report), the
//! limits and rule names are drawn, a run's outputs made under another chart configuration
//! are flagged, and a key with no data is a clear error.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{backtest_ok, example_config, example_input, read_alerts, spcvm};
use spcvm::chart::data::{self, KeySpec, Sources};

/// Backtests the example with the seed's charts into `dir`: (alerts, report).
fn backtest(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let alerts = dir.join("alerts.jsonl");
    let report = dir.join("report.json");
    backtest_ok(&example_input(), &alerts, &report, &["--quiet"]);
    (alerts, report)
}

fn chart(args: &[&OsStr]) -> std::process::Output {
    let mut all: Vec<&OsStr> = vec!["chart".as_ref()];
    all.extend_from_slice(args);
    spcvm(&all)
}

/// The IHDR width and height of a PNG, after checking its signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR", "IHDR is the first chunk");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn ewma_chart_as_png_and_svg_with_points_limits_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (alerts, report) = backtest(dir.path());
    let base = dir.path().join("ion02");
    let out = chart(&[
        "--input".as_ref(),
        example_input().as_os_str(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
        "--tool".as_ref(),
        "ION-02".as_ref(),
        "--parameter".as_ref(),
        "beam_current_mA".as_ref(),
        "--out".as_ref(),
        base.as_os_str(),
        "--width".as_ref(),
        "900".as_ref(),
        "--height".as_ref(),
        "500".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "outputs match the re-run: {stderr}"
    );

    let png = std::fs::read(base.with_extension("png")).unwrap();
    assert_eq!(png_size(&png), (900, 500));

    let svg = std::fs::read_to_string(base.with_extension("svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(root.attribute("width"), Some("900"));
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").to_string())
        .collect();
    for wanted in ["UCL ", "LCL ", "CL ", "rule_1", "EWMA statistic", "ION-02"] {
        assert!(
            texts.iter().any(|t| t.contains(wanted)),
            "`{wanted}` is written on the chart: {texts:?}"
        );
    }
    // The statistic is one line through every Phase II point: 600 samples, 200 in Phase I.
    let longest = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        longest >= 400,
        "a polyline of the 400 EWMA points, got {longest}"
    );
}

#[test]
fn the_points_are_the_statistic_the_alerts_report() {
    let dir = tempfile::tempdir().unwrap();
    let (alerts_path, _) = backtest(dir.path());
    let sources = Sources {
        inputs: vec![example_input()],
        alerts: Some(alerts_path.clone()),
        ..Sources::default()
    };
    for (tool, parameter, chart) in [
        ("ION-02", "beam_current_mA", "ewma"),
        ("ION-01", "dose_uniformity_pct", "xbar"),
    ] {
        let key = KeySpec {
            tool_id: tool.into(),
            recipe_id: None,
            parameter: parameter.into(),
        };
        let d = data::load(&key, &sources).unwrap_or_else(|e| panic!("{e}"));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let published: Vec<_> = read_alerts(&alerts_path)
            .into_iter()
            .filter(|a| a.tool_id == tool && a.parameter == parameter && a.repeats == 0)
            .collect();
        assert_eq!(d.alerts.len(), published.len());
        for a in published.iter().filter(|a| a.chart == chart) {
            let p = d
                .points
                .iter()
                .find(|p| p.event_time == a.event_time)
                .unwrap_or_else(|| panic!("a point where alert {} fired", a.alert_id));
            assert_eq!(
                p.point.value, a.statistic,
                "the point is the alerted statistic"
            );
            assert_eq!(Some(p.point.ucl), a.ucl);
        }
        if chart == "xbar" {
            // One point a closed subgroup of 5, after the 25 subgroups of Phase I.
            assert!(d.points.iter().all(|p| p.sample % 5 == 0));
            assert_eq!(d.points.len() as u64, d.samples / 5 - 25);
            assert_eq!(d.phase1_end, Some(125));
        }
    }
}

#[test]
fn outputs_of_another_configuration_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let (alerts, report) = backtest(dir.path());
    let out = chart(&[
        "--input".as_ref(),
        example_input().as_os_str(),
        "--charts".as_ref(),
        example_config().as_os_str(),
        "--alerts".as_ref(),
        alerts.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
        "--tool".as_ref(),
        "ION-02".as_ref(),
        "--parameter".as_ref(),
        "beam_current_mA".as_ref(),
        "--out".as_ref(),
        dir.path().join("other").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the re-run raises") && stderr.contains("differ from the re-run"),
        "both the alerts and the report disagree with λ = 0.1: {stderr}"
    );
}

#[test]
fn a_key_without_data_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("none");
    let run = |tool: &str, parameter: &str| {
        let out = chart(&[
            "--input".as_ref(),
            example_input().as_os_str(),
            "--tool".as_ref(),
            tool.as_ref(),
            "--parameter".as_ref(),
            parameter.as_ref(),
            "--out".as_ref(),
            base.as_os_str(),
        ]);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run("ION-99", "beam_current_mA");
    assert!(
        e.contains("nothing to chart: no record of tool ION-99")
            && e.contains("ION-01")
            && e.contains("ION-02"),
        "{e}"
    );
    let e = run("ION-02", "no_such_parameter");
    assert!(e.contains("no chart watches `no_such_parameter`"), "{e}");
    assert!(!base.with_extension("png").exists(), "no image for no data");
}
