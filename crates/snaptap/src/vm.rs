//! `--vm COMMAND`: start a QEMU machine with a gdbstub snaptap connects to, stop it at the end;
//! `--vm-attach PATH` / `--vm-plugin-args`: a running VM with snaptap's QEMU plugin.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A virtual machine started by snaptap (or, attached, one it leaves running).
pub struct Machine {
    /// `None` when attached: the VM is not ours to stop.
    child: Option<Child>,
    /// `127.0.0.1:PORT` of its gdbstub.
    pub gdb_addr: String,
}

/// Starts `cmd` (split as a shell would) plus `extra`; with `with_gdbstub`, also
/// `-gdb tcp:127.0.0.1:PORT -S`, so the
/// machine waits for snaptap before its first instruction, and waits until the stub
/// accepts connections. The machine's console is passed through.
///
/// A guest paused at reset runs in real mode, where the kernel's virtual addresses cannot
/// be read yet: the driver asks the gdb backend to insert such sites anyway and check
/// their bytes against the kernel ELF at the first hit.
pub fn start(cmd: &str, extra: &[String], with_gdbstub: bool) -> Result<Machine> {
    let argv =
        shell_words::split(cmd).with_context(|| format!("cannot split --vm command '{cmd}'"))?;
    let Some((prog, args)) = argv.split_first() else {
        bail!("--vm needs a command, e.g. --vm 'qemu-system-x86_64 -m 512 -cdrom mach.iso -display none'");
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the gdbstub")?
        .port();
    let gdb_addr = format!("127.0.0.1:{port}");
    let mut c = Command::new(prog);
    c.args(args).args(extra);
    if with_gdbstub {
        c.arg("-gdb").arg(format!("tcp:{gdb_addr}")).arg("-S");
    }
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start the VM '{prog}'"))?;
    if !with_gdbstub {
        return Ok(Machine {
            child: Some(child),
            gdb_addr: String::new(),
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait()? {
            bail!("the VM exited before its gdbstub was ready ({st})");
        }
        // Probing the port is harmless: QEMU accepts one gdb client at a time, and a
        // connection that closes at once is simply dropped.
        if TcpStream::connect(&gdb_addr).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the VM's gdbstub did not come up at {gdb_addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Machine {
        child: Some(child),
        gdb_addr,
    })
}

/// `--vm-plugin-args[=PATH]`: prints the QEMU arguments that load snaptap's plugin idle
/// with its control file at PATH (default `/dev/shm/snaptap-vm-PID`), unquoted, so that
/// `qemu-system-x86_64 ... $(snaptap --vm-plugin-args=PATH)` works for paths without
/// spaces.
pub fn print_plugin_args(path: &str) -> Result<i32> {
    let path = if path.is_empty() {
        std::path::PathBuf::from(format!("/dev/shm/snaptap-vm-{}", std::process::id()))
    } else {
        std::path::PathBuf::from(path)
    };
    if path.to_string_lossy().contains(',') {
        bail!("the control file's path cannot contain a comma (QEMU splits -plugin arguments at commas)");
    }
    let args = backend_plugin::plugin_args_for(&path)?;
    println!("{}", args.join(" "));
    Ok(0)
}

/// The plugin backend's options for `kernel`: the defaults, and `execname()` as the name
/// of the current task where the kernel has GNU Mach's `active_threads` (the Mach
/// tapset's `task_name()`, planned against this kernel's DWARF); elsewhere it stays empty.
pub fn plugin_options(kernel: &std::path::Path) -> backend_plugin::PluginOptions {
    let mut opts = backend_plugin::PluginOptions::new(kernel);
    opts.comm = mach_task_name_field(kernel);
    opts
}

/// The capture of `kernel_string(@var("active_threads")[0]->task->name)` (a `char[32]`)
/// in `kernel`, if its DWARF has them.
fn mach_task_name_field(kernel: &std::path::Path) -> Option<capture_plan::FieldPlan> {
    const TEXT: &str = r#"probe kernel.function("mach_msg_trap") { print(kernel_string(@var("active_threads")[0]->task->name)) }"#;
    let mut sources = script_syntax::SourceMap::default();
    let file = sources.add("<execname>", TEXT);
    let (script, _) = script_syntax::parse(&sources, file, &[]);
    let opts = planner::PlanOptions {
        max_string: 32,
        ..planner::PlanOptions::default()
    };
    let planned = planner::plan_with_kernel(&script, &sources, &opts, Some(kernel)).ok()?;
    let mut field = planned.plans.sites.first()?.plan.fields.first()?.clone();
    field.label = "execname()".into();
    Some(field)
}

/// `--vm-attach PATH`: attaches to the running VM whose plugin control file is `control`
/// and hands it `plans` (the plugin checks them as at load; a refusal is an error with
/// its message). The returned machine is not stopped at the end: the session disarms
/// and removes its probes, and the VM runs on.
pub fn attach_plugin(
    control: &std::path::Path,
    kernel: &std::path::Path,
    plans: &capture_plan::PlanSet,
    verbose: bool,
) -> Result<(Machine, backend_plugin::PluginBackend)> {
    let be = backend_plugin::PluginBackend::attach(control, plugin_options(kernel), plans)
        .with_context(|| format!("cannot attach to the VM at {}", control.display()))?;
    if verbose {
        eprintln!(
            "snaptap: attached to the VM at {} ({}); capture plans run inside QEMU (TCG plugin), no VM stop per hit",
            control.display(),
            be.plugin_status().1
        );
    }
    Ok((
        Machine {
            child: None,
            gdb_addr: String::new(),
        },
        be,
    ))
}

impl Machine {
    /// The QEMU process id (0 for an attached VM, which the plugin backend watches
    /// through its control file).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops a machine snaptap started: SIGTERM, then SIGKILL if it lingers. An attached
    /// VM runs on.
    pub fn stop(self) {
        let Some(mut child) = self.child else { return };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}
