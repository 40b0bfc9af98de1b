//! The fuzz targets: each runs cyfr's real entry points on one input and panics when a
//! property breaks.

mod hostjson;
mod jsonrpc;
mod manifest;
mod policy;
mod redact;
mod reference;
mod stream;

/// One fuzz target.
pub struct Target {
    /// Name used on the command line.
    pub name: &'static str,
    /// Runs one input; panics on a crash or a broken property.
    pub run: fn(&[u8]),
    /// Valid examples to mutate.
    pub corpus: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order `--target all` runs them.
pub const ALL: &[Target] = &[
    Target {
        name: "jsonrpc",
        run: jsonrpc::target,
        corpus: jsonrpc::corpus,
    },
    Target {
        name: "reference",
        run: reference::target,
        corpus: reference::corpus,
    },
    Target {
        name: "policy",
        run: policy::target,
        corpus: policy::corpus,
    },
    Target {
        name: "manifest",
        run: manifest::target,
        corpus: manifest::corpus,
    },
    Target {
        name: "hostjson",
        run: hostjson::target,
        corpus: hostjson::corpus,
    },
    Target {
        name: "stream",
        run: stream::target,
        corpus: stream::corpus,
    },
    Target {
        name: "redact",
        run: redact::target,
        corpus: redact::corpus,
    },
];

/// The target called `name`.
pub fn find(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

/// Corpus entries from text examples.
fn lines(examples: &[&str]) -> Vec<Vec<u8>> {
    examples.iter().map(|e| e.as_bytes().to_vec()).collect()
}
