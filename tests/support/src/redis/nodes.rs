//! `CLUSTER NODES` as one node sees it, and the topology it describes.

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub(super) struct NodeLine {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) is_master: bool,
    pub(super) failed: bool,
    pub(super) connected: bool,
    pub(super) master_id: Option<String>,
    pub(super) slots: Vec<(u16, u16)>,
}

impl NodeLine {
    pub(super) fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

pub(super) fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Some(NodeLine {
                id: f[0].to_string(),
                port,
                is_master: flags.contains(&"master"),
                failed: flags
                    .iter()
                    .any(|&x| x == "fail" || x == "fail?" || x == "handshake" || x == "noaddr"),
                connected: f[7] == "connected",
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// (port, is_master, master's port, sorted slot ranges) for every live node
/// in one node's view; `None` when that view is not settled (a live node
/// missing, failed or disconnected, or slots owned by a dead node).
pub(super) type Topology = Vec<(u16, bool, Option<u16>, Vec<(u16, u16)>)>;

pub(super) fn topology_of(view: &[NodeLine], live: &[u16]) -> Option<Topology> {
    let mut out = Vec::new();
    for &port in live {
        let n = view.iter().find(|n| n.port == port)?;
        if n.failed || !n.connected {
            return None;
        }
        let master = match &n.master_id {
            Some(id) => Some(view.iter().find(|m| &m.id == id)?.port),
            None => None,
        };
        let mut slots = n.slots.clone();
        slots.sort_unstable();
        out.push((port, n.is_master, master, slots));
    }
    if view.iter().any(|n| !live.contains(&n.port) && !n.slots.is_empty()) {
        return None;
    }
    out.sort();
    Some(out)
}
