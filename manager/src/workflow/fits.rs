//! Does every task fit some configured resource? A single-node task must fit one node; an
//! MPI task may take whole nodes of one resource. Checked once per `[[tasks]]` entry.

use super::{Entry, Workflow, WorkflowError};
use emanager_shared::TaskSpec;

/// The node shape of one configured resource (from the catalog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeShape {
    pub resource: String,
    pub cores: u32,
    pub gpus: u32,
    /// Memory per node in MiB; 0 when unknown (memory is then not checked).
    pub mem_mb: u64,
    /// Nodes an MPI task may span (the resource's node count or its queue limit).
    pub nodes: u32,
}

impl NodeShape {
    /// The node shape of a catalog resource; an MPI task may span its largest queue.
    pub fn of(r: &emanager_shared::catalog::ResourceEntry) -> NodeShape {
        let queue_nodes = r.queues.iter().map(|q| q.max_nodes).max();
        NodeShape {
            resource: r.name.clone(),
            cores: r.cores_per_node,
            gpus: r.gpus_per_node,
            mem_mb: r.memory_per_node_gb.map(|g| g as u64 * 1024).unwrap_or(0),
            nodes: queue_nodes.unwrap_or(r.nodes).min(r.nodes).max(1),
        }
    }
}

/// One error per task entry that fits no resource, at the field that is too large. No
/// shapes, no errors: there is nothing to check against.
pub fn check_fits(wf: &Workflow, nodes: &[NodeShape]) -> Vec<WorkflowError> {
    let mut errors = Vec::new();
    if nodes.is_empty() {
        return errors;
    }
    let mut last_entry = None;
    for t in &wf.tasks {
        let entry = wf.entries.get(t.entry);
        if entry.is_some() && last_entry == Some(t.entry) {
            continue; // array members share their entry's resources
        }
        last_entry = Some(t.entry);
        if nodes
            .iter()
            .any(|n| nodes_needed(&t.spec, n).is_some_and(|k| k <= span(&t.spec, n)))
        {
            continue;
        }
        let unlocated;
        let entry = match entry {
            Some(e) => e,
            None => {
                // A workflow built by hand has no entries: name the task, no position.
                unlocated = Entry {
                    name: t.spec.name.clone(),
                    count: None,
                    location: wf.name.clone(),
                    cores_location: wf.name.clone(),
                    gpus_location: wf.name.clone(),
                    mem_location: wf.name.clone(),
                };
                &unlocated
            }
        };
        errors.push(misfit(&t.spec, entry, nodes));
    }
    errors
}

/// Nodes of `n` a task needs (`None`: it can never fit, e.g. GPUs on a GPU-less node).
fn nodes_needed(t: &TaskSpec, n: &NodeShape) -> Option<u64> {
    let need = |want: u64, per_node: u64| match (want, per_node) {
        (0, _) => Some(0),
        (_, 0) => None,
        (w, p) => Some(w.div_ceil(p)),
    };
    let cores = need(t.cores as u64, n.cores as u64)?;
    let gpus = need(t.gpus as u64, n.gpus as u64)?;
    let mem = if n.mem_mb == 0 {
        0
    } else {
        need(t.mem_mb, n.mem_mb)?
    };
    Some(cores.max(gpus).max(mem).max(1))
}

/// How many nodes of `n` the task may use.
fn span(t: &TaskSpec, n: &NodeShape) -> u64 {
    if t.mpi {
        n.nodes as u64
    } else {
        1
    }
}

/// One resource dimension of a task: what it wants, what a node has, where it is written.
struct Dim<'a> {
    unit: &'static str,
    want: u64,
    per_node: fn(&NodeShape) -> u64,
    location: &'a str,
}

/// The error for a task that fits nowhere, naming the first dimension that is too large.
fn misfit(t: &TaskSpec, entry: &Entry, nodes: &[NodeShape]) -> WorkflowError {
    let task = format!("{}task `{}`", if t.mpi { "MPI " } else { "" }, entry.name);
    let dims = [
        Dim {
            unit: "cores",
            want: t.cores as u64,
            per_node: |n| n.cores as u64,
            location: &entry.cores_location,
        },
        Dim {
            unit: "GPUs",
            want: t.gpus as u64,
            per_node: |n| n.gpus as u64,
            location: &entry.gpus_location,
        },
        Dim {
            unit: "MiB of memory",
            want: t.mem_mb,
            per_node: |n| n.mem_mb,
            location: &entry.mem_location,
        },
    ];
    for Dim {
        unit,
        want,
        per_node,
        location,
    } in dims
    {
        if unit == "MiB of memory" && nodes.iter().all(|n| n.mem_mb == 0) {
            continue;
        }
        let (best, have) = nodes
            .iter()
            .map(|n| (n, per_node(n) * span(t, n)))
            .max_by_key(|&(_, have)| have)
            .expect("nodes is not empty");
        if want <= have {
            continue;
        }
        let message = if t.mpi {
            format!(
                "{task} asks for {want} {unit}; the largest resource has {have} (resource `{}`: {} nodes x {})",
                best.resource,
                best.nodes,
                per_node(best)
            )
        } else {
            let spans = nodes.iter().any(|n| per_node(n) * n.nodes as u64 >= want);
            let hint = if spans {
                "; set mpi = true to span nodes"
            } else {
                ""
            };
            format!(
                "{task} asks for {want} {unit}; the largest node has {have} (resource `{}`){hint}",
                best.resource
            )
        };
        return WorkflowError {
            location: location.to_string(),
            message,
        };
    }
    WorkflowError {
        location: entry.location.clone(),
        message: format!(
            "{task} asks for {} cores, {} GPUs and {} MiB together, which no resource's {} offers; lower one of them",
            t.cores,
            t.gpus,
            t.mem_mb,
            if t.mpi { "allocation" } else { "node" }
        ),
    }
}
