//! Chains of hook functions and their lock-free traversal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::{DropReason, Family, HookPoint, Skb, Verdict};

/// A hook function (`nf_hookfn`). `C` is the per-worker context the node passes along (the
/// kernel's per-CPU state): IPVS keeps its connection table there, so hooks need no locks.
pub trait Hook<C>: Send + Sync {
    fn hook(&self, cx: &mut C, skb: &mut Skb<'_>, point: HookPoint) -> Verdict;
}

impl<C, F> Hook<C> for F
where
    F: Fn(&mut C, &mut Skb<'_>, HookPoint) -> Verdict + Send + Sync,
{
    fn hook(&self, cx: &mut C, skb: &mut Skb<'_>, point: HookPoint) -> Verdict {
        self(cx, skb, point)
    }
}

/// A registration (`nf_hook_ops`).
pub struct HookOps<C> {
    pub family: Family,
    pub point: HookPoint,
    pub priority: i32,
    /// Shown in listings and logs.
    pub name: String,
    pub hook: Arc<dyn Hook<C>>,
}

/// Returned by [`Hooks::register`]; pass it to [`Hooks::unregister`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookHandle {
    family: Family,
    point: HookPoint,
    id: u64,
}

struct Entry<C> {
    id: u64,
    priority: i32,
    name: String,
    hook: Arc<dyn Hook<C>>,
}

impl<C> Clone for Entry<C> {
    fn clone(&self) -> Self {
        Entry { id: self.id, priority: self.priority, name: self.name.clone(), hook: self.hook.clone() }
    }
}

type Chain<C> = Vec<Entry<C>>;

/// Every chain, `[family][hook point]`.
type Chains<C> = [[Arc<Chain<C>>; 5]; 3];

/// A hook that keeps calling REPEAT is cut off after this many calls and the packet dropped,
/// so no hook can stall a worker.
const MAX_REPEAT: u32 = 64;

/// All chains: `nf_hooks[family][hook point]`.
pub struct Hooks<C> {
    chains: [[ArcSwap<Chain<C>>; 5]; 3],
    /// All chains as one value, republished by every (un)registration, so a snapshot is a
    /// single reference count rather than one per chain.
    published: ArcSwap<Chains<C>>,
    next_id: AtomicU64,
    /// Serialises writers only; readers never touch it.
    writer: Mutex<()>,
}

impl<C: 'static> Default for Hooks<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: 'static> Hooks<C> {
    pub fn new() -> Self {
        Hooks {
            chains: std::array::from_fn(|_| std::array::from_fn(|_| ArcSwap::from_pointee(Vec::new()))),
            published: ArcSwap::from_pointee(std::array::from_fn(|_| std::array::from_fn(|_| Arc::new(Vec::new())))),
            next_id: AtomicU64::new(1),
            writer: Mutex::new(()),
        }
    }

    fn slot(&self, family: Family, point: HookPoint) -> &ArcSwap<Chain<C>> {
        &self.chains[family as usize][point as usize]
    }

    /// `nf_register_hook`: insert by priority; equal priorities keep registration order.
    /// Safe while other threads traverse: they finish on the chain they loaded.
    pub fn register(&self, ops: HookOps<C>) -> HookHandle {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = self.slot(ops.family, ops.point);
        let mut chain: Chain<C> = slot.load().as_ref().clone();
        let at = chain.partition_point(|e| e.priority <= ops.priority);
        chain.insert(at, Entry { id, priority: ops.priority, name: ops.name, hook: ops.hook });
        slot.store(Arc::new(chain));
        self.publish();
        HookHandle { family: ops.family, point: ops.point, id }
    }

    /// `nf_unregister_hook`. Returns false if the handle was not registered (any more).
    pub fn unregister(&self, handle: HookHandle) -> bool {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self.slot(handle.family, handle.point);
        let old = slot.load();
        if !old.iter().any(|e| e.id == handle.id) {
            return false;
        }
        let chain: Chain<C> = old.iter().filter(|e| e.id != handle.id).cloned().collect();
        slot.store(Arc::new(chain));
        self.publish();
        true
    }

    /// Republish all chains (writers only, under the writer lock).
    fn publish(&self) {
        self.published.store(Arc::new(std::array::from_fn(|f| std::array::from_fn(|p| self.chains[f][p].load_full()))));
    }

    /// (name, priority) of every registration on a chain, in traversal order.
    pub fn list(&self, family: Family, point: HookPoint) -> Vec<(String, i32)> {
        self.slot(family, point).load().iter().map(|e| (e.name.clone(), e.priority)).collect()
    }

    /// Run a packet through one chain (`NF_HOOK`). Returns ACCEPT when every hook accepted
    /// (or one said STOP), otherwise the verdict that ended the traversal.
    #[inline]
    pub fn traverse(&self, family: Family, point: HookPoint, cx: &mut C, skb: &mut Skb<'_>) -> Verdict {
        let chain = self.slot(family, point).load();
        run(&chain, point, cx, skb)
    }

    /// Take a reference to every chain at once, e.g. once per batch of packets: traversing it
    /// then costs no atomic operation at all, and taking it costs one.
    pub fn snapshot(&self) -> Traversal<C> {
        Traversal { chains: self.published.load_full() }
    }
}

/// A consistent view of all chains taken by [`Hooks::snapshot`].
pub struct Traversal<C> {
    chains: Arc<Chains<C>>,
}

impl<C> Traversal<C> {
    #[inline(always)]
    pub fn traverse(&self, family: Family, point: HookPoint, cx: &mut C, skb: &mut Skb<'_>) -> Verdict {
        let chain = &self.chains[family as usize][point as usize];
        // An empty chain costs one length check on the packet path.
        if chain.is_empty() {
            return Verdict::Accept;
        }
        run(chain, point, cx, skb)
    }

    /// True if the chain has no registration (the node may skip it).
    #[inline]
    pub fn is_empty(&self, family: Family, point: HookPoint) -> bool {
        self.chains[family as usize][point as usize].is_empty()
    }

    /// True if `handle`'s registration is the only one on its chain (a node may then stand in
    /// for the chain with a shortcut that does what that one hook does).
    #[inline]
    pub fn is_only(&self, handle: &HookHandle) -> bool {
        let chain = &self.chains[handle.family as usize][handle.point as usize];
        chain.len() == 1 && chain[0].id == handle.id
    }
}

#[inline]
fn run<C>(chain: &[Entry<C>], point: HookPoint, cx: &mut C, skb: &mut Skb<'_>) -> Verdict {
    for e in chain {
        let mut repeats = 0;
        loop {
            match e.hook.hook(cx, skb, point) {
                Verdict::Accept => break,
                Verdict::Repeat => {
                    repeats += 1;
                    if repeats >= MAX_REPEAT {
                        return skb.drop_with(DropReason::HookDrop);
                    }
                }
                Verdict::Stop => return Verdict::Accept,
                Verdict::Drop => {
                    if skb.drop_reason.is_none() {
                        skb.drop_reason = Some(DropReason::HookDrop);
                    }
                    return Verdict::Drop;
                }
                v @ (Verdict::Stolen | Verdict::Queue(_)) => return v,
            }
        }
    }
    Verdict::Accept
}
