/// What a hook function decides about a packet (`NF_ACCEPT`, `NF_DROP`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Continue with the next hook of the chain; at the end the packet goes on along the path.
    Accept,
    /// Stop and discard the packet.
    Drop,
    /// The hook took the packet over (IPVS transmitters: the packet was rewritten and queued
    /// for output, see [`crate::Output`]); the chain stops, the path does not continue.
    Stolen,
    /// Hand the packet to a user-space queue; stops the chain. Without a queue handler the
    /// packet is dropped, as the kernel does without `--queue-bypass`.
    Queue(u16),
    /// Call the same hook again.
    Repeat,
    /// Accept and skip the rest of the chain (the kernel's old `NF_STOP`).
    Stop,
}
