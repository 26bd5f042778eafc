//! keepalived's inheritance of checker settings (keepalived.md §1): a value set on
//! the virtual server is the default for its real servers, and a value set on a real
//! server is the default for its checkers. Both front ends use it, so the native file
//! behaves the same way.

use crate::model::{CheckKind, Timing};
use std::time::Duration;

/// Settings given at one level; `None` = inherit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inherit {
    pub delay_loop: Option<Duration>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub warmup: Option<Duration>,
    pub alpha: Option<bool>,
    pub inhibit_on_failure: Option<bool>,
    pub virtualhost: Option<String>,
}

impl Inherit {
    /// `child`'s values where given, else ours.
    pub fn overlay(&self, child: &Inherit) -> Inherit {
        Inherit {
            delay_loop: child.delay_loop.or(self.delay_loop),
            retry: child.retry.or(self.retry),
            delay_before_retry: child.delay_before_retry.or(self.delay_before_retry),
            connect_timeout: child.connect_timeout.or(self.connect_timeout),
            warmup: child.warmup.or(self.warmup),
            alpha: child.alpha.or(self.alpha),
            inhibit_on_failure: child.inhibit_on_failure.or(self.inhibit_on_failure),
            virtualhost: child.virtualhost.clone().or_else(|| self.virtualhost.clone()),
        }
    }

    /// The timing of a checker of `kind` with keepalived's per-checker defaults
    /// (keepalived.md §4: delay_loop 60, connect_timeout 5, retry 1 (DNS 3, MISC 0),
    /// delay_before_retry 1 (HTTP 3, DNS = delay_loop), warmup = delay_loop).
    pub fn timing(&self, kind: &CheckKind) -> Timing {
        let delay_loop = self.delay_loop.unwrap_or(Duration::from_secs(60));
        let (retry, dbr) = match kind {
            CheckKind::Misc(_) => (0, Duration::from_secs(1)),
            CheckKind::Dns(_) => (3, delay_loop),
            CheckKind::Http(_) => (1, Duration::from_secs(3)),
            _ => (1, Duration::from_secs(1)),
        };
        Timing {
            delay_loop,
            retry: self.retry.unwrap_or(retry),
            delay_before_retry: self.delay_before_retry.unwrap_or(dbr),
            connect_timeout: self.connect_timeout.unwrap_or(Duration::from_secs(5)),
            warmup: self.warmup.unwrap_or(delay_loop),
        }
    }
}
