//! Caps on whole-repo exports (getRepo, getCheckout, getBlocks), in total and per client
//! address (IPv6 per /64, as the connection caps count); beyond them an export is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::addr::bucket;

/// Exports one address may run at once: a relay needs one; a few cover a NAT.
pub const EXPORTS_PER_ADDRESS: usize = 3;
/// Exports at once: each holds about two batches of memory and a database read now and
/// then; a dozen keeps a Pi's memory and reads for everyone else.
pub const EXPORTS_TOTAL: usize = 12;

pub struct ExportSlots {
    total: usize,
    per_address: usize,
    state: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A running export's slot; dropping it frees the slot.
pub struct ExportSlot {
    slots: Arc<ExportSlots>,
    key: IpAddr,
}

impl ExportSlots {
    pub fn new(total: usize, per_address: usize) -> Arc<ExportSlots> {
        Arc::new(ExportSlots {
            total,
            per_address,
            state: Mutex::new(Counts::default()),
        })
    }

    /// A slot for an export to `ip`, or None when that address or everyone together has
    /// as many running as allowed.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<ExportSlot> {
        let key = bucket(ip);
        let mut st = self.state.lock().ok()?;
        let mine = st.per_address.get(&key).copied().unwrap_or(0);
        if mine >= self.per_address || st.total >= self.total {
            return None;
        }
        st.total += 1;
        *st.per_address.entry(key).or_insert(0) += 1;
        Some(ExportSlot {
            slots: Arc::clone(self),
            key,
        })
    }

    pub fn running(&self) -> usize {
        self.state.lock().map_or(0, |s| s.total)
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        if let Ok(mut st) = self.slots.state.lock() {
            st.total = st.total.saturating_sub(1);
            if let Some(n) = st.per_address.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    st.per_address.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_capped_per_address_and_in_total() {
        let s = ExportSlots::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a1 = s.try_take(a).unwrap();
        let _a2 = s.try_take(a).unwrap();
        assert!(s.try_take(a).is_none(), "per address");
        assert!(
            s.try_take("::ffff:192.0.2.1".parse().unwrap()).is_none(),
            "a mapped address is the same client"
        );
        let _b = s.try_take("2001:db8::1".parse().unwrap()).unwrap();
        assert!(
            s.try_take("2001:db8::2".parse().unwrap()).is_none(),
            "in total"
        );
        drop(a1);
        assert_eq!(s.running(), 2);
        assert!(s.try_take(a).is_some(), "a freed slot is reusable");
        let one = ExportSlots::new(10, 1);
        let _x = one.try_take("2001:db8::1".parse().unwrap()).unwrap();
        assert!(
            one.try_take("2001:db8::ffff:2".parse().unwrap()).is_none(),
            "one /64 is one client"
        );
        assert!(one.try_take("2001:db8:0:1::1".parse().unwrap()).is_some());
    }
}
