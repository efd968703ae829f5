use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::limiter::{LimiterConfig, LoginLimiter, RetryAfter};

const T0: u64 = 1_700_000_000_000;
const OWNER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 66));

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

fn limiter() -> LoginLimiter {
    LoginLimiter::new(LimiterConfig::default())
}

/// One login attempt with the wrong password, if allowed. Returns the refusal, if any.
fn fail(l: &mut LoginLimiter, ip: IpAddr, now: u64) -> Result<(), RetryAfter> {
    l.check(ip, now)?;
    l.record_failure(ip, now);
    Ok(())
}

#[test]
fn normal_use_is_never_blocked() {
    let mut l = limiter();
    let mut now = T0;
    // Many logins a day, each with two typos first, for a month.
    for _ in 0..30 * 20 {
        for _ in 0..2 {
            assert_eq!(fail(&mut l, OWNER, now), Ok(()));
            now += 5_000;
        }
        assert_eq!(l.check(OWNER, now), Ok(()));
        l.record_success(OWNER, now);
        now += 3_600_000;
    }
    // Successes cost nothing: a burst of them at one instant, from fresh addresses.
    for i in 0..1000 {
        assert_eq!(l.check(v4(i), now), Ok(()));
        l.record_success(v4(i), now);
    }
}

#[test]
fn hammering_ip_gets_increasing_retry_after() {
    let mut l = limiter();
    let mut now = T0;
    let mut waits = Vec::new();
    let mut failures = 0;
    while failures < 25 {
        match fail(&mut l, ATTACKER, now) {
            Ok(()) => failures += 1,
            Err(RetryAfter(s)) => {
                assert!(s >= 1);
                waits.push(s);
                // Coming back a second early is refused again (a refusal reserves
                // nothing, so probing does not change the state).
                let early = now + (s - 1) * 1000;
                assert!(l.check(ATTACKER, early).is_err() || s == 1);
                // Come back exactly when told to.
                now += s * 1000;
            }
        }
    }
    assert!(waits.len() >= 20, "{waits:?}");
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert_eq!(waits.first(), Some(&1), "{waits:?}");
    assert_eq!(waits.last(), Some(&600), "capped at 10 min: {waits:?}");
    // Immediately after the last failure, the attacker is told to wait the cap.
    assert_eq!(l.check(ATTACKER, now), Err(RetryAfter(600)));
}

#[test]
fn owner_gets_in_while_attacker_is_blocked() {
    let mut l = limiter();
    let mut now = T0;
    // The attacker sends as fast as it can for an hour, ignoring Retry-After.
    let mut allowed = 0;
    for _ in 0..36_000 {
        if fail(&mut l, ATTACKER, now).is_ok() {
            allowed += 1;
        }
        now += 100;
    }
    assert!(allowed < 20, "{allowed} guesses in an hour");
    assert!(l.check(ATTACKER, now).is_err());
    // The owner, from an address never seen before, is not affected.
    assert_eq!(l.check(OWNER, now), Ok(()));
    l.record_success(OWNER, now);
}

#[test]
fn distributed_attack_bounded_and_trusted_owner_unaffected() {
    let mut l = limiter();
    let mut now = T0;
    // The owner logged in from home last week.
    l.check(OWNER, now).expect("first login");
    l.record_success(OWNER, now);
    now += 7 * 86_400_000;

    // A botnet: a fresh address every 2 s for a whole day.
    let mut allowed = 0;
    for i in 0..43_200 {
        if fail(&mut l, v4(i), now).is_ok() {
            allowed += 1;
        }
        now += 2_000;
    }
    // At most the full day budget plus one day's refill.
    assert!(allowed <= 600, "{allowed} guesses in a day");
    assert!(allowed >= 300, "budget should refill: {allowed}");

    // The attack goes on; a new address arriving now finds the budget drained and
    // must wait, but only minutes.
    let _ = fail(&mut l, v4(1 << 20), now);
    let new_ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));
    match l.check(new_ip, now) {
        Err(RetryAfter(s)) => assert!((1..=300).contains(&s), "{s}"),
        Ok(()) => panic!("budget should be drained ({allowed} allowed)"),
    }
    // The owner's trusted address still gets in, typos included.
    assert_eq!(fail(&mut l, OWNER, now), Ok(()));
    assert_eq!(l.check(OWNER, now), Ok(()));
    l.record_success(OWNER, now);
}

