//! The shape of the source tree, checked: modules depend on each other one way (no import
//! cycle), the command line's files hold only short functions (flags and dispatch; the
//! work is the library's), and the binary a user builds reads no test hook.

mod common;
use common::root;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;

/// The library modules `src/*.rs` (not lib.rs, main.rs, cli.rs) and the modules each one
/// names in its code outside its `#[cfg(test)] mod tests` (comments ignored): `crate::x`
/// and `use crate::{x, ...}`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut sources = BTreeMap::new();
    for entry in fs::read_dir(root().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.extension().is_some_and(|e| e == "rs") && !["lib", "main", "cli"].contains(&name.as_str()) {
            sources.insert(name, fs::read_to_string(&path).unwrap());
        }
    }
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, text)| {
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
            let mut uses = BTreeSet::new();
            for line in code.lines().map(|l| l.split("//").next().unwrap()) {
                for part in line.split("crate::").skip(1) {
                    let group = part.strip_prefix('{').map(|g| g.split('}').next().unwrap());
                    for word in group.map_or(vec![part], |g| g.split(',').collect()) {
                        let module: String = word.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                        if names.contains(&module) && module != *name {
                            uses.insert(module);
                        }
                    }
                }
            }
            (name.clone(), uses)
        })
        .collect()
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph();
    assert!(graph["train"].contains("resume") && graph["resume"].contains("run_dir"), "the graph is read: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle between src/ modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(find_cycle(&edges(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
}

/// The length, in lines, of every `fn` in `text` (from its signature to its closing brace
/// at the same indentation), by name.
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = ["fn ", "pub fn ", "pub(crate) fn "].iter().find_map(|p| trimmed.strip_prefix(p)) else { continue };
        let indent = line.len() - trimmed.len();
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let end = lines[i..].iter().position(|l| l.len() > indent && l[..indent].trim().is_empty() && &l[indent..] == "}");
        if let Some(end) = end {
            out.push((name, end + 1));
        }
    }
    out
}

#[test]
fn the_command_line_files_hold_only_short_functions() {
    for file in ["src/main.rs", "src/cli.rs"] {
        let lengths = function_lengths(&fs::read_to_string(root().join(file)).unwrap());
        assert!(lengths.iter().any(|(n, _)| n == "main" || n == "to_options"), "{file}: functions are found: {lengths:?}");
        for (name, n) in lengths {
            assert!(
                n <= 40,
                "{file}: fn {name} has {n} lines; the command line only reads flags and dispatches (move the work to the library)"
            );
        }
    }
    let sample = "fn short() {\n    a();\n}\n\nfn long() {\n    if x {\n        b();\n    }\n}\n";
    assert_eq!(function_lengths(sample), [("short".to_string(), 3), ("long".to_string(), 5)]);
}

/// Test hooks are read only in `src/test_hooks.rs`, whose readers compile only with the
/// `test-hooks` feature (`make test`); the release binary has none.
#[test]
fn test_hooks_live_only_in_test_only_code() {
    for entry in fs::read_dir(root().join("src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        if path.file_name().unwrap() != "test_hooks.rs" {
            assert!(!text.contains("CHARGPT_"), "{} names a CHARGPT_ variable; test hooks belong in src/test_hooks.rs", path.display());
            continue;
        }
        for line in text.lines().filter(|l| l.contains("std::env::var")) {
            let at = text.find(line).unwrap();
            let before = &text[..at];
            let cfg = before.rfind("#[cfg(feature = \"test-hooks\")]").unwrap_or(0);
            let fn_start = before.rfind("pub fn ").unwrap_or(0);
            assert!(cfg > fn_start, "src/test_hooks.rs reads a variable outside #[cfg(feature = \"test-hooks\")]: {line}");
        }
    }
}
