//! The documentation holds together: every Markdown link in `README.md` and `docs/*.md` reaches a
//! file that exists and, with a `#anchor`, a heading of that file; the README stays short enough
//! to read in one sitting and points to every page of `docs/`. Links are checked as GitHub renders
//! them: none inside fenced code blocks or code spans, anchors by GitHub's rule (lowercase, spaces
//! to `-`, punctuation other than `-` and `_` dropped, `-1`, `-2`… for repeated headings).
//! Web and mail links are not followed: the tests run with no network.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The README's budget: what a newcomer reads in one sitting (the rest lives in `docs/`).
const README_MAX_LINES: usize = 300;

#[test]
fn every_link_in_readme_and_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = load_pages(root);
    let broken = broken_links(root, &pages);
    assert!(
        broken.is_empty(),
        "{} broken link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn readme_is_short_and_points_to_every_docs_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the depth to docs/"
    );
    let targets: Vec<String> = links(&readme)
        .into_iter()
        .map(|link| link.target.split('#').next().unwrap_or("").to_string())
        .collect();
    let unlinked: Vec<String> = load_pages(root)
        .into_keys()
        .filter(|page| page.starts_with("docs"))
        .map(|page| page.to_string_lossy().into_owned())
        .filter(|page| !targets.iter().any(|target| target == page))
        .collect();
    assert!(
        unlinked.is_empty(),
        "docs pages the README does not link to: {}",
        unlinked.join(", ")
    );
}

/// The check itself can fail, and names each broken link with its file and line.
#[test]
fn the_link_check_names_every_broken_link() {
    let pages: BTreeMap<PathBuf, String> = [
        (
            "README.md",
            "# Title\n\
             See [a](docs/a.md), [its part](docs/a.md#part-two---flags), [here](#title),\n\
             [a missing page](docs/missing.md) and [a missing\n\
             part](docs/a.md#nowhere), [web](https://example.com/x.md), [mail](mailto:a@b.c).\n\
             ```sh\n\
             [not a link](inside/a/fence.md)\n\
             ```\n\
             `[nor](in/a/code/span.md)` and [a bad self anchor](#titles).\n",
        ),
        (
            "docs/a.md",
            "# A page\n\n## Part: `two --flags`!\n\n## Repeated\n\
             ## Repeated\n\nBack to [the README](../README.md#title), \
             [this](#part-two---flags), [again](#repeated-1), \
             [too far](#repeated-2).\n",
        ),
    ]
    .into_iter()
    .map(|(path, text)| (PathBuf::from(path), text.to_string()))
    .collect();
    // A root with nothing on disk: only the pages above exist.
    let broken = broken_links(Path::new("/nonexistent/qdrant2pg-docs-test"), &pages);
    assert_eq!(
        broken,
        [
            "README.md:3: [a missing page](docs/missing.md): no such file",
            "README.md:3: [a missing part](docs/a.md#nowhere): no heading #nowhere in docs/a.md",
            "README.md:8: [a bad self anchor](#titles): no heading #titles in README.md",
            "docs/a.md:8: [too far](#repeated-2): no heading #repeated-2 in docs/a.md",
        ]
    );
}

/// `README.md` and every `docs/*.md`, keyed by their path from the repository root.
fn load_pages(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut paths = vec![PathBuf::from("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("the docs/ directory");
    for entry in docs {
        let name = entry.expect("a docs/ entry").file_name();
        if Path::new(&name).extension().is_some_and(|ext| ext == "md") {
            paths.push(Path::new("docs").join(name));
        }
    }
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(root.join(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, text)
        })
        .collect()
}

/// Every broken link of `pages`, as `file:line: [text](target): why`. A target is looked up among
/// `pages` first, then on disk under `root`.
fn broken_links(root: &Path, pages: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut broken = Vec::new();
    for (page, text) in pages {
        for link in links(text) {
            if let Some(why) = why_broken(root, pages, page, &link.target) {
                broken.push(format!(
                    "{}:{}: [{}]({}): {why}",
                    page.display(),
                    link.line,
                    link.text,
                    link.target
                ));
            }
        }
    }
    broken
}

/// Why `target`, linked from `page`, does not resolve; `None` when it does.
fn why_broken(
    root: &Path,
    pages: &BTreeMap<PathBuf, String>,
    page: &Path,
    target: &str,
) -> Option<String> {
    if ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| target.starts_with(scheme))
    {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        normalize(&page.parent().unwrap_or(Path::new("")).join(path))
    };
    let text = match pages.get(&file) {
        Some(text) => Some(text.clone()),
        None if root.join(&file).exists() => std::fs::read_to_string(root.join(&file)).ok(),
        None => return Some("no such file".to_string()),
    };
    let anchor = anchor?;
    if file.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "an anchor into {}, which is not Markdown",
            file.display()
        ));
    }
    let text = text.unwrap_or_default();
    if anchors(&text).iter().any(|a| a == anchor) {
        None
    } else {
        Some(format!("no heading #{anchor} in {}", file.display()))
    }
}

