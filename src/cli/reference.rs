//! The CLI reference (docs/cli.md): every command's `--help` as clap prints
//! it. A test fails when the checked-in page differs, and when a flag has no
//! help line; `AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference`
//! rewrites the page.

/// The reference as Markdown: one section per command, its `--help`.
fn reference() -> String {
    use clap::CommandFactory;
    let cli = super::Cli::command();
    let mut out = String::from(
        "# CLI reference\n\n\
         Every command's `--help`, generated from the flags' definitions by\n\
         `AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference`; a test fails when this page\n\
         differs from the code. Exit codes are in [operations.md](operations.md#exit-codes).\n",
    );
    walk(&cli, &mut Vec::new(), &mut out);
    out
}

/// What `audience <path> --help` prints, exactly (clap renders it into the
/// "error" that carries the help).
fn help(path: &[&str]) -> String {
    use clap::CommandFactory;
    let args = std::iter::once("audience").chain(path.iter().copied()).chain(["--help"]);
    let shown = super::Cli::command().try_get_matches_from(args).expect_err("--help stops the parse");
    let text = shown.render().to_string();
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string()
}

fn walk(command: &clap::Command, path: &mut Vec<String>, out: &mut String) {
    let words: Vec<&str> = path.iter().map(String::as_str).collect();
    let name = std::iter::once("audience").chain(words.iter().copied()).collect::<Vec<_>>().join(" ");
    *out += &format!("\n## `{name}`\n\n```text\n{}\n```\n", help(&words));
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        path.push(sub.get_name().to_string());
        walk(sub, path, out);
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_cli_reference_is_generated_from_the_flags() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
        let generated = super::reference();
        if std::env::var_os("AUDIENCE_UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/cli.md differs from the flags; regenerate it with AUDIENCE_UPDATE_DOCS=1 cargo test --lib reference"
        );
    }

    #[test]
    fn the_readme_shows_audience_help_as_it_prints() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let block = format!("```text\n{}\n```", super::help(&[]));
        assert!(readme.contains(&block), "README.md's `audience --help` block differs from what it prints:\n{block}");
    }

    #[test]
    fn every_flag_has_a_help_line() {
        fn missing(command: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    found.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in command.get_subcommands() {
                missing(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut found = Vec::new();
        missing(&super::super::Cli::command(), "audience", &mut found);
        assert!(found.is_empty(), "flags without a help line:\n{}", found.join("\n"));
    }
}
