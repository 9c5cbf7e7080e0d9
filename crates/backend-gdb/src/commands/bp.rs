//! Breakpoints: `Z0`/`z0` (software), falling back to `Z1`/`z1` (hardware) when the stub
//! does not implement software ones.

use crate::session::Session;
use crate::Error;

/// The kind of breakpoint the stub accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BpType {
    /// `Z0`: software breakpoint.
    Sw,
    /// `Z1`: hardware breakpoint.
    Hw,
}

impl BpType {
    fn digit(self) -> char {
        match self {
            BpType::Sw => '0',
            BpType::Hw => '1',
        }
    }
}

/// x86's breakpoint "kind": the length of `int3`.
const KIND: u32 = 1;

impl Session {
    /// Inserts a breakpoint at `addr`: `Z0` unless the stub showed it has none, then
    /// `Z1`. `Ok(Err(reason))` when the stub refused it (the site fails, the session
    /// goes on).
    pub fn insert_bp(
        &mut self,
        addr: u64,
        sw_unsupported: &mut bool,
    ) -> Result<Result<BpType, String>, Error> {
        let order: &[BpType] = if *sw_unsupported {
            &[BpType::Hw]
        } else {
            &[BpType::Sw, BpType::Hw]
        };
        for &ty in order {
            let r = self.request(format!("Z{},{addr:x},{KIND}", ty.digit()).as_bytes())?;
            if r == b"OK" {
                return Ok(Ok(ty));
            }
            if r.is_empty() {
                if ty == BpType::Sw {
                    *sw_unsupported = true;
                }
                continue;
            }
            return Ok(Err(format!(
                "the stub refused a breakpoint at {addr:#x}: {}",
                String::from_utf8_lossy(&r)
            )));
        }
        Ok(Err(format!(
            "the stub supports neither software nor hardware breakpoints (at {addr:#x})"
        )))
    }

    /// Removes a breakpoint inserted by [`Session::insert_bp`].
    pub fn remove_bp(&mut self, addr: u64, ty: BpType) -> Result<(), Error> {
        let r = self.request(format!("z{},{addr:x},{KIND}", ty.digit()).as_bytes())?;
        if r == b"OK" {
            Ok(())
        } else {
            Err(Error::Protocol(format!(
                "the stub did not remove the breakpoint at {addr:#x}: {}",
                String::from_utf8_lossy(&r)
            )))
        }
    }
}
