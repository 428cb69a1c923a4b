//! Heads: box and class predictors on the neck's maps, and the in-graph
//! decoding each family's exports carry. Every head says which decoder of
//! `edgewise-decode` reads its outputs, so the zoo can write a manifest.

mod efficientdet;
mod retinanet;
mod ssdlite;
mod yolo;

use edgewise_graph::model::AttributeValue;

use crate::net::{Act, Feature, Net, Pad};

/// What a head produced.
pub struct HeadOutput {
    /// Graph outputs, in order.
    pub outputs: Vec<String>,
    /// The `edgewise-decode` family that reads them.
    pub decoder: &'static str,
    /// Decoder parameters, as TOML `key = value` lines.
    pub params: Vec<String>,
}

/// A detection head. Its name is its [`REGISTRY`] entry's.
pub trait Head {
    /// Pyramid levels it reads, from stride 8 upwards.
    fn levels(&self) -> usize;

    /// The next pyramid level below `maps` (stride 64 and deeper), for a
    /// neck that makes only strides 8 to 32. By default RetinaNet's P6 and
    /// P7: a stride-2 3x3 convolution on the deepest map, with a ReLU before
    /// it from P7 on. These layers produce maps rather than predictions, so
    /// their stage is the neck's (mmdetection's FPN and SSDNeck hold them),
    /// or the backbone's when there is no neck (torchvision's SSD feature
    /// extractor holds its extra blocks).
    fn extra_level(&self, net: &mut Net, maps: &[Feature], channels: usize) -> Feature {
        let last = maps.last().expect("at least one map");
        let input = if maps.len() > 3 {
            net.act(last, Act::Relu)
        } else {
            last.clone()
        };
        net.conv(&input, channels, 3, 2, 1, true, Pad::Symmetric)
    }

    /// Builds the predictors on `maps` (strides 8, 16...) for `classes`
    /// classes; `width` is the channel count of its hidden layers where the
    /// family keeps one (the neck's width).
    fn build(&self, net: &mut Net, maps: &[Feature], classes: usize, width: usize) -> HeadOutput;
}

/// Bias of class predictors: every class starts at probability 0.01
/// (`-ln(0.99 / 0.01)`, RetinaNet's prior).
pub(crate) const CLASS_PRIOR_BIAS: f32 = -4.59512;

/// A registered head.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The name specs use (`retinanet`).
    pub name: &'static str,
    /// Builds it.
    pub make: fn() -> Box<dyn Head>,
}

/// Every head, in the order tables list them: the one list to extend.
/// [`NAMES`] and [`by_name`] read it.
pub const REGISTRY: &[Entry] = &[
    Entry {
        name: "ssdlite",
        make: || Box::new(ssdlite::SsdLite),
    },
    Entry {
        name: "retinanet",
        make: || Box::new(retinanet::RetinaNet),
    },
    Entry {
        name: "yolo",
        make: || Box::new(yolo::Yolo),
    },
    Entry {
        name: "efficientdet",
        make: || Box::new(efficientdet::EfficientDet),
    },
];

/// Registry names.
pub const NAMES: [&str; REGISTRY.len()] = crate::registry_names!(REGISTRY);

/// The head `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Head>> {
    REGISTRY.iter().find(|e| e.name == name).map(|e| (e.make)())
}

/// `[1, A·k, H, W]` to `[1, H·W·A, k]`: the per-location, per-anchor order
/// of torchvision's heads and of the decoders.
pub(crate) fn flatten_level(net: &mut Net, x: &Feature, k: usize) -> String {
    let t = net.raw(
        "Transpose",
        &[&x.name],
        vec![("perm", AttributeValue::Ints(vec![0, 2, 3, 1]))],
    );
    let shape = net.int64s("shape", &[1, -1, k as i64]);
    net.raw("Reshape", &[&t, &shape], vec![])
}

/// The outputs of an anchor-based head read like RetinaNet's: box deltas
/// `[1, N, 4]` and class logits `[1, N, C]` over all levels, anchors of
/// base size 4 x stride.
pub(crate) fn anchor_outputs(
    net: &mut Net,
    maps: &[Feature],
    cls: &[Feature],
    reg: &[Feature],
    classes: usize,
) -> HeadOutput {
    let logits: Vec<String> = cls.iter().map(|c| flatten_level(net, c, classes)).collect();
    let deltas: Vec<String> = reg.iter().map(|r| flatten_level(net, r, 4)).collect();
    let deltas = concat_names(net, &deltas, 1);
    let logits = concat_names(net, &logits, 1);
    let strides: Vec<usize> = maps.iter().map(|m| m.stride).collect();
    let sizes: Vec<usize> = strides.iter().map(|s| 4 * s).collect();
    HeadOutput {
        outputs: vec![deltas, logits],
        decoder: "retinanet",
        params: vec![
            format!("strides = {}", toml_list(&strides)),
            format!("sizes = {}", toml_list(&sizes)),
        ],
    }
}

/// Concatenation of value names along `axis`.
pub(crate) fn concat_names(net: &mut Net, names: &[String], axis: i64) -> String {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    net.raw("Concat", &refs, vec![("axis", AttributeValue::Int(axis))])
}

/// A TOML array of numbers.
pub(crate) fn toml_list<T: std::fmt::Display>(xs: &[T]) -> String {
    let items: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_under_a_unique_name() {
        let registered: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        crate::check_registry(&registered, &NAMES, |name| by_name(name).is_some());
    }
}
