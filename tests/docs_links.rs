//! Every relative link of the README, docs/ and results/*.md points at a file or folder
//! of the repository (a moved or renamed file breaks the front door otherwise).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The targets of `[text](target)` links in `markdown`, without web links and anchors.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = markdown;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or("").trim();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            links.push(target.to_string());
        }
        rest = &rest[end..];
    }
    links
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for dir in ["docs", "results"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let base = file.parent().unwrap_or(Path::new("."));
        for link in relative_links(&text) {
            checked += 1;
            if !base.join(&link).exists() {
                broken.push(format!("{}: {link}", file.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(checked >= 10, "the link parser found only {checked} links");
    assert!(broken.is_empty(), "links that point nowhere:\n{}", broken.join("\n"));
}

#[test]
fn the_link_parser_finds_relative_links_only() {
    let md = "see [a](docs/A.md#part), [b](https://x.org/y), [c](../c.txt), [top](#top) and [d](d)";
    assert_eq!(relative_links(md), ["docs/A.md", "../c.txt", "d"]);
}
