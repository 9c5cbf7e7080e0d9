//! `--vm COMMAND`: start a QEMU machine with a gdbstub snaptap connects to, stop it at the end.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A virtual machine started by snaptap.
pub struct Machine {
    child: Child,
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
            child,
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
    Ok(Machine { child, gdb_addr })
}

impl Machine {
    /// The QEMU process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the machine: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
