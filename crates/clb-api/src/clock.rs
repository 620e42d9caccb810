//! Injected time and randomness for the client: the wall clock the signer needs and the jitter
//! source the backoff needs (DESIGN §5.4: no clock or RNG inside logic).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Source of the Unix time (seconds) put into `X-TC-Timestamp` and the credential scope.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Seconds since the Unix epoch, UTC.
    fn unix_seconds(&self) -> i64;
}

/// The real system clock; the only place in `clb/` that reads wall time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_seconds(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that returns a settable fixed time (tests, reproducible signatures).
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(unix_seconds: i64) -> Self {
        Self(AtomicI64::new(unix_seconds))
    }

    pub fn set(&self, unix_seconds: i64) {
        self.0.store(unix_seconds, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn unix_seconds(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Source of jitter for retry backoff: uniform samples in `[0, 1)`.
pub trait Jitter: Send + Sync + std::fmt::Debug {
    fn unit(&self) -> f64;
}

/// Jitter from a seedable PRNG (seed it from the OS in production, fixed in tests).
#[derive(Debug)]
pub struct RngJitter(Mutex<StdRng>);

impl RngJitter {
    /// A generator seeded from the operating system's entropy.
    pub fn from_entropy() -> Self {
        Self(Mutex::new(StdRng::from_os_rng()))
    }

    /// A reproducible generator.
    pub fn seeded(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Jitter for RngJitter {
    fn unit(&self) -> f64 {
        match self.0.lock() {
            Ok(mut rng) => rng.random::<f64>(),
            // A poisoned lock only means another thread panicked mid-sample; the state is fine.
            Err(poisoned) => poisoned.into_inner().random::<f64>(),
        }
    }
}

/// Always the same sample (tests of backoff bounds: 0.0 gives the longest delay, values near
/// 1.0 the shortest).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn unit(&self) -> f64 {
        self.0.clamp(0.0, 1.0 - f64::EPSILON)
    }
}
