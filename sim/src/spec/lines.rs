//! Where a JSON pointer's node is written in a vendored document, so a violation can cite
//! `file:line`. Both block YAML and pretty-printed JSON put one key per line and nest by
//! indentation, which is all this walk relies on; a document on one line (Morph's) has no
//! useful line, and the caller cites the pointer instead.

/// The 1-based line of the node at `pointer` (`/components/schemas/NewSandbox/required`),
/// or of its deepest ancestor found; `None` for a document of fewer than three lines.
pub(super) fn line_of(text: &str, pointer: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() < 3 {
        return None;
    }
    // The node found so far: its line index (None: the document root) and the indentation
    // its children are nested under.
    let (mut at, mut indent): (Option<usize>, isize) = (None, -1);
    // A JSON document's root is its opening brace; its keys are nested under it.
    if lines[0].trim() == "{" {
        (at, indent) = (Some(0), 0);
    }
    for seg in pointer.split('/').skip(1) {
        let key = seg.replace("~1", "/").replace("~0", "~");
        let from = at.map_or(0, |i| i + 1);
        let Some(child_indent) = first_child_indent(&lines, from, indent) else { break };
        let found = match key.parse::<usize>() {
            Ok(n) => nth_item(&lines, from, indent, child_indent, n),
            Err(_) => find_key(&lines, from, indent, child_indent, &key),
        };
        match found {
            Some((line, nested_under)) => {
                at = Some(line);
                indent = nested_under;
            }
            None => break,
        }
    }
    at.filter(|i| *i > 0 || lines[0].trim() != "{").map(|i| i + 1)
}

fn indent_of(line: &str) -> isize {
    (line.len() - line.trim_start().len()) as isize
}

fn blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The indentation of the first line nested under `parent` (starting at `from`).
fn first_child_indent(lines: &[&str], from: usize, parent: isize) -> Option<isize> {
    let line = lines.get(from..)?.iter().find(|l| !blank(l))?;
    let i = indent_of(line);
    (i > parent).then_some(i)
}

/// The lines of the block nested under `parent` from `from`: (index, line).
fn block<'a>(lines: &'a [&'a str], from: usize, parent: isize) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    lines.iter().enumerate().skip(from).filter(|(_, l)| !blank(l)).take_while(move |(_, l)| indent_of(l) > parent).map(|(i, l)| (i, *l))
}

/// The line of `key` among the direct children (at `child` indentation), and the
/// indentation its own children are nested under.
fn find_key(lines: &[&str], from: usize, parent: isize, child: isize, key: &str) -> Option<(usize, isize)> {
    let quoted = format!("\"{key}\":");
    let single = format!("'{key}':");
    let plain = format!("{key}:");
    for (i, line) in block(lines, from, parent) {
        let mut ind = indent_of(line);
        let mut rest = line.trim_start();
        // A YAML list item's first key sits on the dash's line, two columns in.
        if let Some(r) = rest.strip_prefix("- ") {
            ind += 2;
            rest = r.trim_start();
        }
        if ind == child && (rest.starts_with(&quoted) || rest.starts_with(&single) || rest.starts_with(&plain)) {
            return Some((i, ind));
        }
    }
    None
}

/// The line of the `n`-th item of the list whose items sit at `child` indentation.
fn nth_item(lines: &[&str], from: usize, parent: isize, child: isize, n: usize) -> Option<(usize, isize)> {
    let mut seen = 0;
    for (i, line) in block(lines, from, parent) {
        let t = line.trim_start();
        if indent_of(line) != child || t.starts_with('}') || t.starts_with(']') {
            continue;
        }
        if seen == n {
            // A YAML item's keys are two columns past its dash; a JSON item's inside its brace.
            return Some((i, if t.starts_with("- ") { child + 1 } else { child }));
        }
        seen += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const YAML: &str = "openapi: 3.0.0\npaths:\n  /a:\n    get:\n      parameters:\n        - name: x\n          in: query\n        - $ref: '#/p'\ncomponents:\n  schemas:\n    A:\n      description: |\n        B: not a key\n      required:\n        - b\n    B:\n      type: string\n";
    const JSON: &str = "{\n  \"components\": {\n    \"schemas\": {\n      \"A\": {\n        \"properties\": {\n          \"B\": {\"type\": \"string\"}\n        }\n      },\n      \"B\": {\n        \"type\": \"string\"\n      }\n    }\n  }\n}\n";

    #[test]
    fn yaml_keys_and_list_items_are_found_at_their_own_depth() {
        assert_eq!(line_of(YAML, "/components/schemas/B"), Some(16), "not the `B:` inside A's description");
        assert_eq!(line_of(YAML, "/components/schemas/A/required"), Some(14));
        assert_eq!(line_of(YAML, "/paths/~1a/get/parameters/1"), Some(8));
        assert_eq!(line_of(YAML, "/paths/~1a/get/parameters/0/in"), Some(7));
        assert_eq!(line_of(YAML, "/components/schemas/A/nothing"), Some(11), "the deepest ancestor found");
    }

    #[test]
    fn pretty_json_keys_are_found_and_one_line_documents_have_none() {
        assert_eq!(line_of(JSON, "/components/schemas/B"), Some(9), "not A's property B");
        assert_eq!(line_of(JSON, "/components/schemas/A/properties/B"), Some(6));
        assert_eq!(line_of("{\"a\": 1}", "/a"), None);
    }
}
