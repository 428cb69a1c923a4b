//! The stage finder against the truth: every combination, built with
//! meaningless names, is partitioned by `edgewise-stages` with exactly the
//! boundaries the zoo recorded in its metadata.

use std::collections::BTreeSet;
use std::time::Instant;

use edgewise_graph::InputShape;
use edgewise_stages::{Overrides, StagedModel};
use edgewise_zoo::{Init, Options, Spec, build, heads};

/// Input size: large enough that the deepest level of SSDLite (stride 256)
/// is still a 2x2 map, not a global one.
const SIZE: usize = 512;

fn check(head: &str) {
    let options = Options {
        size: SIZE,
        classes: 3,
        neck_channels: 64,
        seed: 7,
        init: Init::Kaiming,
    };
    let shape = InputShape::parse(&format!("1x3x{SIZE}x{SIZE}")).unwrap();
    let mut failures = vec![];
    for text in crate::combinations(head) {
        let started = Instant::now();
        let mut d = build(&Spec::parse(&text).unwrap(), &options).unwrap();
        d.anonymize();
        let staged = StagedModel::new(
            d.model.clone(),
            std::slice::from_ref(&shape),
            &Overrides::default(),
        )
        .unwrap();
        let p = &staged.partition;
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        let found_out: Vec<String> = p.backbone_outputs.iter().map(|b| b.value.clone()).collect();
        let found_in: Vec<String> = p.head_inputs.iter().map(|b| b.value.clone()).collect();
        let mut wrong = vec![];
        if set(&found_out) != set(&d.backbone_out) {
            wrong.push(format!(
                "backbone out {:?} (strides {:?}), truth {:?}",
                found_out,
                p.backbone_outputs
                    .iter()
                    .map(|b| b.stride)
                    .collect::<Vec<_>>(),
                d.backbone_out
            ));
        }
        if set(&found_in) != set(&d.head_in) {
            wrong.push(format!(
                "head in {:?} (strides {:?}), truth {:?}",
                found_in,
                p.head_inputs.iter().map(|b| b.stride).collect::<Vec<_>>(),
                d.head_in
            ));
        }
        eprintln!(
            "{text}: {} in {:.1} s",
            if wrong.is_empty() { "ok" } else { "WRONG" },
            started.elapsed().as_secs_f64()
        );
        if !wrong.is_empty() {
            failures.push(format!("{text}: {}", wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn anonymous_ssdlite_detectors_split_where_built() {
    check("ssdlite");
}

#[test]
fn anonymous_retinanet_detectors_split_where_built() {
    check("retinanet");
}

#[test]
fn anonymous_yolo_detectors_split_where_built() {
    check("yolo");
}

#[test]
fn anonymous_efficientdet_detectors_split_where_built() {
    check("efficientdet");
}

#[test]
fn every_head_is_checked() {
    assert_eq!(
        heads::NAMES,
        ["ssdlite", "retinanet", "yolo", "efficientdet"]
    );
}
