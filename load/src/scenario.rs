//! The named scenarios and the user behaviour they drive. A scenario is only
//! numbers (connections, duration, users, the mix of user kinds), so that a
//! run is described completely by its result file.

use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

/// The scenarios of issue 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioName {
    /// A few normal users, briefly: a smoke test.
    Light,
    /// More normal users for longer.
    Heavy,
    /// Many normal users over many connections for a minute.
    Stress,
    /// The mix: 10% aggressive, 60% normal, 30% browsers.
    Realistic,
    /// Closed loop, aggressive buyers, as fast as the connections go.
    Peak,
}

/// How a kind of user behaves at each step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Profile {
    pub name: &'static str,
    /// Chance that a step is a checkout (otherwise the user lists items).
    pub checkout_probability: f64,
    /// Chance that a successful checkout is followed by a purchase.
    pub purchase_probability: f64,
}

pub const AGGRESSIVE: Profile = Profile {
    name: "aggressive",
    checkout_probability: 0.9,
    purchase_probability: 0.8,
};
pub const NORMAL: Profile = Profile {
    name: "normal",
    checkout_probability: 0.6,
    purchase_probability: 0.4,
};
pub const BROWSER: Profile = Profile {
    name: "browser",
    checkout_probability: 0.3,
    purchase_probability: 0.1,
};

/// Share of each profile among users, in percent (they sum to 100).
pub type Mix = &'static [(Profile, u32)];

const MIX_NORMAL: Mix = &[(NORMAL, 100)];
const MIX_REALISTIC: Mix = &[(AGGRESSIVE, 10), (NORMAL, 60), (BROWSER, 30)];
const MIX_AGGRESSIVE: Mix = &[(AGGRESSIVE, 100)];

/// A scenario's defaults; flags may override connections, duration and users.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub connections: u32,
    pub duration: Duration,
    pub users: u64,
    pub mix: Mix,
}

impl ScenarioName {
    pub fn preset(self) -> Preset {
        let (connections, duration_seconds, users, mix) = match self {
            Self::Light => (4, 10, 100, MIX_NORMAL),
            Self::Heavy => (32, 30, 2_000, MIX_NORMAL),
            Self::Stress => (128, 60, 20_000, MIX_NORMAL),
            Self::Realistic => (32, 30, 5_000, MIX_REALISTIC),
            Self::Peak => (32, 15, 10_000, MIX_AGGRESSIVE),
        };
        Preset {
            connections,
            duration: Duration::from_secs(duration_seconds),
            users,
            mix,
        }
    }
}

/// The profile of user number `user` under `mix`: users are assigned by
/// their number modulo 100, so every run has exactly the mix's shares.
pub fn profile_of(mix: Mix, user: u64) -> Profile {
    let mut bucket = (user % 100) as u32;
    for &(profile, percent) in mix {
        if bucket < percent {
            return profile;
        }
        bucket -= percent;
    }
    mix.last().map(|&(profile, _)| profile).unwrap_or(NORMAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realistic_mix_has_the_issue_shares() {
        let mut counts = [0u32; 3];
        for user in 0..1000 {
            let profile = profile_of(MIX_REALISTIC, user);
            let index = [AGGRESSIVE, NORMAL, BROWSER]
                .iter()
                .position(|known| known.name == profile.name)
                .expect("known profile");
            counts[index] += 1;
        }
        assert_eq!(counts, [100, 600, 300]);
        for mix in [MIX_NORMAL, MIX_REALISTIC, MIX_AGGRESSIVE] {
            assert_eq!(mix.iter().map(|(_, percent)| percent).sum::<u32>(), 100);
        }
    }
}
