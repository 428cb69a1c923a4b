//! Constant inputs of typed-model nodes, read before tract has folded them.

use std::sync::Arc;

use edgewise_graph::tract_onnx::prelude::*;

/// The value of `outlet` when it depends on constants only. Before
/// decluttering, tract has not folded them yet: a bias is still a `Const`
/// behind a `Cast` and a reshape.
pub fn const_value(model: &TypedModel, outlet: OutletId, depth: usize) -> Option<Arc<Tensor>> {
    let fact = model.outlet_fact(outlet).ok()?;
    if let Some(k) = &fact.konst {
        return Some(k.clone());
    }
    let node = model.node(outlet.node);
    if depth == 0 || node.inputs.is_empty() {
        return None;
    }
    let inputs = node
        .inputs
        .iter()
        .map(|i| const_value(model, *i, depth - 1).map(|t| t.into_tvalue()))
        .collect::<Option<TVec<TValue>>>()?;
    let outputs = node.op.eval_out_of_plan(inputs).ok()??;
    Some(Arc::new(outputs.get(outlet.slot)?.clone().into_tensor()))
}

/// A constant input of `node` as a flat vector of `T`.
pub fn constant<T: Datum + Copy>(
    model: &TypedModel,
    node: &TypedNode,
    ix: usize,
) -> Result<Vec<T>, String> {
    let konst = const_value(model, node.inputs[ix], 4)
        .ok_or_else(|| format!("input {ix} is not a constant"))?;
    let cast = konst
        .cast_to::<T>()
        .map_err(|e| format!("input {ix}: {e}"))?;
    cast.try_as_plain_ram()
        .and_then(|r| r.as_slice::<T>().map(<[T]>::to_vec))
        .map_err(|e| e.to_string())
}
