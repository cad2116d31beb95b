//! Kordon alerting: rules, alert lifecycle and delivery
