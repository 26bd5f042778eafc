//! Ordering, verdicts and concurrent (un)registration of hook chains.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use netfilter::{Family, Hook, HookOps, HookPoint, Hooks, Skb, Verdict, priority};
use wire::Frame;

/// The per-worker context of these tests: a trace of which hooks ran.
#[derive(Default)]
struct Trace(Vec<&'static str>);

struct Named(&'static str, Verdict);
impl Hook<Trace> for Named {
    fn hook(&self, cx: &mut Trace, _skb: &mut Skb<'_>, _p: HookPoint) -> Verdict {
        cx.0.push(self.0);
        self.1
    }
}

fn ops(point: HookPoint, prio: i32, name: &'static str, v: Verdict) -> HookOps<Trace> {
    HookOps { family: Family::Ipv4, point, priority: prio, name: name.to_string(), hook: Arc::new(Named(name, v)) }
}

fn run(hooks: &Hooks<Trace>, point: HookPoint) -> (Verdict, Vec<&'static str>) {
    let mut buf = [0u8; 64];
    let frame = Frame::new(&mut buf, 0, 64).unwrap();
    let mut skb = Skb::new(frame, 14, Family::Ipv4);
    let mut t = Trace::default();
    let v = hooks.traverse(Family::Ipv4, point, &mut t, &mut skb);
    (v, t.0)
}

#[test]
fn ordered_by_priority_then_registration() {
    let h = Hooks::new();
    h.register(ops(HookPoint::LocalIn, priority::NAT_SRC, "nat_src", Verdict::Accept));
    h.register(ops(HookPoint::LocalIn, priority::IPVS_LOCAL_IN, "ipvs", Verdict::Accept));
    h.register(ops(HookPoint::LocalIn, priority::FILTER, "filter_a", Verdict::Accept));
    h.register(ops(HookPoint::LocalIn, priority::FILTER, "filter_b", Verdict::Accept));
    h.register(ops(HookPoint::LocalIn, priority::MANGLE, "mangle", Verdict::Accept));
    h.register(ops(HookPoint::LocalIn, priority::FILTER, "filter_c", Verdict::Accept));
    let (v, trace) = run(&h, HookPoint::LocalIn);
    assert_eq!(v, Verdict::Accept);
    assert_eq!(trace, ["mangle", "filter_a", "filter_b", "filter_c", "ipvs", "nat_src"]);
    let listed: Vec<i32> = h.list(Family::Ipv4, HookPoint::LocalIn).into_iter().map(|e| e.1).collect();
    assert_eq!(listed, [-150, 0, 0, 0, 99, 100]);
    // Other points and families are separate chains.
    assert_eq!(run(&h, HookPoint::Forward).1, Vec::<&str>::new());
    assert!(h.list(Family::Ipv6, HookPoint::LocalIn).is_empty());
}

#[test]
fn each_verdict_ends_or_continues_the_chain() {
    for (v, want_verdict, want_trace) in [
        (Verdict::Accept, Verdict::Accept, vec!["a", "x", "z"]),
        (Verdict::Drop, Verdict::Drop, vec!["a", "x"]),
        (Verdict::Stolen, Verdict::Stolen, vec!["a", "x"]),
        (Verdict::Queue(3), Verdict::Queue(3), vec!["a", "x"]),
        (Verdict::Stop, Verdict::Accept, vec!["a", "x"]),
    ] {
        let h = Hooks::new();
        h.register(ops(HookPoint::PreRouting, -10, "a", Verdict::Accept));
        h.register(ops(HookPoint::PreRouting, 0, "x", v));
        h.register(ops(HookPoint::PreRouting, 10, "z", Verdict::Accept));
        let (got, trace) = run(&h, HookPoint::PreRouting);
        assert_eq!(got, want_verdict, "verdict {v:?}");
        assert_eq!(trace, want_trace, "verdict {v:?}");
    }
}

#[test]
fn drop_records_a_reason() {
    let h = Hooks::new();
    h.register(ops(HookPoint::Forward, 0, "dropper", Verdict::Drop));
    let mut buf = [0u8; 64];
    let mut skb = Skb::new(Frame::new(&mut buf, 0, 64).unwrap(), 14, Family::Ipv4);
    let v = h.traverse(Family::Ipv4, HookPoint::Forward, &mut Trace::default(), &mut skb);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(skb.drop_reason, Some(netfilter::DropReason::HookDrop));
}

/// REPEAT calls the same hook again; here it repeats twice, then accepts.
#[test]
fn repeat_calls_the_same_hook_again() {
    struct Twice(std::sync::atomic::AtomicU32);
    impl Hook<Trace> for Twice {
        fn hook(&self, cx: &mut Trace, _s: &mut Skb<'_>, _p: HookPoint) -> Verdict {
            cx.0.push("twice");
            if self.0.fetch_add(1, Ordering::Relaxed) < 2 { Verdict::Repeat } else { Verdict::Accept }
        }
    }
    let h = Hooks::new();
    h.register(HookOps {
        family: Family::Ipv4,
        point: HookPoint::LocalOut,
        priority: 0,
        name: "twice".into(),
        hook: Arc::new(Twice(Default::default())),
    });
    h.register(ops(HookPoint::LocalOut, 5, "after", Verdict::Accept));
    let (v, trace) = run(&h, HookPoint::LocalOut);
    assert_eq!(v, Verdict::Accept);
    assert_eq!(trace, ["twice", "twice", "twice", "after"]);

    // A hook that never stops repeating is cut off and the packet dropped.
    let h = Hooks::new();
    h.register(ops(HookPoint::LocalOut, 0, "forever", Verdict::Repeat));
    let (v, trace) = run(&h, HookPoint::LocalOut);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(trace.len(), 64);
}

#[test]
fn closures_register_and_unregister() {
    let h: Hooks<Trace> = Hooks::new();
    let handle = h.register(HookOps {
        family: Family::Ipv4,
        point: HookPoint::PostRouting,
        priority: 0,
        name: "closure".into(),
        hook: Arc::new(|cx: &mut Trace, skb: &mut Skb<'_>, _p: HookPoint| {
            cx.0.push("closure");
            skb.mark = 7;
            Verdict::Accept
        }),
    });
    let mut buf = [0u8; 64];
    let mut skb = Skb::new(Frame::new(&mut buf, 0, 64).unwrap(), 14, Family::Ipv4);
    h.traverse(Family::Ipv4, HookPoint::PostRouting, &mut Trace::default(), &mut skb);
    assert_eq!(skb.mark, 7);
    assert!(h.unregister(handle));
    assert!(!h.unregister(handle), "second unregister must report absence");
    assert!(run(&h, HookPoint::PostRouting).1.is_empty());
}

/// Traversals on other threads keep running, lock-free, while hooks come and go; a packet
/// that loaded a chain finishes on it even if a hook is unregistered meanwhile.
#[test]
fn unregister_during_traversal() {
    let hooks: Arc<Hooks<Trace>> = Arc::new(Hooks::new());
    let entered = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    struct Gate(Arc<Barrier>, Arc<Barrier>, AtomicBool);
    impl Hook<Trace> for Gate {
        fn hook(&self, cx: &mut Trace, _s: &mut Skb<'_>, _p: HookPoint) -> Verdict {
            cx.0.push("gate");
            if !self.2.swap(true, Ordering::SeqCst) {
                self.0.wait();
                self.1.wait();
            }
            Verdict::Accept
        }
    }
    hooks.register(HookOps {
        family: Family::Ipv4,
        point: HookPoint::LocalIn,
        priority: 0,
        name: "gate".into(),
        hook: Arc::new(Gate(entered.clone(), release.clone(), AtomicBool::new(false))),
    });
    let later = hooks.register(ops(HookPoint::LocalIn, 10, "later", Verdict::Accept));
    let h2 = hooks.clone();
    let t = std::thread::spawn(move || run(&h2, HookPoint::LocalIn));
    entered.wait(); // the packet is inside "gate"
    assert!(hooks.unregister(later));
    release.wait();
    let (v, trace) = t.join().unwrap();
    assert_eq!(v, Verdict::Accept);
    assert_eq!(trace, ["gate", "later"], "the in-flight packet finishes on the chain it loaded");
    assert_eq!(run(&hooks, HookPoint::LocalIn).1, ["gate"], "new packets see the new chain");

    // Stress: 4 traversing threads while registrations churn.
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..4 {
        let (h, stop, passes) = (hooks.clone(), stop.clone(), passes.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (v, trace) = run(&h, HookPoint::LocalIn);
                assert_eq!(v, Verdict::Accept);
                assert_eq!(trace.first(), Some(&"gate"));
                passes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Churn until the readers have made many passes concurrently with it (2 cores here).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut i = 0;
    while (i < 500 || passes.load(Ordering::Relaxed) < 1000) && std::time::Instant::now() < deadline {
        let hd = hooks.register(ops(HookPoint::LocalIn, i % 7, "churn", Verdict::Accept));
        assert!(hooks.unregister(hd));
        i += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert!(passes.load(Ordering::Relaxed) >= 1000);
}

#[test]
fn snapshot_traversal_sees_a_consistent_view() {
    let h = Hooks::new();
    h.register(ops(HookPoint::PreRouting, 0, "one", Verdict::Accept));
    let snap = h.snapshot();
    h.register(ops(HookPoint::PreRouting, 1, "two", Verdict::Accept));
    let mut buf = [0u8; 64];
    let mut skb = Skb::new(Frame::new(&mut buf, 0, 64).unwrap(), 14, Family::Ipv4);
    let mut t = Trace::default();
    snap.traverse(Family::Ipv4, HookPoint::PreRouting, &mut t, &mut skb);
    assert_eq!(t.0, ["one"]);
    assert!(snap.is_empty(Family::Ipv4, HookPoint::Forward));
    assert_eq!(run(&h, HookPoint::PreRouting).1, ["one", "two"]);
}

#[test]
fn is_only_names_the_sole_registration() {
    let h = Hooks::new();
    let a = h.register(ops(HookPoint::LocalIn, 0, "a", Verdict::Accept));
    assert!(h.snapshot().is_only(&a));
    let b = h.register(ops(HookPoint::LocalIn, -5, "b", Verdict::Accept));
    let snap = h.snapshot();
    assert!(!snap.is_only(&a), "another hook shares the chain");
    assert!(!snap.is_only(&b));
    h.unregister(b);
    assert!(h.snapshot().is_only(&a));
    h.unregister(a);
    assert!(!h.snapshot().is_only(&a), "unregistered");
}
