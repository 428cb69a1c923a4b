//! Editing a graph's node list: [`Edit`] collects drops, replacements,
//! insertions and rewirings against the node indices as they are, and
//! applies them at once, so a pass can find everything it will change before
//! it changes anything. [`Names`] makes new value and node names that clash
//! with none in the model.

use std::collections::{HashMap, HashSet};

use crate::model::{Graph, Initializer, Node};

/// A batch of changes to a graph's nodes, keyed by the index each node has
/// before the edit. Nodes keep their order: a replacement takes its node's
/// place, insertions go right after their anchor node (or first), so a
/// topologically ordered list stays ordered when the new nodes read only
/// values written before their place.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    dropped: HashSet<usize>,
    replaced: HashMap<usize, Node>,
    first: Vec<Node>,
    after: HashMap<usize, Vec<Node>>,
    rewired: HashMap<String, String>,
    initializers: Vec<Initializer>,
}

impl Edit {
    /// An edit that changes nothing yet.
    pub fn new() -> Edit {
        Edit::default()
    }

    /// Removes node `ix`.
    pub fn drop(&mut self, ix: usize) {
        self.dropped.insert(ix);
    }

    /// Puts `node` in the place of node `ix` (also when `ix` is dropped).
    pub fn replace(&mut self, ix: usize, node: Node) {
        self.replaced.insert(ix, node);
    }

    /// Inserts `nodes` before every node of the graph.
    pub fn insert_first(&mut self, nodes: impl IntoIterator<Item = Node>) {
        self.first.extend(nodes);
    }

    /// Inserts `nodes` right after node `ix` (or after its replacement; in
    /// its place when it is dropped), after those inserted there before.
    pub fn insert_after(&mut self, ix: usize, nodes: impl IntoIterator<Item = Node>) {
        self.after.entry(ix).or_default().extend(nodes);
    }

    /// Makes every node that reads value `from` read `to` instead. Chains
    /// are followed (`a -> b` and `b -> c` make readers of `a` read `c`).
    /// Graph outputs keep their names.
    pub fn rewire(&mut self, from: impl Into<String>, to: impl Into<String>) {
        self.rewired.insert(from.into(), to.into());
    }

    /// Adds a constant to the graph's initializers.
    pub fn add_initializer(&mut self, initializer: Initializer) {
        self.initializers.push(initializer);
    }

    /// Whether the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.dropped.is_empty()
            && self.replaced.is_empty()
            && self.first.is_empty()
            && self.after.is_empty()
            && self.rewired.is_empty()
            && self.initializers.is_empty()
    }

    /// Applies the edit to `graph`.
    pub fn apply(mut self, graph: &mut Graph) {
        let old = std::mem::take(&mut graph.nodes);
        let mut nodes = std::mem::take(&mut self.first);
        nodes.reserve(old.len());
        for (ix, node) in old.into_iter().enumerate() {
            match self.replaced.remove(&ix) {
                Some(new) => nodes.push(new),
                None if self.dropped.contains(&ix) => {}
                None => nodes.push(node),
            }
            nodes.extend(self.after.remove(&ix).unwrap_or_default());
        }
        if !self.rewired.is_empty() {
            for input in nodes.iter_mut().flat_map(|n| n.inputs.iter_mut()) {
                // Bounded by the number of renames: a cycle cannot loop forever.
                for _ in 0..self.rewired.len() {
                    match self.rewired.get(input.as_str()) {
                        Some(to) if to != input => *input = to.clone(),
                        _ => break,
                    }
                }
            }
        }
        graph.nodes = nodes;
        graph.initializers.append(&mut self.initializers);
    }
}

impl Graph {
    /// For every value, the indices of the nodes that read it, in node order.
    pub fn readers(&self) -> HashMap<String, Vec<usize>> {
        let mut readers: HashMap<String, Vec<usize>> = HashMap::new();
        for (ix, node) in self.nodes.iter().enumerate() {
            for i in node.inputs.iter().filter(|i| !i.is_empty()) {
                readers.entry(i.clone()).or_default().push(ix);
            }
        }
        readers
    }