#[test]
fn success_resets_the_address() {
    let mut l = limiter();
    let mut now = T0;
    for _ in 0..8 {
        while let Err(RetryAfter(s)) = fail(&mut l, OWNER, now) {
            now += s * 1000;
        }
    }
    let Err(RetryAfter(blocked)) = l.check(OWNER, now) else {
        panic!("should be blocked after 8 failures");
    };
    assert!(blocked >= 16);
    // The block is per address; a success (e.g. from the same NAT) clears it at once.
    l.record_success(OWNER, now);
    assert_eq!(l.check(OWNER, now), Ok(()));
    l.record_failure(OWNER, now);
    // The streak starts over: the next few failures carry no delay.
    assert_eq!(fail(&mut l, OWNER, now), Ok(()));
    assert_eq!(fail(&mut l, OWNER, now), Ok(()));
}

#[test]
fn streak_is_forgotten_after_a_quiet_day() {
    let mut l = limiter();
    let mut now = T0;
    for _ in 0..6 {
        while let Err(RetryAfter(s)) = fail(&mut l, OWNER, now) {
            now += s * 1000;
        }
    }
    now += 86_400_000;
    for _ in 0..3 {
        assert_eq!(fail(&mut l, OWNER, now), Ok(()));
    }
}

#[test]
fn parallel_attempts_are_reserved() {
    let mut l = limiter();
    // 100 requests in flight at once from one address: only the bucket's 10 pass.
    let passed = (0..100).filter(|_| l.check(ATTACKER, T0).is_ok()).count();
    assert_eq!(passed, 10);
    for _ in 0..passed {
        l.record_failure(ATTACKER, T0);
    }
    assert!(l.check(ATTACKER, T0).is_err());
}

#[test]
fn memory_is_bounded() {
    let mut l = limiter();
    let mut now = T0;
    for i in 0..100_000u32 {
        let _ = l.check(v4(i), now);
        l.record_failure(v4(i), now);
        now += 1;
    }
    assert_eq!(l.tracked_ips(), 4096);
    for i in 0..100u32 {
        l.record_success(v4(i), now);
    }
    assert_eq!(l.trusted_ips(), 32);
    // IPv6: every address in a distinct /64 is a distinct entry, still bounded.
    for i in 0..10_000u64 {
        let addr = Ipv6Addr::from((u128::from(i) << 64) | 1);
        l.record_failure(IpAddr::V6(addr), now);
    }
    assert_eq!(l.tracked_ips(), 4096);
}

#[test]
fn ipv6_grouped_by_64_and_mapped_v4_is_v4() {
    let mut l = limiter();
    let base: u128 = 0x2001_0db8_0000_0001 << 64;
    // Hammer from many addresses inside one /64.
    for i in 0..10u128 {
        let ip = IpAddr::V6(Ipv6Addr::from(base | (i * 7919 + 1)));
        let _ = fail(&mut l, ip, T0);
    }
    let same_64 = IpAddr::V6(Ipv6Addr::from(base | 0xdead_beef));
    assert!(l.check(same_64, T0).is_err());
    let next_64 = IpAddr::V6(Ipv6Addr::from(base + (1 << 64)));
    assert_eq!(l.check(next_64, T0), Ok(()));
    l.record_success(next_64, T0);

    // ::ffff:198.51.100.66 is the attacker's IPv4 address.
    for _ in 0..10 {
        let _ = fail(&mut l, ATTACKER, T0);
    }
    let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 66).to_ipv6_mapped());
    assert!(l.check(mapped, T0).is_err());
}

#[test]
fn clock_going_backwards_is_harmless() {
    let mut l = limiter();
    assert_eq!(fail(&mut l, OWNER, T0), Ok(()));
    assert_eq!(fail(&mut l, OWNER, T0 - 60_000), Ok(()));
    assert_eq!(l.check(OWNER, 0), Ok(()));
    l.record_success(OWNER, 0);
}
