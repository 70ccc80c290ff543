//! Every relative link in the Markdown documentation resolves: the README,
//! `docs/` and the Python package's README.

use std::path::{Path, PathBuf};

/// The targets of the inline links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            out.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    out
}

/// The relative targets of `file` that do not exist.
fn broken(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    link_targets(&text)
        .into_iter()
        .filter(|t| !t.contains("://") && !t.starts_with('#') && !t.starts_with("mailto:"))
        .filter(|t| {
            let path = t.split('#').next().unwrap_or(t);
            !path.is_empty() && !dir.join(path).exists()
        })
        .collect()
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("python/README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "md") {
                files.push(p);
            }
        }
    }
    files
}

#[test]
fn every_relative_link_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = markdown_files(root);
    assert!(files.len() >= 3, "{files:?}");
    let bad: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let name = f.strip_prefix(root).unwrap().display().to_string();
            broken(f).into_iter().map(move |t| format!("{name}: {t}"))
        })
        .collect();
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_check_sees_a_broken_link_and_skips_code_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("there.md"), "").unwrap();
    let md = dir.path().join("a.md");
    std::fs::write(
        &md,
        "[ok](there.md#part) [gone](missing.md) [web](https://x.org/y)\n```\n[no](code.md)\n```\n[top](#a)\n",
    )
    .unwrap();
    assert_eq!(broken(&md), vec!["missing.md".to_string()]);
}
