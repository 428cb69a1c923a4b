//! `edge-bench` on PP-OCRv4 det at 640: every plan node attributed, stage
//! medians that add up to the frame, and the same stage split as
//! `edge-convert inspect`.

use std::collections::HashMap;

use edgewise_bench::render::{Format, Options, render};
use edgewise_convert::inspect::inspect;
use edgewise_measure::measure::{Budget, Target, measure};
use edgewise_measure::report::{MAX_STAGE_GAP_PCT, Report};
use edgewise_runtime::{ModelSource, QdqMode};
use edgewise_tests::{photo, root};

#[test]
fn ppocr_det_stage_report_is_complete_consistent_and_agrees_with_inspect() {
    let source = ModelSource::resolve(&root().join("models/ppocr_v4_det.toml")).unwrap();
    let shapes = source.input_shapes(Some("1x3x640x640")).unwrap();
    let overrides = source.stage_boundaries(&[], &[]);
    let target = Target::new("fp32".into(), source.clone(), shapes.clone(), &overrides).unwrap();
    // One thread: on a shared 2-core machine a second thread competes with
    // whatever else runs, and the medians need more runs to settle.
    let budget = Budget {
        warmup: 2,
        runs: 40,
        max_seconds: 120.0,
        threads: 1,
        qdq: QdqMode::Float,
        precision: Default::default(),
        float_conv: Default::default(),
    };
    let run = || {
        measure(
            &target,
            Some(&photo("page.png")),
            budget,
            None,
            &mut |_, _| {},
        )
        .unwrap()
    };
    // The sum of the stage medians is not the median of the frames' sums:
    // a burst from a neighbour on this shared machine can skew one run's
    // medians apart (-4.5% once). Every plan node is attributed or the run
    // fails outright; the medians must agree in one of three runs.
    let mut gaps = vec![];
    let v = loop {
        let v = run();
        assert!(v.unattributed.is_empty(), "{:?}", v.unattributed);
        gaps.push(format!(
            "stage medians sum to {:.2} ms against a profiled median of {:.2} ms",
            v.stage_sum_ms, v.profiled.median_ms
        ));
        if v.stage_gap_pct.abs() <= MAX_STAGE_GAP_PCT {
            break v;
        }
        assert!(gaps.len() < 3, "{gaps:#?}");
    };
    assert!(v.overhead_pct.is_finite());
    let text = render(
        &Report::new(vec![v.clone()]),
        Format::Table,
        Options { top: 5 },
    )
    .unwrap();
    assert!(
        text.contains(&format!("overhead {:+.1}%", v.overhead_pct)),
        "{text}"
    );
    println!("{text}");

    // The same split as inspect: every timed node is in inspect's stage for
    // it, and no node with MACs is missing from the timing.
    let inspection = inspect(&source.onnx, &shapes, &overrides, true).unwrap();
    let lines = inspection.node_lines.unwrap();
    let stage_of: HashMap<&str, String> = lines
        .iter()
        .map(|n| (n.name.as_str(), n.stage.name().to_string()))
        .collect();
    for node in &v.nodes {
        assert_eq!(
            stage_of.get(node.name.as_str()),
            Some(&node.stage),
            "{}",
            node.name
        );
    }
    for line in lines.iter().filter(|n| n.cost.macs > 0) {
        assert!(
            v.nodes.iter().any(|n| n.name == line.name),
            "{} ({}) was not timed",
            line.name,
            line.op
        );
    }
    for summary in inspection.stages.iter().map(|s| &s.summary) {
        let row = v.stage(summary.stage.name());
        if summary.cost.macs > 0 {
            let row = row.unwrap_or_else(|| panic!("no {} row", summary.stage));
            assert_eq!(row.macs, Some(summary.cost.macs), "{}", summary.stage);
        }
    }
    let stages: Vec<&str> = v.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        ["pre", "backbone", "neck", "head", "post", "decode+nms"]
    );
}
