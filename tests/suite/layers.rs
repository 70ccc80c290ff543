//! The library's top-level modules form a DAG: a module may use the ones
//! below it, never one above. This reads every `crate::…` path in `src/`
//! (tests aside) and fails naming the cycle if one comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module and the top-level modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The code of a file without its test module (`#[cfg(test)]`, other
/// attributes, then `mod tests`, to the end: where this crate keeps its
/// tests) and without comments.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines[i + 1..]
                    .iter()
                    .find(|l| !l.trim_start().starts_with("#["))
                    .is_some_and(|l| l.trim_start().starts_with("mod tests"))
        })
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names after `crate::` in `code`: `crate::pool::Pool` gives `pool`,
/// `use crate::{a, b::C}` gives `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name = item.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    out.push(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// The top-level modules `lib.rs` declares.
fn modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

/// What `lib.rs` re-exports at the root: name → module. A name that is
/// also a module (`select`, `score`) is the module in a path.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines().filter(|l| l.starts_with("pub use ")) {
        let path = line.trim_start_matches("pub use ").trim_end_matches(';');
        let (module, items) = path.split_once("::").unwrap_or((path, ""));
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let name = item.trim().rsplit("::").next().unwrap_or("").trim();
            out.insert(name.to_string(), module.to_string());
        }
    }
    out
}

/// The graph of a source tree given as (path under `src/`, text) pairs.
fn graph(files: &[(String, String)]) -> Graph {
    let lib = files
        .iter()
        .find(|(p, _)| p == "lib.rs")
        .map_or("", |(_, t)| t.as_str());
    let root = reexports(lib);
    let mods = modules(lib);
    let mut g = Graph::new();
    for (path, text) in files {
        if path == "lib.rs" || path == "main.rs" || path.starts_with("cli/") {
            continue;
        }
        let module = path
            .split('/')
            .next()
            .unwrap_or(path)
            .trim_end_matches(".rs")
            .to_string();
        let uses = g.entry(module.clone()).or_default();
        for name in crate_paths(&code(text)) {
            let target = match mods.contains(&name) {
                true => name,
                false => root.get(&name).cloned().unwrap_or(name),
            };
            if target != module {
                uses.insert(target);
            }
        }
    }
    g
}

/// A cycle of `g`, as the modules along it, if there is one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(g, m, &mut Vec::new(), &mut done))
}

fn read_tree(dir: &Path, under: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_tree(&path, under, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(under)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn the_top_level_modules_form_a_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    let g = graph(&files);
    assert!(
        g.len() >= 15,
        "read only {} modules: {:?}",
        g.len(),
        g.keys()
    );
    if let Some(c) = cycle(&g) {
        panic!("the modules form a cycle: {}", c.join(" -> "));
    }
    // The leaves stand on nothing: what a query is, and the seeded RNG.
    for leaf in ["query", "rng"] {
        assert!(g[leaf].is_empty(), "{leaf} uses {:?}", g[leaf]);
    }
}

#[test]
fn the_check_finds_a_cycle_through_a_grouped_import_and_a_reexport() {
    let files = vec![
        (
            "lib.rs".to_string(),
            "mod a;\npub mod b;\nmod c;\npub use b::Thing;\npub use a::c;\n".to_string(),
        ),
        (
            "a/mod.rs".to_string(),
            "use crate::{c::X, query};\n".to_string(),
        ),
        ("b.rs".to_string(), "fn f() { crate::a::g() }\n".to_string()),
        (
            "c.rs".to_string(),
            "// crate::nothing\nuse crate::Thing;\n#[cfg(test)]\n#[allow(x)]\nmod tests { use crate::d; }\n"
                .to_string(),
        ),
    ];
    let g = graph(&files);
    // `crate::Thing` is b's; `crate::c` is the module, not a's re-export.
    assert_eq!(g["c"], BTreeSet::from(["b".to_string()]));
    assert_eq!(
        g["a"],
        BTreeSet::from(["c".to_string(), "query".to_string()])
    );
    let c = cycle(&g).expect("a -> c -> b -> a");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
}
