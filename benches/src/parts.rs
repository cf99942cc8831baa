//! Every part's latest figures in RESULTS.md too: each part writes its own file (BROKER.md,
//! SOAK.md...) and puts its section into RESULTS.md between markers of its own, replacing what
//! an earlier run of that part put there. A run of the peers, which writes RESULTS.md anew,
//! carries the parts' sections over. Plain text in, plain text out: no I/O here.

/// Where the parts' sections go: before the list of the parts' files.
const ANCHOR: &str = "## The other parts";

fn begin(part: &str) -> String {
    format!("<!-- part {part} -->\n")
}

fn end(part: &str) -> String {
    format!("<!-- end of part {part} -->\n")
}

/// `results` with `part`'s section replaced by `section` (from the part's file `file`), or
/// added before the list of files when it had none. Headings become second-level, as the
/// other sections of RESULTS.md are.
pub(crate) fn splice(results: &str, part: &str, file: &str, section: &str) -> String {
    let mut body = String::new();
    for line in section.trim_end().lines() {
        let line = match line.strip_prefix("# ") {
            Some(title) => format!("## {title}"),
            None => line.to_owned(),
        };
        body.push_str(&line);
        body.push('\n');
    }
    let block = format!(
        "{}{body}\n(From [`{file}`]({file}), which has the notes of that run.)\n{}",
        begin(part),
        end(part)
    );
    if let Some((before, after)) = around(results, part) {
        return format!("{before}{block}{after}");
    }
    match results.find(ANCHOR) {
        Some(at) => format!("{}{block}\n{}", &results[..at], &results[at..]),
        None => format!("{}\n{block}", results.trim_end()),
    }
}

/// The text before and after `part`'s block, when `results` has one.
fn around<'a>(results: &'a str, part: &str) -> Option<(&'a str, &'a str)> {
    let (begin, end) = (begin(part), end(part));
    let from = results.find(&begin)?;
    let to = from + results[from..].find(&end)? + end.len();
    Some((&results[..from], &results[to..]))
}

/// `fresh` (RESULTS.md written anew) with every part's block that `old` had.
pub(crate) fn carry_over(old: &str, fresh: &str) -> String {
    let mut text = fresh.to_owned();
    let mut rest = old;
    while let Some(at) = rest.find("<!-- part ") {
        let Some(name_end) = rest[at..].find(" -->") else {
            break;
        };
        let part = &rest[at + "<!-- part ".len()..at + name_end];
        let Some((before, after)) = around(rest, part) else {
            break;
        };
        let block = &rest[before.len()..rest.len() - after.len()];
        text = match around(&text, part) {
            Some((b, a)) => format!("{b}{block}{a}"),
            None => match text.find(ANCHOR) {
                Some(i) => format!("{}{block}\n{}", &text[..i], &text[i..]),
                None => format!("{}\n{block}", text.trim_end()),
            },
        };
        rest = after;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESULTS: &str =
        "# Ferry beside its peers\n\n## Results\n\ntable\n\n## The other parts\n\nlinks\n";

    #[test]
    fn a_part_goes_before_the_list_of_files_then_replaces_itself() {
        let once = splice(RESULTS, "soak", "SOAK.md", "# Load held\n\nfirst\n");
        assert!(once.contains("## Load held\n\nfirst\n"), "{once}");
        assert!(once.find("first").unwrap() < once.find(ANCHOR).unwrap());
        let twice = splice(&once, "soak", "SOAK.md", "# Load held\n\nsecond\n");
        assert!(
            twice.contains("second") && !twice.contains("first"),
            "{twice}"
        );
        assert_eq!(twice.matches("<!-- part soak -->").count(), 1);
        let both = splice(&twice, "broker", "BROKER.md", "## Publish\n\nrates\n");
        assert!(both.contains("second") && both.contains("rates"), "{both}");
        assert!(both.ends_with("links\n"), "{both}");
    }

    #[test]
    fn a_page_written_anew_keeps_the_parts_it_had() {
        let old = splice(RESULTS, "soak", "SOAK.md", "# Load held\n\nkept\n");
        let old = splice(&old, "broker", "BROKER.md", "## Publish\n\nrates\n");
        let fresh = RESULTS.replace("table", "new table");
        let carried = carry_over(&old, &fresh);
        assert!(carried.contains("new table"), "{carried}");
        assert!(
            carried.contains("kept") && carried.contains("rates"),
            "{carried}"
        );
        assert_eq!(carry_over(&carried, &carried), carried);
        // A page without an anchor takes the parts at its end.
        assert!(carry_over(&old, "# bare\n").contains("kept"));
    }
}
