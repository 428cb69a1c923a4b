//! Per-stage totals of the cost model.

use edgewise_graph::NodeCost;
use serde::Serialize;

use crate::stage::{Partition, Stage};

/// Totals of one stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    /// The stage.
    pub stage: Stage,
    /// Non-constant nodes in it.
    pub nodes: usize,
    /// Summed costs.
    #[serde(flatten)]
    pub cost: NodeCost,
    /// Share of the model's multiply-accumulates, 0 to 1.
    pub mac_share: f64,
}

/// Sums `costs` (one per node) by stage; `constant` marks nodes not to count.
pub fn summarize(
    partition: &Partition,
    costs: &[NodeCost],
    constant: &[bool],
) -> Vec<StageSummary> {
    let total_macs: u64 = costs.iter().map(|c| c.macs).sum();
    Stage::ALL
        .iter()
        .map(|&stage| {
            let mut cost = NodeCost::default();
            let mut nodes = 0;
            for (ix, s) in partition.stages.iter().enumerate() {
                if *s == stage {
                    cost += costs[ix];
                    nodes += usize::from(!constant[ix]);
                }
            }
            let mac_share = if total_macs == 0 {
                0.0
            } else {
                cost.macs as f64 / total_macs as f64
            };
            StageSummary {
                stage,
                nodes,
                cost,
                mac_share,
            }
        })
        .collect()
}