    /// For every value a node writes, the index of that node.
    pub fn producers(&self) -> HashMap<String, usize> {
        self.nodes
            .iter()
            .enumerate()
            .flat_map(|(ix, n)| n.outputs.iter().map(move |o| (o.clone(), ix)))
            .collect()
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&Initializer> {
        self.initializers.iter().find(|i| i.name == name)
    }

    /// The names of the graph outputs.
    pub fn output_names(&self) -> HashSet<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// Removes the initializers no node and no graph output reads.
    pub fn drop_unread_initializers(&mut self) {
        let read: HashSet<&str> = self
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter())
            .chain(self.outputs.iter().map(|o| &o.name))
            .map(String::as_str)
            .collect();
        self.initializers.retain(|i| read.contains(i.name.as_str()));
    }
}

/// The names in use in a model, to make new ones that clash with none.
#[derive(Clone, Debug)]
pub struct Names(HashSet<String>);

impl Names {
    /// Every node, value and initializer name of graph `g`.
    pub fn of(g: &Graph) -> Names {
        Names(
            g.nodes
                .iter()
                .flat_map(|n| n.inputs.iter().chain(&n.outputs).chain([&n.name]))
                .chain(g.initializers.iter().map(|i| &i.name))
                .chain(g.inputs.iter().chain(&g.outputs).map(|v| &v.name))
                .cloned()
                .collect(),
        )
    }

    /// `base`, or `base_1`, `base_2`... the first not in use; now in use.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while self.0.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, inputs: &[&str], output: &str) -> Node {
        Node {
            name: name.into(),
            op_type: "Relu".into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes: vec![],
            doc_string: String::new(),
        }
    }

    fn names(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    #[test]
    fn drops_replaces_inserts_and_rewires_by_the_old_indices() {
        let mut g = Graph {
            nodes: vec![
                node("a", &["x"], "a"),
                node("b", &["a"], "b"),
                node("c", &["b"], "c"),
                node("d", &["c", "a"], "d"),
            ],
            ..Graph::default()
        };
        let mut edit = Edit::new();
        assert!(edit.is_empty());
        edit.drop(1);
        edit.drop(2);
        edit.replace(2, node("c2", &["b"], "c2"));
        edit.insert_after(1, [node("after_b", &["a"], "e")]);
        edit.insert_after(3, [node("last", &["d"], "f")]);
        edit.insert_first([node("first", &["x"], "g")]);
        edit.rewire("b", "a");
        edit.rewire("c", "c2");
        edit.apply(&mut g);
        assert_eq!(names(&g), ["first", "a", "after_b", "c2", "d", "last"]);
        assert_eq!(g.nodes[3].inputs, ["a"], "c2 read b, rewired to a");
        assert_eq!(g.nodes[4].inputs, ["c2", "a"]);
    }

    #[test]
    fn rewiring_follows_chains_and_survives_cycles() {
        let mut g = Graph {
            nodes: vec![node("r", &["p", "u"], "y")],
            ..Graph::default()
        };
        let mut edit = Edit::new();
        edit.rewire("p", "q");
        edit.rewire("q", "s");
        edit.rewire("u", "v");
        edit.rewire("v", "u");
        edit.apply(&mut g);
        assert_eq!(g.nodes[0].inputs[0], "s");
        assert!(["u", "v"].contains(&g.nodes[0].inputs[1].as_str()));
    }

    #[test]
    fn fresh_names_never_clash() {
        let g = Graph {
            nodes: vec![node("n", &["x"], "y")],
            ..Graph::default()
        };
        let mut names = Names::of(&g);
        assert_eq!(names.fresh("y"), "y_1");
        assert_eq!(names.fresh("y"), "y_2");
        assert_eq!(names.fresh("z"), "z");
        assert_eq!(names.fresh("z"), "z_1");
    }
}
