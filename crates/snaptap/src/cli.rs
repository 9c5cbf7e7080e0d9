//! Command-line options, spelled as stap spells them.

use clap::Parser;

/// snaptap: SystemTap scripts on snapshots. The probe only copies; the script runs here.
#[derive(Parser, Debug)]
#[command(
    name = "snaptap",
    version,
    about = "A SystemTap-language tracer: probes copy what the script needs, handlers run in snaptap",
    // Shaped like `stap --help`: the usage forms first, one per line, then options.
    help_template = "{name} {version}: {about}\n\n{usage-heading} {usage}\n\nOptions:\n{options}{after-help}",
    override_usage = "snaptap [options] FILE [ARGS]              Run script in file.\n   or: snaptap [options] - [ARGS]                 Run script on stdin.\n   or: snaptap [options] -e SCRIPT [ARGS]         Run given script.\n   or: snaptap [options] -l PROBE                 List matching probes.\n   or: snaptap [options] -L PROBE                 List matching probes and local variables.",
    after_help = "\nTargets: -c CMD or -x PID trace a process (ptrace); --vm 'QEMU CMD' or --gdb HOST:PORT\nwith --kernel ELF trace a kernel in a virtual machine (QEMU's TCG plugin, else its gdbstub);\n--vm-attach PATH attaches to a running VM started with the plugin (--vm-plugin-args)."
)]
pub struct Cli {
    /// Run the given script text instead of a script file.
    #[arg(short = 'e', value_name = "SCRIPT")]
    pub script_text: Option<String>,

    /// Run SCRIPT in addition to the main script (-e or a file); may be repeated.
    #[arg(short = 'E', value_name = "SCRIPT")]
    pub extra_scripts: Vec<String>,

    /// Set global variable VAR to VAL at the start (its declared type decides how
    /// VAL is read).
    #[arg(short = 'G', value_name = "VAR=VAL")]
    pub set_globals: Vec<String>,

    /// Terminate the script after TIME seconds, as exit() would (end probes run).
    #[arg(short = 'T', value_name = "TIME")]
    pub timeout: Option<f64>,

    /// Start the probes, run CMD, and exit when CMD finishes.
    #[arg(short = 'c', value_name = "CMD")]
    pub command: Option<String>,

    /// Attach to process PID (and set target() to it).
    #[arg(short = 'x', value_name = "PID")]
    pub pid: Option<u32>,

    /// Stop after pass NUM: 1 parse, 2 resolve probes, 3 capture plans.
    #[arg(short = 'p', value_name = "NUM", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub pass: Option<u8>,

    /// List probe points matching PROBE.
    #[arg(short = 'l', value_name = "PROBE")]
    pub list: Option<String>,

    /// List probe points matching PROBE, with their target variables.
    #[arg(short = 'L', value_name = "PROBE")]
    pub list_vars: Option<String>,

    /// Send the script's output to FILE.
    #[arg(short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// After the run, draw the script's output (-o FILE) as a flame graph into SVG:
    /// each line `FRAME;FRAME;... COUNT`, as `sprint_ufolded()` and `@count` print it.
    #[arg(long = "flamegraph", value_name = "SVG", requires = "output")]
    pub flamegraph: Option<std::path::PathBuf>,

    /// Set a limit such as MAXACTION=1000 or MAXSTRINGLEN=256.
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub defines: Vec<String>,

    /// More verbose: say what each pass did.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Trace a kernel (or a gdbserver process) through the GDB remote protocol at
    /// HOST:PORT, e.g. QEMU's gdbstub.
    #[arg(long = "gdb", value_name = "HOST:PORT")]
    pub gdb: Option<String>,

    /// Start a virtual machine with COMMAND (split as a shell would; snaptap adds its
    /// plugin or gdbstub options), trace its kernel, pass its console through, stop it at the end.
    #[arg(long = "vm", value_name = "COMMAND")]
    pub vm: Option<String>,

    /// Attach to a running VM started with snaptap's QEMU plugin (see --vm-plugin-args):
    /// PATH is the plugin's control file. The probes are disarmed and removed when the
    /// session ends (exit(), Ctrl-C); the VM runs on and can be attached to again.
    #[arg(long = "vm-attach", value_name = "PATH", conflicts_with_all = ["vm", "gdb", "command", "pid"])]
    pub vm_attach: Option<std::path::PathBuf>,

    /// Print the `-plugin ...` arguments that start a QEMU (10, TCG) with snaptap's plugin
    /// loaded but idle, its control file at PATH (default /dev/shm/snaptap-vm-PID), for a
    /// later `--vm-attach PATH`; then exit.
    #[arg(long = "vm-plugin-args", value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub vm_plugin_args: Option<String>,

    /// The kernel ELF, with DWARF, that runs in the VM (for kernel.function probes).
    #[arg(long = "kernel", value_name = "ELF")]
    pub kernel: Option<std::path::PathBuf>,

    /// Output format: `text` (stap's), or `json` (one JSON object per output line, with
    /// the probe point, pid, tid and time of the handler that printed it).
    #[arg(long = "format", value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,

    /// Add DIR to the tapset search path (every `*.stp` file in it is loaded).
    #[arg(short = 'I', value_name = "DIR")]
    pub include: Vec<std::path::PathBuf>,

    /// Suppress warnings.
    #[arg(short = 'w')]
    pub no_warnings: bool,

    /// Treat warnings as errors.
    #[arg(short = 'W')]
    pub warnings_are_errors: bool,

    /// The script file (unless -e is given), then script arguments ($1, @1, ...).
    /// Options may follow the script, as in `snaptap script.stp ARG -c CMD`; put
    /// arguments that start with `-` after `--`.
    #[arg(value_name = "SCRIPT_AND_ARGS")]
    pub rest: Vec<String>,
}
