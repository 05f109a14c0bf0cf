//! Placeholder first-fit scheduler; replaced by the bitmap scheduler from the `planner` branch.

#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
    pub processes: u32,
    pub multi_node: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeSlots {
    pub node: usize,
    pub cores: Vec<u32>,
    pub gpus: Vec<u32>,
    pub mem_mb: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slots {
    pub nodes: Vec<NodeSlots>,
}

pub struct Scheduler {
    nodes: Vec<NodeSpec>,
    free: Vec<(Vec<bool>, Vec<bool>, u64)>,
}

impl Scheduler {
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        let free = nodes
            .iter()
            .map(|n| {
                (
                    vec![true; n.cores as usize],
                    vec![true; n.gpus as usize],
                    n.mem_mb,
                )
            })
            .collect();
        Scheduler { nodes, free }
    }
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }
    pub fn can_ever_fit(&self, req: &Request) -> Result<(), String> {
        let max = self.nodes.iter().map(|n| n.cores).max().unwrap_or(0);
        if req.cores > max {
            return Err(format!(
                "task asks for {} cores on one node; the largest node has {max}",
                req.cores
            ));
        }
        Ok(())
    }
    pub fn place(&mut self, req: &Request) -> Option<Slots> {
        for (i, (cores, gpus, mem)) in self.free.iter_mut().enumerate() {
            let fc: Vec<u32> = (0..cores.len() as u32)
                .filter(|&c| cores[c as usize])
                .collect();
            let fg: Vec<u32> = (0..gpus.len() as u32)
                .filter(|&g| gpus[g as usize])
                .collect();
            if fc.len() as u32 >= req.cores && fg.len() as u32 >= req.gpus && *mem >= req.mem_mb {
                let c: Vec<u32> = fc[..req.cores as usize].to_vec();
                let g: Vec<u32> = fg[..req.gpus as usize].to_vec();
                for &x in &c {
                    cores[x as usize] = false;
                }
                for &x in &g {
                    gpus[x as usize] = false;
                }
                *mem -= req.mem_mb;
                return Some(Slots {
                    nodes: vec![NodeSlots {
                        node: i,
                        cores: c,
                        gpus: g,
                        mem_mb: req.mem_mb,
                    }],
                });
            }
        }
        None
    }
    pub fn release(&mut self, slots: &Slots) {
        for n in &slots.nodes {
            let (cores, gpus, mem) = &mut self.free[n.node];
            for &c in &n.cores {
                cores[c as usize] = true;
            }
            for &g in &n.gpus {
                gpus[g as usize] = true;
            }
            *mem += n.mem_mb;
        }
    }
    pub fn free_cores(&self) -> u32 {
        self.free
            .iter()
            .map(|f| f.0.iter().filter(|x| **x).count() as u32)
            .sum()
    }
    pub fn total_cores(&self) -> u32 {
        self.nodes.iter().map(|n| n.cores).sum()
    }
}
