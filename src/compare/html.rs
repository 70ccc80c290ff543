//! The report page: one self-contained HTML file (no network fetches) that
//! draws the learning curves with their confidence bands, the ranking
//! table, the paired-test matrix, the protocol and the versions, from the
//! JSON it carries. The same JSON is written beside it as `compare.json`,
//! so what the page shows can be checked against the file
//! (`tests/suite/compare.rs` does, in Chromium).

use crate::error::{Error, Result};

/// The page for `doc` (`{"meta", "comparison", "curves"}`).
pub fn page(doc: &serde_json::Value) -> Result<String> {
    page_from(TEMPLATE, doc)
}

/// `template` with the shared style and script, `doc` in its data element
/// and `doc.meta.title` as its title: the comparison's page, or another drawn the same way (a
/// workspace's report).
pub fn page_from(template: &str, doc: &serde_json::Value) -> Result<String> {
    let json = serde_json::to_string(doc).map_err(|e| Error::Config(e.to_string()))?;
    // Inside <script>, "</" could close the element early and "<!--" could
    // open a comment; JSON allows "\/" for "/" and "\u003c" for "<".
    let json = json.replace("</", "<\\/").replace("<!--", "\\u003c!--");
    let title = doc["meta"]["title"].as_str().unwrap_or("alpool");
    Ok(template
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{TITLE}}", &escape(title))
        .replace("{{DATA}}", &json))
}

/// `s` with HTML's special characters escaped, and braces, so that no
/// title can hold the data's placeholder.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('{', "&#123;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const TEMPLATE: &str = include_str!("report.html");
/// The style every report page shares.
const STYLE: &str = include_str!("report.css");
/// The script every report page starts with: the error hook, the data, the
/// element helpers.
const SCRIPT: &str = include_str!("report.js");
