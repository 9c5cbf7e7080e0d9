//! Unit tests of the shared-memory contract: plan and record encodings, the ring.
