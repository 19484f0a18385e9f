//! Shell completion scripts (pure): clap_complete's static scripts for
//! bash, zsh and fish, each extended to complete module names after
//! `nfkit modules load|unload|resolve|explain` by asking
//! `nfkit __complete-modules PREFIX` (names from the running kernel's
//! modules.dep and modules.builtin; the script calls nfkit, nfkit itself
//! never starts a program).

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The `modules` actions whose operands are module names.
const MODULE_ACTIONS: &str = "load unload resolve explain";

/// The completion script for `shell`.
pub(crate) fn script(shell: Shell) -> String {
    let mut cmd = visible_command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "nfkit", &mut buf);
    let generated = String::from_utf8(buf).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => bash(&generated),
        Shell::Zsh => zsh(&generated),
        Shell::Fish => fish(&generated),
        _ => generated,
    }
}

/// The command line without its hidden subcommands (clap_complete would
/// offer them) and without the `help` subcommand (whose tree lists them
/// too; `--help` still completes).
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::default()
        .name("nfkit")
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    for arg in full.get_arguments() {
        cmd = cmd.arg(arg.clone());
    }
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}

/// bash: a wrapper around clap's `_nfkit` that answers module operands
/// itself and leaves everything else to clap's function.
fn bash(generated: &str) -> String {
    // clap's script ends by registering `_nfkit` (an `if` on the bash
    // version around two `complete` lines); ours registers the wrapper.
    let body = match generated.rfind("\nif [[ \"${BASH_VERSINFO[0]}\"") {
        Some(at) => &generated[..at],
        None => generated,
    };
    format!(
        r#"{body}
# Module names after `nfkit modules {MODULE_ACTIONS}` (nfkit reads the
# running kernel's modules.dep); everything else: clap's _nfkit.
_nfkit_modules_or_clap() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" i seen_modules= action=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            modules) [ -z "$seen_modules" ] && seen_modules=1 || action="${{action:-modules}}" ;;
            *) [ -n "$seen_modules" ] && [ -z "$action" ] && action="${{COMP_WORDS[i]}}" ;;
        esac
    done
    case "$action" in
        load|unload|resolve|explain)
            if [[ "$cur" != -* ]]; then
                local IFS=$'\n'
                COMPREPLY=($(nfkit __complete-modules "$cur" 2>/dev/null))
                return 0
            fi
            ;;
    esac
    _nfkit "$@"
}}

if [[ "${{BASH_VERSINFO[0]}}" -eq 4 && "${{BASH_VERSINFO[1]}}" -ge 4 || "${{BASH_VERSINFO[0]}}" -gt 4 ]]; then
    complete -F _nfkit_modules_or_clap -o nosort -o bashdefault -o default nfkit
else
    complete -F _nfkit_modules_or_clap -o bashdefault -o default nfkit
fi
"#
    )
}

/// zsh: the NAME operands of the module actions complete through
/// `_nfkit_module_names`.
fn zsh(generated: &str) -> String {
    let helper = r#"
(( $+functions[_nfkit_module_names] )) ||
_nfkit_module_names() {
    local -a names
    names=(${(f)"$(nfkit __complete-modules "$PREFIX" 2>/dev/null)"})
    compadd -a names
}
"#;
    let mut out = String::new();
    let mut in_module_action = false;
    for line in generated.lines() {
        // clap's case branches: `(load)`, `(unload)`, `(resolve)` inside
        // `_nfkit__modules`'s state machine.
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            in_module_action = MODULE_ACTIONS.split(' ').any(|a| a == name);
        }
        if in_module_action && (trimmed.starts_with("'*::names") || trimmed.starts_with("'*::args"))
        {
            out.push_str(&line.replace(":_default'", ":_nfkit_module_names'"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    // Before the final `compdef`/`_nfkit "$@"` lines, so the helper is
    // defined when zsh first calls _nfkit.
    match out.rfind("if [ \"$funcstack[1]\" = \"_nfkit\" ]") {
        Some(at) => format!("{}{helper}\n{}", &out[..at], &out[at..]),
        None => out + helper,
    }
}

/// fish: one more rule for the module operands.
fn fish(generated: &str) -> String {
    let actions = MODULE_ACTIONS;
    format!(
        "{generated}complete -c nfkit -n \"__fish_seen_subcommand_from modules; and __fish_seen_subcommand_from {actions}\" -f -a \"(nfkit __complete-modules (commandline -ct) 2>/dev/null)\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_registers_the_wrapper_only() {
        let s = script(Shell::Bash);
        assert!(s.contains("_nfkit() {"), "clap's function is kept");
        let registrations: Vec<&str> = s
            .lines()
            .filter(|l| l.trim().starts_with("complete "))
            .collect();
        assert_eq!(registrations.len(), 2, "{registrations:?}");
        assert!(
            registrations
                .iter()
                .all(|l| l.contains("-F _nfkit_modules_or_clap"))
        );
    }

    #[test]
    fn zsh_completes_module_operands_through_nfkit() {
        let s = script(Shell::Zsh);
        assert!(s.contains("_nfkit_module_names() {"));
        // load, unload, resolve (explain when it exists).
        let uses = s.matches(":_nfkit_module_names'").count();
        assert!(uses >= 3, "{uses} uses in\n{s}");
    }

    #[test]
    fn fish_has_the_module_rule() {
        let s = script(Shell::Fish);
        assert!(s.contains("nfkit __complete-modules (commandline -ct)"));
        assert!(s.contains("-c nfkit"));
    }

    #[test]
    fn hidden_commands_are_not_completed() {
        // The lines that offer words: bash's `opts="..."`, zsh's
        // `'NAME:description'` entries, fish's `-a "NAME"`.
        let offers = |shell: Shell, line: &str| match shell {
            Shell::Bash => line.trim_start().starts_with("opts="),
            Shell::Zsh => line.starts_with('\''),
            _ => line.contains(" -a \""),
        };
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            let offered: Vec<&str> = s
                .lines()
                .filter(|l| offers(shell, l))
                .filter(|l| {
                    ["__gen", "__complete-modules", "__confinement-test"]
                        .iter()
                        .any(|h| l.contains(h) && !l.contains("nfkit __complete-modules"))
                })
                .collect();
            assert!(offered.is_empty(), "{shell}: {offered:?}");
            assert!(
                s.lines().any(|l| offers(shell, l) && l.contains("apply")),
                "{shell}"
            );
        }
    }
}
