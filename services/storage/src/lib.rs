//! Kordon storage: the system of record for footage, evidence and the access log
