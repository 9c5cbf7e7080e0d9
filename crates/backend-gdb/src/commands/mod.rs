//! One module per packet family; each adds methods to [`crate::session::Session`].

pub mod bp;
pub mod mem;
pub mod query;
pub mod regs;
pub mod run;
