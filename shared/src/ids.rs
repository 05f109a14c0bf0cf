//! Identifier newtypes. Every id is a UUID; tasks get deterministic ids (UUID v5 of the
//! campaign and the task name) so a restarted manager derives the same ids from the same
//! workflow without storing a million specs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
            /// The first 8 hex digits, for compact human output.
            pub fn short(&self) -> String {
                self.0.simple().to_string()[..8].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_newtype!(
    /// One task of a campaign.
    TaskId
);
uuid_newtype!(
    /// One pilot (a placeholder job and the agent inside it).
    PilotId
);
uuid_newtype!(
    /// One run of one workflow; every key and queue is scoped by it.
    CampaignId
);

impl TaskId {
    /// The deterministic id of the task called `name` in `campaign`.
    pub fn for_name(campaign: &CampaignId, name: &str) -> Self {
        Self(Uuid::new_v5(&campaign.0, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_deterministic_per_campaign_and_name() {
        let c = CampaignId(Uuid::nil());
        assert_eq!(TaskId::for_name(&c, "a"), TaskId::for_name(&c, "a"));
        assert_ne!(TaskId::for_name(&c, "a"), TaskId::for_name(&c, "b"));
        let other = CampaignId::random();
        assert_ne!(TaskId::for_name(&c, "a"), TaskId::for_name(&other, "a"));
    }

    #[test]
    fn ids_round_trip_through_display() {
        let p = PilotId::random();
        assert_eq!(p.to_string().parse::<PilotId>().unwrap(), p);
        assert_eq!(p.short().len(), 8);
    }
}
