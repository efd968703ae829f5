//! TIDs (timestamp identifiers): 64-bit values `0 | 53-bit microseconds | 10-bit clock id`,
//! written as 13 base32-sortable characters so that string order equals numeric order.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::syntax::SyntaxError;

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
const MICROS_BITS: u32 = 53;
const CLOCK_BITS: u32 = 10;
const MICROS_MASK: u64 = (1 << MICROS_BITS) - 1;
const CLOCK_MASK: u64 = (1 << CLOCK_BITS) - 1;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(u64);

impl Tid {
    /// Builds a TID; out-of-range inputs are masked rather than rejected, because callers
    /// feed it clock readings, not user input.
    pub fn new(micros: u64, clock_id: u16) -> Tid {
        Tid(((micros & MICROS_MASK) << CLOCK_BITS) | (u64::from(clock_id) & CLOCK_MASK))
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> u64 {
        (self.0 >> CLOCK_BITS) & MICROS_MASK
    }

    pub fn clock_id(self) -> u16 {
        // Masked to 10 bits, so the conversion cannot fail.
        u16::try_from(self.0 & CLOCK_MASK).unwrap_or(0)
    }

    /// Strict parse: valid TID syntax and, unlike the bare syntax check, the top bit clear.
    pub fn parse(s: &str) -> Result<Tid, SyntaxError> {
        crate::syntax::validate_tid(s)?;
        let mut v: u64 = 0;
        for &c in s.as_bytes() {
            // validate_tid guarantees every byte is in the alphabet.
            let digit = ALPHABET.iter().position(|&a| a == c).unwrap_or(0);
            // The first character carries only 4 real bits, so shifting 13 times by 5 never
            // loses a set bit once validate_tid has restricted that character.
            v = (v << 5) | digit as u64;
        }
        if v >> 63 != 0 {
            return Err(SyntaxError::new(
                "tid",
                "TID has its top bit set (first character must be one of 234567ab)",
            ));
        }
        Ok(Tid(v))
    }
}

impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 13];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (12 - i);
            let idx = ((self.0 >> shift) & 31) as usize;
            *slot = ALPHABET[idx];
        }
        // Every byte comes from ALPHABET, so this is always ASCII.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Tid {
    type Err = SyntaxError;
    fn from_str(s: &str) -> Result<Tid, SyntaxError> {
        Tid::parse(s)
    }
}

/// Pure, clock-free TID generator: the caller supplies the time, which keeps it testable.
#[derive(Debug, Clone)]
pub struct TidClock {
    last: u64,
    clock_id: u16,
}

impl TidClock {
    pub fn new(clock_id: u16) -> TidClock {
        TidClock {
            last: 0,
            clock_id: clock_id & CLOCK_MASK as u16,
        }
    }

    /// Next TID for the given wall-clock reading. Strictly greater than every TID previously
    /// returned or observed, even if the clock stalls or goes backwards: in that case the
    /// timestamp is advanced one microsecond past the last one (clock id stays ours).
    ///
    /// Only at the very end of the 53-bit range (year 2255) can it stop increasing.
    pub fn next(&mut self, now_micros: u64) -> Tid {
        let mut tid = Tid::new(now_micros, self.clock_id);
        if tid.0 <= self.last {
            let bumped = Tid(self.last).micros().saturating_add(1).min(MICROS_MASK);
            tid = Tid::new(bumped, self.clock_id);
        }
        self.last = self.last.max(tid.0);
        tid
    }

    /// Records a TID minted elsewhere (e.g. a repo's current `rev`) so later TIDs sort after it.
    pub fn observe(&mut self, tid: Tid) {
        self.last = self.last.max(tid.0);
    }
}

static PROCESS_CLOCK: Mutex<Option<TidClock>> = Mutex::new(None);

/// Clock id chosen once per process so two processes writing the same repo are unlikely to
/// mint identical TIDs in the same microsecond.
fn process_clock_id() -> u16 {
    let nanos = crate::clock::subsec_nanos();
    let mixed = nanos ^ std::process::id().rotate_left(13);
    u16::try_from(mixed & CLOCK_MASK as u32).unwrap_or(0)
}

fn with_process_clock<T>(f: impl FnOnce(&mut TidClock) -> T) -> T {
    // A panic while holding the lock cannot leave a TidClock half-updated (it is two plain
    // integers), so a poisoned lock is safe to keep using.
    let mut guard = PROCESS_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let clock = guard.get_or_insert_with(|| TidClock::new(process_clock_id()));
    f(clock)
}

