//! Every backbone, neck and head combination builds, is analysed by tract,
//! and runs; stage boundaries are in the metadata.

use std::time::Instant;

use edgewise_graph::tract_onnx::prelude::*;
use edgewise_graph::{InputShape, analysis::tract_model, analyze};
use edgewise_zoo::{BACKBONE_OUT_KEY, HEAD_IN_KEY, Init, Options, Spec, backbones, build, necks};

/// Every backbone and neck with `head`: built, analysed, optimized and run
/// by tract at 64x64 (small, so that the 144 combinations take a minute).
fn every_combination_with(head: &str) {
    let options = Options {
        size: 64,
        classes: 3,
        neck_channels: 64,
        seed: 7,
        init: Init::Kaiming,
    };
    let only = std::env::var("ZOO_ONLY").ok();
    let mut failures = vec![];
    for backbone in backbones::NAMES {
        for neck in necks::NAMES {
            {
                let text = format!("{backbone}+{neck}+{head}");
                if only.as_deref().is_some_and(|o| !text.contains(o)) {
                    continue;
                }
                let started = Instant::now();
                let spec = Spec::parse(&text).unwrap();
                let d = build(&spec, &options).unwrap();
                assert!(d.model.metadata(BACKBONE_OUT_KEY).is_some());
                assert!(d.model.metadata(HEAD_IN_KEY).is_some());
                let shape = InputShape::parse("1x3x64x64").unwrap();
                let result = analyze(&d.model, std::slice::from_ref(&shape))
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        let inputs = vec![("image".to_string(), vec![1, 3, 64, 64])];
                        let plan = tract_model(&d.model, &inputs)
                            .map_err(|e| e.to_string())?
                            .into_optimized()
                            .map_err(|e| format!("{e:#}"))?
                            .into_runnable()
                            .map_err(|e| format!("{e:#}"))?;
                        let x = Tensor::zero::<f32>(&[1, 3, 64, 64]).unwrap();
                        let out = plan.run(tvec!(x.into())).map_err(|e| format!("{e:#}"))?;
                        let finite = out.iter().all(|t| {
                            let t = t.clone().into_tensor();
                            edgewise_graph::tensor::values::<f32>(&t)
                                .is_some_and(|v| v.iter().all(|x| x.is_finite()))
                        });
                        if finite {
                            Ok(out.len())
                        } else {
                            Err("non-finite output".into())
                        }
                    });
                eprintln!(
                    "{text}: {:?} in {:.1} s",
                    result,
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = result {
                    failures.push(format!("{text}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_combination_with_ssdlite() {
    every_combination_with("ssdlite");
}

#[test]
fn every_combination_with_retinanet() {
    every_combination_with("retinanet");
}

#[test]
fn every_combination_with_yolo() {
    every_combination_with("yolo");
}

#[test]
fn every_combination_with_efficientdet() {
    every_combination_with("efficientdet");
}

#[test]
fn the_registry_has_the_four_heads_tested_here() {
    assert_eq!(
        edgewise_zoo::heads::NAMES,
        ["ssdlite", "retinanet", "yolo", "efficientdet"]
    );
}