/// `path` with `.` and `..` resolved without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// One inline Markdown link: its text, its target, and the line its `[` is on (1-based).
struct Link {
    text: String,
    target: String,
    line: usize,
}

/// The inline links of a Markdown document (`[text](target)`, images too), outside fenced code
/// blocks and code spans. Link text may run over lines; a target may not.
fn links(markdown: &str) -> Vec<Link> {
    let prose = prose_only(markdown);
    let bytes = prose.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        let Some(close) = matching_bracket(bytes, i) else {
            i += 1;
            continue;
        };
        if bytes.get(close + 1) != Some(&b'(') {
            i += 1;
            continue;
        }
        let rest = &prose[close + 2..];
        let end = rest.find([')', ' ', '\n']).unwrap_or(rest.len());
        if rest[end..].starts_with(')') {
            found.push(Link {
                text: markdown[i + 1..close]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                target: rest[..end].to_string(),
                line: prose[..i].matches('\n').count() + 1,
            });
            i = close + 2 + end;
        } else {
            i += 1;
        }
    }
    found
}

/// The `]` closing the `[` at `open`, nested brackets counted; none across a blank line.
fn matching_bracket(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (j, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            b'\n' if bytes.get(j + 1) == Some(&b'\n') => return None,
            _ => {}
        }
    }
    None
}

/// `markdown` with fenced code blocks and code spans blanked out, so that byte offsets and line
/// numbers stay those of the original.
fn prose_only(markdown: &str) -> String {
    blank_code_spans(&blank_fences(markdown))
}

/// `markdown` with every line of a fenced code block, its fences included, blanked out: each
/// byte but the newline turned into a space.
fn blank_fences(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut fence: Option<&str> = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        let blank = match (fence, marker) {
            (None, Some(m)) => {
                fence = Some(m);
                true
            }
            (Some(open), Some(m)) if open == m => {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, None) => false,
        };
        if blank {
            out.extend(line.bytes().map(|b| if b == b'\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Code spans (a run of backticks up to the next run of the same length) blanked out.
fn blank_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| b == b'`').count();
        let mut j = i + run;
        let mut closed = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let other = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                if other == run {
                    closed = Some(j + run);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                for b in &mut out[i..end] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    // Only ASCII bytes were replaced, by ASCII spaces, whole code spans at a time: still UTF-8.
    String::from_utf8(out).expect("blanking code spans keeps UTF-8")
}

/// The anchors GitHub gives the ATX headings of a document, outside fenced code blocks.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for line in blank_fences(markdown).lines() {
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim_end();
        let slug = slug(&link_text_only(title));
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// A heading's text as rendered: `[text](target)` becomes `text`.
fn link_text_only(title: &str) -> String {
    let mut out = String::new();
    let mut rest = title;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find("](") {
            Some(mid) if after[mid + 2..].contains(')') => {
                let close = mid + 2 + after[mid + 2..].find(')').unwrap_or(0);
                out.push_str(&rest[..open]);
                out.push_str(&after[..mid]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// GitHub's anchor for a heading: lowercase; letters, digits, `-` and `_` kept; each space a
/// `-`; everything else dropped.
fn slug(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}
