//! PURE: `DesiredLb` x `ObservedLb` x ownership -> an ordered, minimal list of `Change`s.