/// A fresh TID from the process-wide generator.
///
/// The one place in the module that reads the clock (through `crate::clock`); everything
/// else takes time as a parameter.
pub fn now() -> Tid {
    // A clock before 1970 reads 0, which still yields increasing TIDs via the bump rule.
    let t = crate::clock::unix_micros();
    with_process_clock(|c| c.next(t))
}

/// Makes the process-wide generator aware of a TID minted elsewhere (e.g. a repo `rev` loaded
/// at startup), so that [`now`] never returns anything that sorts before it.
pub fn observe(tid: Tid) {
    with_process_clock(|c| c.observe(tid));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_known_values() {
        assert_eq!(Tid(0).to_string(), "2222222222222");
        assert_eq!(Tid::parse("2222222222222"), Ok(Tid(0)));
        let max = Tid::new(u64::MAX, u16::MAX);
        assert_eq!(max.as_u64(), u64::MAX >> 1);
        assert_eq!(max.to_string(), "bzzzzzzzzzzzz");
        assert_eq!(max.micros(), MICROS_MASK);
        assert_eq!(max.clock_id(), 1023);
    }

    #[test]
    fn round_trip() {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        for _ in 0..1000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let tid = Tid::new(x >> 11, (x & 0x3ff) as u16);
            let s = tid.to_string();
            assert_eq!(s.len(), 13);
            assert!(crate::syntax::is_valid_tid(&s), "{s}");
            assert_eq!(s.parse::<Tid>(), Ok(tid));
            assert_eq!(tid.micros(), (x >> 11) & MICROS_MASK);
            assert_eq!(u64::from(tid.clock_id()), x & 0x3ff);
        }
        let t = Tid::parse("3jzfcijpj2z2a").unwrap();
        assert_eq!(t.to_string(), "3jzfcijpj2z2a");
    }

    #[test]
    fn string_order_matches_integer_order() {
        let mut tids: Vec<Tid> = Vec::new();
        let mut x: u64 = 42;
        for _ in 0..500 {
            x = x
                .wrapping_mul(2_862_933_555_777_941_757)
                .wrapping_add(3_037_000_493);
            tids.push(Tid(x >> 1));
        }
        tids.push(Tid(0));
        tids.push(Tid(u64::MAX >> 1));
        for a in &tids {
            for b in tids.iter().take(50) {
                assert_eq!(a.cmp(b), a.to_string().cmp(&b.to_string()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn generator_is_monotonic_when_clock_goes_backwards() {
        let mut clock = TidClock::new(7);
        let a = clock.next(1_700_000_000_000_000);
        let b = clock.next(1_700_000_000_000_000);
        let c = clock.next(1_600_000_000_000_000);
        let d = clock.next(1_700_000_000_000_500);
        assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
        assert_eq!(b.micros(), a.micros() + 1);
        assert_eq!(c.micros(), a.micros() + 2);
        assert_eq!(d.micros(), 1_700_000_000_000_500);
        assert!([a, b, c, d].iter().all(|t| t.clock_id() == 7));
        assert!(a.to_string() < b.to_string() && c.to_string() < d.to_string());
    }

    #[test]
    fn observe_pushes_later_tids_past_foreign_ones() {
        let mut clock = TidClock::new(1);
        let foreign = Tid::new(2_000_000_000_000_000, 1023);
        clock.observe(foreign);
        let t = clock.next(1_700_000_000_000_000);
        assert!(t > foreign);
        assert_eq!(t.clock_id(), 1);
        // Observing something older changes nothing.
        clock.observe(Tid::new(5, 5));
        assert!(clock.next(0) > t);
    }

    #[test]
    fn process_clock_increases() {
        let a = now();
        let b = now();
        assert!(b > a);
        observe(Tid::new(b.micros() + 10_000_000, 0));
        assert!(now().micros() > b.micros() + 10_000_000);
    }

    #[test]
    fn parse_rejects_bad_input() {
        for s in [
            "",
            "222222222222",
            "22222222222222",
            "3JZFCIJPJ2Z2A",
            "3jzf-cij-pj2z-2a",
            "0000000000000",
            "zzzzzzzzzzzzz",
            "kjzfcijpj2z2a",
            "c222222222222",
            "j222222222222",
            "3jzfcijpj2z2é",
            "3jzfcijpj2z1a",
        ] {
            assert!(Tid::parse(s).is_err(), "{s}");
        }
    }
}
